//! A borrowed, schema-shaped view of a request: the one place that knows how
//! `DecideRequest` fields map to the names policies use. The CEL values
//! ([`super::vals`]) and the cache key ([`crate::cache`]) both walk it, so a
//! field a policy can read is always a field the key covers.

use std::collections::BTreeMap;

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

/// The top-level variables of the request context.
pub const VARIABLES: &[&str] = &[
    "action",
    "subject",
    "session",
    "device",
    "network",
    "resource",
    "attributes",
];

/// Whether `name` is a top-level variable of the request context.
pub fn is_variable(name: &str) -> bool {
    VARIABLES.contains(&name)
}

/// Looks up a top-level variable of the request context.
pub fn variable<'a>(req: &'a DecideRequest, name: &str) -> Option<Node<'a>> {
    Some(match name {
        "action" => Node::Str(&req.action),
        "subject" => Node::Msg(Msg::Subject(req.subject.as_ref())),
        "session" => Node::Msg(Msg::Session(req.session.as_ref())),
        "device" => Node::Msg(Msg::Device(req.device.as_ref())),
        "network" => Node::Msg(Msg::Network(req.network.as_ref())),
        "resource" => Node::Msg(Msg::Resource(req.resource.as_ref())),
        "attributes" => Node::Map(&req.attributes),
        _ => return None,
    })
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
        Some(match (*self, name) {
            (Msg::Subject(s), "id") => Node::Str(s.map_or("", |s| &s.id)),
            (Msg::Subject(s), "tenant") => Node::Str(s.map_or("", |s| &s.tenant)),
            (Msg::Subject(s), "roles") => Node::StrList(s.map_or(&[], |s| &s.roles)),
            (Msg::Subject(s), "attributes") => attrs(s.map(|s| &s.attributes)),
            (Msg::Session(s), "id") => Node::Str(s.map_or("", |s| &s.id)),
            (Msg::Session(s), "acr") => Node::Str(s.map_or("", |s| &s.acr)),
            (Msg::Session(s), "amr") => Node::StrList(s.map_or(&[], |s| &s.amr)),
            (Msg::Session(s), "auth_time") => Node::Time(s.and_then(|s| s.auth_time.as_ref())),
            (Msg::Device(d), "id") => Node::Str(d.map_or("", |d| &d.id)),
            (Msg::Device(d), "trusted") => Node::Bool(d.is_some_and(|d| d.trusted)),
            (Msg::Device(d), "platform") => Node::Str(d.map_or("", |d| &d.platform)),
            (Msg::Device(d), "attributes") => attrs(d.map(|d| &d.attributes)),
            (Msg::Network(n), "ip") => Node::Str(n.map_or("", |n| &n.ip)),
            (Msg::Network(n), "country") => Node::Str(n.map_or("", |n| &n.country)),
            (Msg::Network(n), "asn") => Node::Int(n.map_or(0, |n| i64::from(n.asn))),
            (Msg::Network(n), "attributes") => attrs(n.map(|n| &n.attributes)),
            (Msg::Resource(r), "type") => Node::Str(r.map_or("", |r| &r.r#type)),
            (Msg::Resource(r), "id") => Node::Str(r.map_or("", |r| &r.id)),
            (Msg::Resource(r), "attributes") => attrs(r.map(|r| &r.attributes)),
            _ => return None,
        })
    }
}

impl<'a> Node<'a> {
    /// Member `name` of a message or map; `None` when there is none.
    pub fn member(&self, name: &str) -> Option<Node<'a>> {
        match self {
            Node::Msg(m) => m.field(name),
            Node::Map(m) => m.get(name).map(Node::Value),
            Node::Value(Value {
                kind: Some(Kind::StructValue(s)),
            }) => s.fields.get(name).map(Node::Value),
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
