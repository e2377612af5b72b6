//! A case's request: its fixtures merged in order with its `request` over
//! them, converted to a `DecideRequest`; a field that does not convert is
//! reported where it was written.

use saphyr::YamlData;
use serde_json::Value;

use super::tree::{Tree, TreeKind, field_key, merge};
use super::{Reader, SuiteContext, probe};
use crate::policy::diag::{Code, Location, did_you_mean};
use crate::policy::yaml::{Node, location, quoted_list};
use crate::proto::v1::DecideRequest;

/// What a case's `fixture` and `request` read as, before conversion.
pub(super) struct RequestParts {
    pub(super) tree: Option<Tree>,
    /// Where to report problems of the request as a whole.
    pub(super) at: Location,
}

impl Reader<'_> {
    /// The case's fixtures merged in order, then its `request` over them.
    pub(super) fn request_parts(
        &mut self,
        case: &Node<'_>,
        fixture: Option<&Node<'_>>,
        request: Option<&Node<'_>>,
        ctx: &SuiteContext,
    ) -> RequestParts {
        let mut ok = true;
        let mut merged: Option<Tree> = None;
        if let Some(f) = fixture {
            ok &= self.merge_fixtures(f, ctx, &mut merged);
        }
        let mut at = fixture.map_or_else(|| location(case), location);
        if let Some(r) = request {
            at = location(r);
            if !matches!(r.data, YamlData::Mapping(_)) {
                let d = self
                    .error(r, Code::WrongType, "`request` must be a mapping of request fields")
                    .help("write fields as `stepup eval` reads them: `action`, `subject`, `session`...");
                self.push(d);
                return RequestParts { tree: None, at };
            }
            match self.tree(r) {
                Some(tree) => {
                    merged = Some(match merged.take() {
                        Some(m) => merge(m, tree, false),
                        None => tree,
                    });
                }
                None => ok = false,
            }
        }
        if ok && merged.is_none() {
            let d = self
                .error(case, Code::MissingKey, "test case has no `request`")
                .help("add `request:` with the request fields, or `fixture:` naming a fixture");
            self.push(d);
        }
        RequestParts {
            tree: merged.filter(|_| ok),
            at,
        }
    }

    /// Merges the fixtures `fixture` names into `merged`, in order; false
    /// when a name is bad (reported).
    fn merge_fixtures(
        &mut self,
        fixture: &Node<'_>,
        ctx: &SuiteContext,
        merged: &mut Option<Tree>,
    ) -> bool {
        let names: Vec<(String, Location)> = match &fixture.data {
            YamlData::Sequence(_) => match self.string_list(fixture, "`fixture`") {
                Some(names) => names,
                None => return false,
            },
            _ => match self.y.string(fixture, "`fixture`") {
                Some(s) => vec![(s, location(fixture))],
                None => return false,
            },
        };
        let mut ok = true;
        for (name, at) in names {
            if let Some((_, tree)) = ctx.fixtures.iter().find(|(n, _)| *n == name) {
                *merged = Some(match merged.take() {
                    Some(m) => merge(m, tree.clone(), false),
                    None => tree.clone(),
                });
                continue;
            }
            let fixtures: Vec<&str> = ctx.fixtures.iter().map(|(n, _)| n.as_str()).collect();
            let help = if fixtures.is_empty() {
                "the suite defines no `fixtures`".to_owned()
            } else {
                did_you_mean(&name, fixtures.iter().copied())
                    .unwrap_or_else(|| format!("the fixtures are {}", quoted_list(&fixtures)))
            };
            let d = self
                .error_at(
                    at,
                    Code::UnknownFixture,
                    format!("unknown fixture `{name}`"),
                )
                .help(help);
            self.push(d);
            ok = false;
        }
        ok
    }

    /// Converts the merged request, reporting a bad field where it was
    /// written.
    pub(super) fn request(&mut self, tree: &Tree, at: Location) -> Option<DecideRequest> {
        let e = match serde_json::from_value::<DecideRequest>(tree.to_json()) {
            Ok(r) => return Some(r),
            Err(e) => e,
        };
        let Some(bad) = find_bad(tree, &mut Vec::new()) else {
            let d = self.error_at(at, Code::InvalidRequest, format!("invalid request: {e}"));
            self.push(d);
            return None;
        };
        let time = bad
            .path
            .rsplit('.')
            .next()
            .is_some_and(|f| matches!(field_key(f).as_str(), "time" | "authtime"));
        let help = bad
            .unknown
            .as_ref()
            .and_then(|u| {
                did_you_mean(&u.field, u.expected.iter().copied()).or_else(|| {
                    (!u.expected.is_empty())
                        .then(|| format!("the fields are {}", quoted_list(u.expected)))
                })
            })
            .or_else(|| {
                time.then(|| "write an RFC 3339 time such as `2026-11-27T09:00:00Z`".to_owned())
            });
        let what = if bad.path.is_empty() {
            "invalid request".to_owned()
        } else {
            format!("invalid request field `{}`", bad.path)
        };
        let code = match bad.unknown {
            Some(_) => Code::UnknownField,
            None => Code::InvalidRequest,
        };
        let d = self
            .error_at(
                bad.at,
                code,
                format!("{what}: {}", crate::request::read::plain(&bad.message)),
            )
            .maybe_help(help);
        self.push(d);
        None
    }
}

