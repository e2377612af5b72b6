//! Reading the request: its headers, and the path parameters, query
//! parameters and headers that route values come from, typed.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::envoy::config::core::v3::HeaderMap;
use pbjson_types::Value;
use pbjson_types::value::Kind;

use super::Source;
use super::decode::percent_decode;
use super::error::{MapError, Origin, UnmappedErrorKind};
use super::schema::ValueType;

/// At most 64 characters of user input in a message.
pub(super) fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// The request's headers: the `headers` map, or `header_map` when Envoy sends
/// raw headers (`encode_raw_headers`). Names are lowercase.
pub(crate) struct Headers<'a> {
    pub(crate) map: &'a HashMap<String, String>,
    pub(crate) raw: Option<&'a HeaderMap>,
}

impl<'a> Headers<'a> {
    pub(super) fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        if let Some(v) = self.map.get(name) {
            return Some(Cow::Borrowed(v.as_str()));
        }
        let raw = self.raw?;
        let mut values = raw
            .headers
            .iter()
            .filter(|h| h.key.eq_ignore_ascii_case(name))
            .map(|h| {
                if h.raw_value.is_empty() {
                    Cow::Borrowed(h.value.as_str())
                } else {
                    String::from_utf8_lossy(&h.raw_value)
                }
            });
        let first = values.next()?;
        let rest: Vec<Cow<'_, str>> = values.collect();
        if rest.is_empty() {
            return Some(first);
        }
        // Repeated headers, joined as Envoy joins them in `headers`.
        let mut joined = first.into_owned();
        for v in rest {
            joined.push(',');
            joined.push_str(&v);
        }
        Some(Cow::Owned(joined))
    }

    /// Every header name, lowercase.
    pub(crate) fn names(&self) -> impl Iterator<Item = Cow<'a, str>> {
        let raw = self.raw.map(|m| m.headers.as_slice()).unwrap_or(&[]);
        self.map
            .keys()
            .map(|k| Cow::Borrowed(k.as_str()))
            .chain(raw.iter().map(|h| {
                if h.key.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(h.key.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(h.key.as_str())
                }
            }))
    }
}

/// Splits a request target into path and query (the fragment dropped).
pub(super) fn split_target(target: &str) -> (&str, &str) {
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    target.split_once('?').unwrap_or((target, ""))
}

/// What route values are read from.
pub(super) struct Inputs<'r, 'a> {
    pub(super) headers: &'r Headers<'a>,
    pub(super) query: &'r str,
    /// The route's path parameters: (value, name).
    pub(super) captures: &'r [(&'r str, String)],
}

impl Inputs<'_, '_> {
    fn raw(&self, origin: &Origin) -> Result<Option<Cow<'_, str>>, MapError> {
        let bad_escape = || UnmappedErrorKind::Escape {
            origin: origin.clone(),
        };
        Ok(match origin {
            Origin::Header(h) => self.headers.get(h),
            Origin::Path(name) => match self.captures.iter().find(|(_, n)| n == name) {
                Some((v, _)) => Some(percent_decode(v, false).ok_or_else(bad_escape)?),
                None => None,
            },
            Origin::Query(name) => {
                let mut found: Option<Cow<'_, str>> = None;
                for pair in self.query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if percent_decode(k, true).ok_or_else(bad_escape)? != name.as_str() {
                        continue;
                    }
                    let v = percent_decode(v, true).ok_or_else(bad_escape)?;
                    match &found {
                        // The upstream may read another copy than we do:
                        // refuse to guess (HTTP parameter pollution).
                        Some(prev) if *prev != v => {
                            return Err(UnmappedErrorKind::Repeated {
                                origin: origin.clone(),
                            }
                            .into());
                        }
                        Some(_) => {}
                        None => found = Some(v),
                    }
                }
                found
            }
        })
    }

    pub(super) fn value(&self, s: &Source) -> Result<Option<Value>, MapError> {
        let Some(raw) = self.raw(&s.from)? else {
            if s.required {
                return Err(UnmappedErrorKind::Missing {
                    origin: s.from.clone(),
                }
                .into());
            }
            return Ok(None);
        };
        let kind = match s.kind {
            ValueType::String => Kind::StringValue(raw.into_owned()),
            ValueType::Number => match raw.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Kind::NumberValue(n),
                _ => {
                    return Err(UnmappedErrorKind::Number {
                        origin: s.from.clone(),
                        value: truncate(&raw).to_owned(),
                    }
                    .into());
                }
            },
            ValueType::Bool => match raw.trim() {
                t if t.eq_ignore_ascii_case("true") => Kind::BoolValue(true),
                f if f.eq_ignore_ascii_case("false") => Kind::BoolValue(false),
                other => {
                    return Err(UnmappedErrorKind::Bool {
                        origin: s.from.clone(),
                        value: truncate(other).to_owned(),
                    }
                    .into());
                }
            },
        };
        Ok(Some(Value { kind: Some(kind) }))
    }

    pub(super) fn values(
        &self,
        sources: &[(String, Source)],
    ) -> Result<BTreeMap<String, Value>, MapError> {
        let mut out = BTreeMap::new();
        for (name, s) in sources {
            if let Some(v) = self.value(s)? {
                out.insert(name.clone(), v);
            }
        }
        Ok(out)
    }
}
