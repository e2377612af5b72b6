//! The cache key of a request: an injective encoding of the values at the
//! request paths a policy set reads, written by walking those paths as a
//! tree.

use pbjson_types::Value;
use pbjson_types::value::Kind;

use super::view::{Field, Node, Root};
use crate::proto::v1::DecideRequest;

/// The request paths a policy set reads, as a tree: the key walks each
/// message and attributes map once, however many of its entries are read
/// (`resource.attributes.amount` and `resource.attributes.environment` find
/// `resource.attributes` once, then each key in it).
///
/// It writes exactly what resolving each path on its own and writing its
/// value (`_` when absent) in sorted order would: the encoding is
/// injective for a given set of paths, which the policy generation in the
/// key fixes.
#[derive(Debug, Default)]
pub struct KeyTree {
    roots: Vec<(Root, Vec<Branch>)>,
}

/// A step below a node: a message field or a map key.
#[derive(Debug)]
struct Branch {
    /// The segment as written, for map keys.
    name: Box<str>,
    /// The segment as a message field, if it names one.
    field: Option<Field>,
    /// Empty for a leaf (its whole value is in the key).
    children: Vec<Branch>,
}

impl KeyTree {
    /// The tree of `paths` (a path read whole covers the paths below it).
    /// Paths that are not request paths (`risk`, `history`, `now`) are left
    /// out: they are not request values.
    pub fn new(paths: &[Vec<String>]) -> Self {
        let mut paths: Vec<&[String]> = paths
            .iter()
            .map(Vec::as_slice)
            .filter(|p| !p.is_empty())
            .collect();
        paths.sort();
        Self {
            roots: branches(&paths)
                .into_iter()
                .filter_map(|b| Some((Root::parse(&b.name)?, b.children)))
                .collect(),
        }
    }

    /// Writes the values of the tree's paths in `req`.
    pub(crate) fn write(&self, buf: &mut Vec<u8>, req: &DecideRequest) {
        for (root, children) in &self.roots {
            let node = root.node(req);
            if children.is_empty() {
                write_node(buf, node);
            } else {
                write_children(buf, node, children);
            }
        }
    }
}

/// The branches of sorted, non-empty `paths`: one per first segment, with
/// the rest of the paths below it (so the tree writes them in sorted order).
fn branches(paths: &[&[String]]) -> Vec<Branch> {
    let mut out = Vec::new();
    let mut rest = paths;
    while let Some(seg) = rest.first().and_then(|p| p.first()) {
        let n = rest.iter().take_while(|p| p.first() == Some(seg)).count();
        let (group, tail) = rest.split_at(n);
        let below: Vec<&[String]> = group
            .iter()
            .filter_map(|p| p.get(1..))
            .filter(|p| !p.is_empty())
            .collect();
        // A node read whole covers every path below it.
        let whole = below.len() < group.len();
        out.push(Branch {
            name: seg.as_str().into(),
            field: Field::parse(seg),
            children: if whole { Vec::new() } else { branches(&below) },
        });
        rest = tail;
    }
    out
}

fn write_branch(buf: &mut Vec<u8>, node: Option<Node<'_>>, branch: &Branch) {
    match node {
        Some(node) if branch.children.is_empty() => write_node(buf, node),
        Some(node) => write_children(buf, node, &branch.children),
        None => write_absent(buf, branch),
    }
}

/// Every path below an absent node is absent.
fn write_absent(buf: &mut Vec<u8>, branch: &Branch) {
    if branch.children.is_empty() {
        buf.push(b'_');
    }
    for b in &branch.children {
        write_absent(buf, b);
    }
}

/// Writes `children` of `node`, each resolved as [`Node::member`] does.
fn write_children(buf: &mut Vec<u8>, node: Node<'_>, children: &[Branch]) {
    match node {
        Node::Msg(m) => {
            for b in children {
                write_branch(buf, b.field.and_then(|f| m.get(f)), b);
            }
        }
        _ => {
            for b in children {
                write_branch(buf, node.member(&b.name), b);
            }
        }
    }
}

fn write_len(buf: &mut Vec<u8>, n: usize) {
    buf.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

pub(crate) fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b's');
    write_len(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

fn write_node(buf: &mut Vec<u8>, node: Node<'_>) {
    match node {
        Node::Str(s) => write_str(buf, s),
        Node::Bool(b) => buf.extend_from_slice(&[b'b', u8::from(b)]),
        Node::Int(i) => {
            buf.push(b'i');
            buf.extend_from_slice(&i.to_le_bytes());
        }
        Node::Time(None) => buf.push(b'T'),
        Node::Time(Some(t)) => {
            buf.push(b't');
            buf.extend_from_slice(&t.seconds.to_le_bytes());
            buf.extend_from_slice(&t.nanos.to_le_bytes());
        }
        Node::StrList(list) => {
            buf.push(b'l');
            write_len(buf, list.len());
            for s in list {
                write_str(buf, s);
            }
        }
        Node::Map(map) => write_map(buf, map.iter()),
        Node::Value(v) => write_value(buf, v),
        Node::Msg(m) => {
            buf.push(b'M');
            buf.push(u8::from(Node::Msg(m).is_set()));
            for name in m.field_names() {
                if let Some(field) = m.field(name) {
                    write_node(buf, field);
                }
            }
        }
    }
}

fn write_map<'a>(buf: &mut Vec<u8>, entries: impl Iterator<Item = (&'a String, &'a Value)>) {
    let mut entries: Vec<_> = entries.collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    buf.push(b'm');
    write_len(buf, entries.len());
    for (k, v) in entries {
        write_str(buf, k);
        write_value(buf, v);
    }
}

