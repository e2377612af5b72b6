//! A borrowed, schema-shaped view of a request: the one place that knows how
//! `DecideRequest` fields map to the names policies use. The CEL values
//! (`expr::vals`) and the cache key ([`super::key`]) both walk it, so a
//! field a policy can read is always a field the key covers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pbjson_types::value::Kind;
use pbjson_types::{Timestamp, Value};

use crate::proto::v1::{DecideRequest, Device, Network, Resource, Session, Subject};

/// A message of the request context; `None` inside when the request left the
/// message out (its fields then read as proto3 defaults).
#[derive(Clone, Copy, Debug)]
pub enum Msg<'a> {
    /// `subject`
    Subject(Option<&'a Subject>),
    /// `session`
    Session(Option<&'a Session>),
    /// `device`
    Device(Option<&'a Device>),
    /// `network`
    Network(Option<&'a Network>),
    /// `resource`
    Resource(Option<&'a Resource>),
}

/// A value in the request, borrowed.
#[derive(Clone, Copy, Debug)]
pub enum Node<'a> {
    /// A string field.
    Str(&'a str),
    /// A bool field.
    Bool(bool),
    /// An integer field.
    Int(i64),
    /// A timestamp field (unset reads as the Unix epoch: "long ago").
    Time(Option<&'a Timestamp>),
    /// A repeated string field.
    StrList(&'a [String]),
    /// An attributes map.
    Map(&'a BTreeMap<String, Value>),
    /// A value inside an attributes map.
    Value(&'a Value),
    /// A message.
    Msg(Msg<'a>),
}

/// Looks up a top-level variable of the request context.
pub fn variable<'a>(req: &'a DecideRequest, name: &str) -> Option<Node<'a>> {
    Root::parse(name).map(|root| root.node(req))
}

/// A timestamp field as CEL reads it: unset (or out of range) is the Unix
/// epoch, "long ago".
pub fn instant(t: Option<&Timestamp>) -> DateTime<Utc> {
    let (secs, nanos) = t.map_or((0, 0), |t| (t.seconds, t.nanos));
    DateTime::from_timestamp(secs, u32::try_from(nanos).unwrap_or(0)).unwrap_or_default()
}

static EMPTY_MAP: BTreeMap<String, Value> = BTreeMap::new();

fn attrs<'a>(m: Option<&'a BTreeMap<String, Value>>) -> Node<'a> {
    Node::Map(m.unwrap_or(&EMPTY_MAP))
}

impl<'a> Msg<'a> {
    /// The names of the message's fields, in declaration order.
    pub fn field_names(&self) -> &'static [&'static str] {
        match self {
            Msg::Subject(_) => &["id", "tenant", "roles", "attributes"],
            Msg::Session(_) => &["id", "acr", "amr", "auth_time"],
            Msg::Device(_) => &["id", "trusted", "platform", "attributes"],
            Msg::Network(_) => &["ip", "country", "asn", "attributes"],
            Msg::Resource(_) => &["type", "id", "attributes"],
        }
    }

    /// Field `name`, or `None` when the message has no such field.
    pub fn field(&self, name: &str) -> Option<Node<'a>> {
        self.get(Field::parse(name)?)
    }

    /// Field `f`, or `None` when the message has no such field.
    pub fn get(&self, f: Field) -> Option<Node<'a>> {
        Some(match (*self, f) {
            (Msg::Subject(s), Field::Id) => Node::Str(s.map_or("", |s| &s.id)),
            (Msg::Subject(s), Field::Tenant) => Node::Str(s.map_or("", |s| &s.tenant)),
            (Msg::Subject(s), Field::Roles) => Node::StrList(s.map_or(&[], |s| &s.roles)),
            (Msg::Subject(s), Field::Attributes) => attrs(s.map(|s| &s.attributes)),
            (Msg::Session(s), Field::Id) => Node::Str(s.map_or("", |s| &s.id)),
            (Msg::Session(s), Field::Acr) => Node::Str(s.map_or("", |s| &s.acr)),
            (Msg::Session(s), Field::Amr) => Node::StrList(s.map_or(&[], |s| &s.amr)),
            (Msg::Session(s), Field::AuthTime) => Node::Time(s.and_then(|s| s.auth_time.as_ref())),
            (Msg::Device(d), Field::Id) => Node::Str(d.map_or("", |d| &d.id)),
            (Msg::Device(d), Field::Trusted) => Node::Bool(d.is_some_and(|d| d.trusted)),
            (Msg::Device(d), Field::Platform) => Node::Str(d.map_or("", |d| &d.platform)),
            (Msg::Device(d), Field::Attributes) => attrs(d.map(|d| &d.attributes)),
            (Msg::Network(n), Field::Ip) => Node::Str(n.map_or("", |n| &n.ip)),
            (Msg::Network(n), Field::Country) => Node::Str(n.map_or("", |n| &n.country)),
            (Msg::Network(n), Field::Asn) => Node::Int(n.map_or(0, |n| n.asn)),
            (Msg::Network(n), Field::Attributes) => attrs(n.map(|n| &n.attributes)),
            (Msg::Resource(r), Field::Type) => Node::Str(r.map_or("", |r| &r.r#type)),
            (Msg::Resource(r), Field::Id) => Node::Str(r.map_or("", |r| &r.id)),
            (Msg::Resource(r), Field::Attributes) => attrs(r.map(|r| &r.attributes)),
            _ => return None,
        })
    }
}

/// A field name of the request's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `id`
    Id,
    /// `tenant`
    Tenant,
    /// `roles`
    Roles,
    /// `attributes`
    Attributes,
    /// `acr`
    Acr,
    /// `amr`
    Amr,
    /// `auth_time`
    AuthTime,
    /// `trusted`
    Trusted,
    /// `platform`
    Platform,
    /// `ip`
    Ip,
    /// `country`
    Country,
    /// `asn`
    Asn,
    /// `type`
    Type,
}

impl Field {
    /// The field called `name` in some message.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "id" => Self::Id,
            "tenant" => Self::Tenant,
            "roles" => Self::Roles,
            "attributes" => Self::Attributes,
            "acr" => Self::Acr,
            "amr" => Self::Amr,
            "auth_time" => Self::AuthTime,
            "trusted" => Self::Trusted,
            "platform" => Self::Platform,
            "ip" => Self::Ip,
            "country" => Self::Country,
            "asn" => Self::Asn,
            "type" => Self::Type,
            _ => return None,
        })
    }
}

