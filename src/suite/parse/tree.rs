//! A request value from a suite, with where each part was written: the
//! merge of fixtures and overrides keeps positions, so that a bad field is
//! reported where it was written.

use saphyr::{Scalar, YamlData};
use serde_json::Value;

use super::Reader;
use crate::policy::diag::{Code, Location};
use crate::policy::yaml::{Node, location};

/// A positioned copy of a YAML value (a request or a fixture).
#[derive(Clone, Debug)]
pub(super) struct Tree {
    pub(super) kind: TreeKind,
    pub(super) at: Location,
}

#[derive(Clone, Debug)]
pub(super) enum TreeKind {
    Map(Vec<Entry>),
    Seq(Vec<Tree>),
    Scalar(Value),
}

#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) key_at: Location,
    pub(super) value: Tree,
}

impl Tree {
    pub(super) fn to_json(&self) -> Value {
        match &self.kind {
            TreeKind::Scalar(v) => v.clone(),
            TreeKind::Seq(items) => Value::Array(items.iter().map(Tree::to_json).collect()),
            TreeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.kind {
            TreeKind::Map(entries) => entries
                .iter()
                .find(|e| e.key == key || field_key(&e.key) == field_key(key)),
            _ => None,
        }
    }
}

/// A proto field name in one spelling: proto3 JSON accepts `auth_time` and
/// `authTime` alike.
pub(super) fn field_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Deep-merges `over` onto `base`: mappings merge key by key, anything else
/// is replaced. Keys of request messages match in either spelling
/// (`auth_time`, `authTime`); keys of attribute maps (`free`) match exactly.
pub(super) fn merge(base: Tree, over: Tree, free: bool) -> Tree {
    match (base.kind, over.kind) {
        (TreeKind::Map(mut entries), TreeKind::Map(overrides)) => {
            for o in overrides {
                let found = entries.iter_mut().find(|e| {
                    if free {
                        e.key == o.key
                    } else {
                        field_key(&e.key) == field_key(&o.key)
                    }
                });
                match found {
                    Some(e) => {
                        let placeholder = Tree {
                            kind: TreeKind::Scalar(Value::Null),
                            at: Location::default(),
                        };
                        let old = std::mem::replace(&mut e.value, placeholder);
                        let free = free || o.key == "attributes";
                        e.value = merge(old, o.value, free);
                        e.key = o.key;
                        e.key_at = o.key_at;
                    }
                    None => entries.push(o),
                }
            }
            Tree {
                kind: TreeKind::Map(entries),
                at: over.at,
            }
        }
        (_, kind) => Tree { kind, at: over.at },
    }
}

/// Where the field named by a validation error (`subject.id`,
/// `session.amr[2]`, `resource.attributes.note`) was written: the field
/// itself, or its closest written ancestor.
pub(super) fn locate_field(tree: &Tree, field: &str) -> Option<Location> {
    let mut node = tree;
    let mut best = None;
    for part in field.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some(e) = node.entry(key) else {
            return best;
        };
        best = Some(e.value.at);
        node = &e.value;
        if let (Some(i), TreeKind::Seq(items)) = (index, &node.kind)
            && let Some(item) = items.get(i)
        {
            best = Some(item.at);
            node = item;
        }
    }
    best
}

impl Reader<'_> {
    /// A positioned copy of a YAML value (a request or fixture part).
    pub(super) fn tree(&mut self, node: &Node<'_>) -> Option<Tree> {
        let at = location(node);
        let kind = match &node.data {
            YamlData::Value(s) => TreeKind::Scalar(self.scalar(node, s)?),
            YamlData::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    match self.tree(item) {
                        Some(t) => out.push(t),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                TreeKind::Seq(out)
            }
            YamlData::Mapping(map) => {
                let mut out = Vec::with_capacity(map.len());
                let mut ok = true;
                for (k, v) in map {
                    let key = match &k.data {
                        YamlData::Value(Scalar::String(s)) => s.to_string(),
                        _ => {
                            let d =
                                self.error(k, Code::WrongType, "keys of a request must be strings");
                            self.push(d);
                            ok = false;
                            continue;
                        }
                    };
                    match self.tree(v) {
                        Some(value) => out.push(Entry {
                            key,
                            key_at: location(k),
                            value,
                        }),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                TreeKind::Map(out)
            }
            YamlData::Tagged(_, inner) => return self.tree(inner),
            YamlData::Alias(_) => {
                let d = self
                    .error(
                        node,
                        Code::UnsupportedYaml,
                        "YAML aliases are not supported in test suites",
                    )
                    .help("share request fields between cases with `fixtures`");
                self.push(d);
                return None;
            }
            YamlData::Representation(..) | YamlData::BadValue => {
                let d = self.error(node, Code::InvalidYaml, "unreadable value");
                self.push(d);
                return None;
            }
        };
        Some(Tree { kind, at })
    }

    fn scalar(&mut self, node: &Node<'_>, s: &Scalar<'_>) -> Option<Value> {
        Some(match s {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::from(*i),
            Scalar::FloatingPoint(f) => match serde_json::Number::from_f64(f.0) {
                Some(n) => Value::Number(n),
                None => {
                    let d = self.error(node, Code::WrongType, "not a finite number");
                    self.push(d);
                    return None;
                }
            },
            Scalar::String(s) => Value::String(s.to_string()),
        })
    }
}