fn write_value(buf: &mut Vec<u8>, v: &Value) {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => buf.push(b'n'),
        Some(Kind::NumberValue(n)) => {
            buf.push(b'd');
            buf.extend_from_slice(&n.to_bits().to_le_bytes());
        }
        Some(Kind::StringValue(s)) => write_str(buf, s),
        Some(Kind::BoolValue(b)) => buf.extend_from_slice(&[b'b', u8::from(*b)]),
        Some(Kind::StructValue(s)) => write_map(buf, s.fields.iter()),
        Some(Kind::ListValue(l)) => {
            buf.push(b'L');
            write_len(buf, l.values.len());
            for v in &l.values {
                write_value(buf, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    use super::*;
    use crate::request::testing::request;
    use crate::request::view::Path;

    /// Paths of every shape below each root: fields, map keys, keys in
    /// nested structs, whole messages and maps, names no message has.
    fn paths() -> Vec<Vec<String>> {
        [
            "action",
            "attributes.fraud_score",
            "attributes.x.role",
            "device.nope",
            "device.trusted",
            "network.attributes",
            "network.country",
            "resource.attributes.amount",
            "resource.attributes.environment",
            "resource.attributes.role.role",
            "resource.attributes.x",
            "session",
            "subject.attributes.usual_countries",
            "subject.attributes.x.role",
            "subject.roles",
            "risk.score",
        ]
        .iter()
        .map(|p| p.split('.').map(String::from).collect())
        .collect()
    }

    fn tree_key(tree: &KeyTree, req: &DecideRequest) -> Vec<u8> {
        let mut buf = Vec::new();
        tree.write(&mut buf, req);
        buf
    }

    /// The reference: each request path resolved on its own, as CEL
    /// reads it, in sorted order.
    fn path_key(paths: &[Vec<String>], req: &DecideRequest) -> Vec<u8> {
        let mut paths = paths.to_vec();
        paths.sort();
        let mut buf = Vec::new();
        for p in paths.iter().filter_map(|p| Path::parse(p)) {
            match p.resolve(req) {
                Some(node) => write_node(&mut buf, node),
                None => buf.push(b'_'),
            }
        }
        buf
    }

    proptest! {
        /// The tree writes what the paths resolved one by one write, so it
        /// tells requests apart exactly as they do.
        #[test]
        fn the_tree_key_is_the_paths_key(req in request()) {
            let paths = paths();
            prop_assert_eq!(tree_key(&KeyTree::new(&paths), &req), path_key(&paths, &req));
            // A path below one read whole adds nothing.
            let mut more = paths.clone();
            more.push(vec!["session".into(), "acr".into()]);
            more.push(vec!["network".into(), "attributes".into(), "anonymizer".into()]);
            prop_assert_eq!(tree_key(&KeyTree::new(&more), &req), path_key(&paths, &req));
        }
    }

    #[test]
    fn fields_no_path_reads_leave_the_key_alone() {
        let paths = paths();
        let tree = KeyTree::new(&paths);
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for _ in 0..200 {
            let a = request().new_tree(&mut runner).unwrap().current();
            let mut b = a.clone();
            b.time = Some(pbjson_types::Timestamp {
                seconds: 1,
                nanos: 0,
            });
            b.subject.get_or_insert_default().id = "someone else".into();
            let device = b.device.get_or_insert_default();
            device.id = "another".into();
            device.platform = "tv".into();
            let network = b.network.get_or_insert_default();
            network.ip = "192.0.2.1".into();
            network.asn += 1;
            let resource = b.resource.get_or_insert_default();
            resource.r#type = "other".into();
            resource
                .attributes
                .insert("unread".into(), Value::from(1.0));
            b.attributes.insert("unread".into(), Value::from(true));
            assert_eq!(tree_key(&tree, &a), tree_key(&tree, &b), "{a:?}");
            let mut c = b.clone();
            c.resource
                .get_or_insert_default()
                .attributes
                .insert("amount".into(), Value::from(-1.0));
            assert_ne!(tree_key(&tree, &a), tree_key(&tree, &c), "{a:?}");
        }
    }
}