/// A path into the request (`resource.attributes.amount`) with its
/// variable and message field looked up once, at load: resolving it per
/// decision compares no names but the map keys.
#[derive(Clone, Debug)]
pub struct Path {
    root: Root,
    field: Option<Field>,
    keys: Box<[Box<str>]>,
}

/// A top-level variable of the request context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Root {
    Action,
    Subject,
    Session,
    Device,
    Network,
    Resource,
    Attributes,
}

impl Root {
    /// The top-level variable called `name`.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "action" => Self::Action,
            "subject" => Self::Subject,
            "session" => Self::Session,
            "device" => Self::Device,
            "network" => Self::Network,
            "resource" => Self::Resource,
            "attributes" => Self::Attributes,
            _ => return None,
        })
    }

    /// Its value in `req`.
    pub(crate) fn node(self, req: &DecideRequest) -> Node<'_> {
        match self {
            Self::Action => Node::Str(&req.action),
            Self::Subject => Node::Msg(Msg::Subject(req.subject.as_ref())),
            Self::Session => Node::Msg(Msg::Session(req.session.as_ref())),
            Self::Device => Node::Msg(Msg::Device(req.device.as_ref())),
            Self::Network => Node::Msg(Msg::Network(req.network.as_ref())),
            Self::Resource => Node::Msg(Msg::Resource(req.resource.as_ref())),
            Self::Attributes => Node::Map(&req.attributes),
        }
    }
}

impl Path {
    /// The path of `segments`, or `None` when the first is not a variable
    /// of the request context.
    pub fn parse<S: AsRef<str>>(segments: &[S]) -> Option<Self> {
        let (root, rest) = segments.split_first()?;
        let root = Root::parse(root.as_ref())?;
        let is_msg = !matches!(root, Root::Action | Root::Attributes);
        let (field, rest) = match rest.split_first() {
            Some((f, tail)) if is_msg => match Field::parse(f.as_ref()) {
                Some(f) => (Some(f), tail),
                // No such field: resolves to nothing, as by name.
                None => (None, rest),
            },
            _ => (None, rest),
        };
        Some(Self {
            root,
            field,
            keys: rest.iter().map(|k| k.as_ref().into()).collect(),
        })
    }