/// The deepest part of a request that fails to convert on its own.
struct Bad {
    at: Location,
    path: String,
    message: String,
    /// When what fails is an unknown field.
    unknown: Option<probe::UnknownField>,
}

#[derive(Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

fn path_text(path: &[Segment]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Converts a request holding only `leaf` at `path`: the message of why it
/// does not, and the unknown field when that is why.
fn probe(path: &[Segment], leaf: Value) -> Result<(), (String, Option<probe::UnknownField>)> {
    let mut v = leaf;
    for seg in path.iter().rev() {
        v = match seg {
            Segment::Key(k) => {
                let mut m = serde_json::Map::new();
                m.insert(k.clone(), v);
                Value::Object(m)
            }
            Segment::Index(_) => Value::Array(vec![v]),
        };
    }
    match serde_json::from_value::<DecideRequest>(v.clone()) {
        Ok(_) => Ok(()),
        Err(e) => Err((e.to_string(), probe::unknown_field(&v))),
    }
}

/// Finds the part of `node` (at `path`) that fails to convert on its own,
/// descending as long as a single child fails: the error is then reported
/// at that child (at its key for an unknown field).
fn find_bad(node: &Tree, path: &mut Vec<Segment>) -> Option<Bad> {
    match &node.kind {
        TreeKind::Map(entries) => {
            for e in entries {
                path.push(Segment::Key(e.key.clone()));
                if let Err((message, unknown)) = probe(path, e.value.to_json()) {
                    let found = match unknown {
                        Some(u) => Some(Bad {
                            at: e.key_at,
                            path: path_text(
                                path.get(..path.len().saturating_sub(1)).unwrap_or(&[]),
                            ),
                            message,
                            unknown: Some(u),
                        }),
                        None => find_bad(&e.value, path).or_else(|| {
                            Some(Bad {
                                at: e.value.at,
                                path: path_text(path),
                                message,
                                unknown: None,
                            })
                        }),
                    };
                    path.pop();
                    return found;
                }
                path.pop();
            }
            None
        }
        TreeKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                if let Err((message, _)) = probe(path, item.to_json()) {
                    let found = find_bad(item, path).or_else(|| {
                        Some(Bad {
                            at: item.at,
                            path: path_text(path),
                            message,
                            unknown: None,
                        })
                    });
                    path.pop();
                    return found;
                }
                path.pop();
            }
            None
        }
        TreeKind::Scalar(_) => None,
    }
}