    /// The value at this path in `req`, if there is one.
    pub fn resolve<'a>(&self, req: &'a DecideRequest) -> Option<Node<'a>> {
        let mut node = self.root.node(req);
        if let Some(f) = self.field {
            let Node::Msg(m) = node else { return None };
            node = m.get(f)?;
        }
        for key in &self.keys {
            node = node.member(key)?;
        }
        Some(node)
    }
}

/// A map's entry by key: for the few keys attribute maps usually hold, a
/// scan comparing lengths first beats the map's own search (string ordering
/// in a B-tree, SipHash in a hash map).
fn small_get<'a>(
    mut entries: impl ExactSizeIterator<Item = (&'a String, &'a Value)>,
    get: impl FnOnce() -> Option<&'a Value>,
    key: &str,
) -> Option<&'a Value> {
    const SMALL: usize = 8;
    if entries.len() <= SMALL {
        entries.find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        get()
    }
}

impl<'a> Node<'a> {
    /// Member `name` of a message or map; `None` when there is none.
    pub fn member(&self, name: &str) -> Option<Node<'a>> {
        match self {
            Node::Msg(m) => m.field(name),
            Node::Map(m) => small_get(m.iter(), || m.get(name), name).map(Node::Value),
            Node::Value(Value {
                kind: Some(Kind::StructValue(s)),
            }) => small_get(s.fields.iter(), || s.fields.get(name), name).map(Node::Value),
            _ => None,
        }
    }

    /// Whether a field is set in the proto3 sense (`has(device.id)` is false
    /// for an empty id).
    pub fn is_set(&self) -> bool {
        match self {
            Node::Str(s) => !s.is_empty(),
            Node::Bool(b) => *b,
            Node::Int(i) => *i != 0,
            Node::Time(t) => t.is_some(),
            Node::StrList(l) => !l.is_empty(),
            Node::Map(m) => !m.is_empty(),
            Node::Value(_) => true,
            Node::Msg(m) => match m {
                Msg::Subject(s) => s.is_some(),
                Msg::Session(s) => s.is_some(),
                Msg::Device(s) => s.is_some(),
                Msg::Network(s) => s.is_some(),
                Msg::Resource(s) => s.is_some(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By name, as CEL's resolver walks it.
    fn by_name<'a>(req: &'a DecideRequest, path: &[&str]) -> Option<Node<'a>> {
        let (root, rest) = path.split_first()?;
        let mut node = variable(req, root)?;
        for seg in rest {
            node = node.member(seg)?;
        }
        Some(node)
    }

    #[test]
    fn a_looked_up_path_resolves_as_by_name() {
        let req: DecideRequest = serde_json::from_str(
            r#"{"action": "a", "subject": {"id": "u", "roles": ["r"],
                "attributes": {"s": {"k": [1, "x"]}}},
                "session": {"acr": "x", "authTime": "2026-01-01T00:00:00Z"},
                "network": {"asn": 7, "attributes": {"anonymizer": true}},
                "resource": {"type": "t", "attributes": {"amount": 5}},
                "attributes": {"f": 0.5}}"#,
        )
        .unwrap();
        let empty = DecideRequest::default();
        let mut paths: Vec<Vec<&str>> = vec![
            vec!["action"],
            vec!["action", "x"],
            vec!["attributes", "f"],
            vec!["attributes", "id"],
            vec!["subject", "attributes", "s", "k"],
            vec!["subject", "attributes", "s", "nope"],
            vec!["subject", "nope"],
            vec!["subject", "nope", "deeper"],
            vec!["network", "attributes", "anonymizer"],
            vec!["resource", "attributes", "amount", "x"],
            vec!["risk", "score"],
            vec!["history"],
        ];
        for m in ["subject", "session", "device", "network", "resource"] {
            paths.push(vec![m]);
            for f in [
                "id",
                "tenant",
                "roles",
                "attributes",
                "acr",
                "amr",
                "auth_time",
            ] {
                paths.push(vec![m, f]);
            }
            for f in ["trusted", "platform", "ip", "country", "asn", "type"] {
                paths.push(vec![m, f]);
            }
        }
        for r in [&req, &empty] {
            for p in &paths {
                let looked_up = Path::parse(p).and_then(|path| path.resolve(r));
                assert_eq!(
                    format!("{looked_up:?}"),
                    format!("{:?}", by_name(r, p)),
                    "{}",
                    p.join(".")
                );
            }
        }
    }
}
