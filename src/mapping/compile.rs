//! Checking an `[ext_authz]` section into a [`Mapping`]: every problem is
//! collected, each naming its config key, so one run reports them all.

use std::collections::BTreeMap;

use super::error::{KeyError, KeyErrorKind, MappingError, Origin};
use super::schema::{
    FileDevice, FileExtAuthz, FileNetwork, FileRoute, FileSource, FileSubject, SubjectSource,
    ValueType,
};
use super::{FIELDS, ISSUER_SEPARATOR, Mapping, Route, Segment, Source, Subject};
use crate::request::validate as convert;

/// Most trusted proxies in front: more is a misconfiguration.
const MAX_HOPS: u32 = 64;

impl Mapping {
    /// Checks an `[ext_authz]` section: every problem is reported, each
    /// naming its config key (`ext_authz.routes[0].path`).
    pub fn compile(file: &FileExtAuthz) -> Result<Mapping, MappingError> {
        let mut p = Problems(Vec::new());
        let subject = compile_subject(&mut p, &file.subject);
        let device = compile_device(&mut p, &file.device);
        let network = compile_network(&mut p, &file.network);
        let attributes = compile_attributes(&mut p, "ext_authz.attributes", &file.attributes, None);
        let routes = file
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| compile_route(&mut p, i, r))
            .collect();
        if !p.0.is_empty() {
            return Err(MappingError { problems: p.0 });
        }
        Ok(Mapping {
            unmapped: file.unmapped.unwrap_or_default(),
            subject,
            device,
            hops: usize::try_from(network.hops).unwrap_or(usize::MAX),
            country: network.country,
            asn: network.asn,
            attributes,
            routes,
        })
    }
}

/// Collects the problems of one section, each naming its key.
struct Problems(Vec<KeyError>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, kind: KeyErrorKind) {
        self.0.push(KeyError {
            key: key.into(),
            kind,
        });
    }
}

fn header_name(p: &mut Problems, key: &str, name: &str) -> String {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        p.push(
            key,
            KeyErrorKind::HeaderName {
                name: name.to_owned(),
            },
        );
    }
    name.to_ascii_lowercase()
}

fn non_empty(p: &mut Problems, key: &str, value: &str) {
    if value.is_empty() {
        p.push(key, KeyErrorKind::Empty);
    }
}

fn identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ---------------------------------------------------------------------------
// `[ext_authz.subject]`.

fn compile_subject(p: &mut Problems, s: &FileSubject) -> Subject {
    let source = s.source.unwrap_or_default();
    let mut subject = match source {
        SubjectSource::Jwt => {
            let mut subject = Subject::jwt_defaults();
            compile_jwt(p, s, &mut subject);
            subject
        }
        SubjectSource::Headers => {
            jwt_only(p, s);
            Subject::headers()
        }
    };
    compile_names(p, s, &mut subject);
    compile_required(p, s, &mut subject);
    subject
}

/// A claim name (source `jwt`) or header name (source `headers`).
fn subject_name(p: &mut Problems, source: SubjectSource, field: &str, value: &str) -> String {
    let key = format!("ext_authz.subject.{field}");
    match source {
        SubjectSource::Jwt => {
            non_empty(p, &key, value);
            value.to_owned()
        }
        SubjectSource::Headers => header_name(p, &key, value),
    }
}

/// Where the JWT payload is found.
fn compile_jwt(p: &mut Problems, s: &FileSubject, subject: &mut Subject) {
    if let Some(ns) = &s.namespace {
        non_empty(p, "ext_authz.subject.namespace", ns);
        subject.namespace.clone_from(ns);
    }
    if let Some(payload) = &s.payload {
        non_empty(p, "ext_authz.subject.payload", payload);
        subject.payload = Some(payload.clone());
    }
    if let Some(h) = &s.payload_header {
        subject.payload_header = Some(header_name(p, "ext_authz.subject.payload_header", h));
        if s.payload.is_some() || s.namespace.is_some() {
            p.push(
                "ext_authz.subject.payload_header",
                KeyErrorKind::PayloadConflict,
            );
        }
    }
    if let Some(stripped) = s.payload_header_stripped_by_proxy {
        if s.payload_header.is_none() {
            p.push(
                "ext_authz.subject.payload_header_stripped_by_proxy",
                KeyErrorKind::PayloadHeaderOnly,
            );
        }
        subject.payload_header_stripped = stripped;
    }
    compile_issuers(p, &s.issuers, subject);
}

/// The accepted issuers: distinct, non-empty, and without the separator of
/// a qualified subject id (so `<iss>#<sub>` splits back one way only).
fn compile_issuers(p: &mut Problems, issuers: &[String], subject: &mut Subject) {
    for (i, issuer) in issuers.iter().enumerate() {
        let key = format!("ext_authz.subject.issuers[{i}]");
        if issuer.is_empty() {
            p.push(key, KeyErrorKind::Empty);
        } else if issuer.contains(ISSUER_SEPARATOR) {
            p.push(
                key,
                KeyErrorKind::IssuerSeparator {
                    issuer: issuer.clone(),
                },
            );
        } else if issuers.get(..i).is_some_and(|seen| seen.contains(issuer)) {
            p.push(
                key,
                KeyErrorKind::DuplicateIssuer {
                    issuer: issuer.clone(),
                },
            );
        }
    }
    subject.issuers = issuers.to_vec();
}

/// The JWT settings mean nothing with `source = "headers"`.
fn jwt_only(p: &mut Problems, s: &FileSubject) {
    for (key, set) in [
        ("namespace", s.namespace.is_some()),
        ("payload", s.payload.is_some()),
        ("payload_header", s.payload_header.is_some()),
        (
            "payload_header_stripped_by_proxy",
            s.payload_header_stripped_by_proxy.is_some(),
        ),
        ("issuers", !s.issuers.is_empty()),
    ] {
        if set {
            p.push(format!("ext_authz.subject.{key}"), KeyErrorKind::JwtOnly);
        }
    }
}

/// The claim or header name of each field.
fn compile_names(p: &mut Problems, s: &FileSubject, subject: &mut Subject) {
    let source = subject.source;
    match &s.id {
        Some(id) => subject.id = subject_name(p, source, "id", id),
        None if source == SubjectSource::Headers => {
            p.push("ext_authz.subject.id", KeyErrorKind::SubjectHeader);
        }
        None => {}
    }
    for (field, value, slot) in [
        ("session_id", &s.session_id, &mut subject.session_id),
        ("tenant", &s.tenant, &mut subject.tenant),
        ("roles", &s.roles, &mut subject.roles),
        ("acr", &s.acr, &mut subject.acr),
        ("amr", &s.amr, &mut subject.amr),
        ("auth_time", &s.auth_time, &mut subject.auth_time),
    ] {
        if let Some(v) = value {
            *slot = Some(subject_name(p, source, field, v));
        }
    }
    for (attr, claim) in &s.attributes {
        let v = subject_name(p, source, &format!("attributes.{attr}"), claim);
        subject.attributes.push((attr.clone(), v));
    }
}

/// The fields that must be present; each must have a name.
fn compile_required(p: &mut Problems, s: &FileSubject, subject: &mut Subject) {
    for (i, field) in s.required.iter().enumerate() {
        let key = format!("ext_authz.subject.required[{i}]");
        match FIELDS.iter().find(|(n, _)| n == field) {
            Some((_, f)) if subject.name_of(*f).is_some() => subject.required.push(*f),
            Some(_) => p.push(
                key,
                KeyErrorKind::RequiredUnset {
                    field: field.clone(),
                },
            ),
            None => p.push(
                key,
                KeyErrorKind::UnknownField {
                    field: field.clone(),
                },
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// `[ext_authz.device]`, `[ext_authz.network]`.

fn compile_device(p: &mut Problems, d: &FileDevice) -> FileDevice {
    let mut header = |key: &str, h: &Option<String>| {
        h.as_ref()
            .map(|h| header_name(p, &format!("ext_authz.device.{key}"), h))
    };
    FileDevice {
        id: header("id", &d.id),
        trusted: header("trusted", &d.trusted),
        platform: header("platform", &d.platform),
    }
}

struct Network {
    hops: u32,
    country: Option<String>,
    asn: Option<String>,
}

fn compile_network(p: &mut Problems, n: &FileNetwork) -> Network {
    let hops = n.trusted_hops.unwrap_or(0);
    if hops > MAX_HOPS {
        p.push(
            "ext_authz.network.trusted_hops",
            KeyErrorKind::TooManyHops {
                hops,
                max: MAX_HOPS,
            },
        );
    }
    let mut header = |key: &str, h: &Option<String>| {
        h.as_ref()
            .map(|h| header_name(p, &format!("ext_authz.network.{key}"), h))
    };
    Network {
        hops,
        country: header("country", &n.country),
        asn: header("asn", &n.asn),
    }
}

// ---------------------------------------------------------------------------
// Value sources and routes.

/// The path parameters in scope, with the pattern that declares them;
/// `None` outside a route.
type Params<'a> = Option<(&'a [String], &'a str)>;

fn compile_source(
    p: &mut Problems,
    key: &str,
    s: &FileSource,
    params: Params<'_>,
) -> Option<Source> {
    let from = match (&s.path, &s.query, &s.header) {
        (Some(name), None, None) => match params {
            Some((names, _)) if names.iter().any(|n| n == name) => Origin::Path(name.clone()),
            Some((_, pattern)) => {
                p.push(
                    format!("{key}.path"),
                    KeyErrorKind::UnknownParameter {
                        pattern: pattern.to_owned(),
                        name: name.clone(),
                    },
                );
                return None;
            }
            None => {
                p.push(format!("{key}.path"), KeyErrorKind::ParameterOutsideRoute);
                return None;
            }
        },
        (None, Some(name), None) => {
            non_empty(p, &format!("{key}.query"), name);
            Origin::Query(name.clone())
        }
        (None, None, Some(name)) => Origin::Header(header_name(p, &format!("{key}.header"), name)),
        _ => {
            p.push(key, KeyErrorKind::SourceCount);
            return None;
        }
    };
    Some(Source {
        from,
        kind: s.kind.unwrap_or_default(),
        required: s.required.unwrap_or(false),
    })
}

fn compile_attributes(
    p: &mut Problems,
    key: &str,
    map: &BTreeMap<String, FileSource>,
    params: Params<'_>,
) -> Vec<(String, Source)> {
    if map.len() > convert::MAX_ENTRIES {
        p.push(
            key,
            KeyErrorKind::TooManyEntries {
                max: convert::MAX_ENTRIES,
            },
        );
    }
    map.iter()
        .filter_map(|(name, s)| {
            let source = compile_source(p, &format!("{key}.{name}"), s, params)?;
            Some((name.clone(), source))
        })
        .collect()
}

fn compile_route(p: &mut Problems, i: usize, r: &FileRoute) -> Route {
    let key = format!("ext_authz.routes[{i}]");
    let method = match r.method.as_deref() {
        None | Some("*") => None,
        Some(m) => {
            let upper = m.to_ascii_uppercase();
            if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
                p.push(
                    format!("{key}.method"),
                    KeyErrorKind::Method {
                        method: m.to_owned(),
                    },
                );
            }
            Some(upper)
        }
    };
    let (segments, params) = compile_pattern(p, &format!("{key}.path"), &r.path);
    if let Some(action) = &r.action {
        non_empty(p, &format!("{key}.action"), action);
        if action.len() > convert::MAX_STRING_BYTES {
            p.push(
                format!("{key}.action"),
                KeyErrorKind::TooLong {
                    max: convert::MAX_STRING_BYTES,
                },
            );
        }
    }
    let scope = Some((params.as_slice(), r.path.as_str()));
    let resource_id = r
        .resource
        .id
        .as_ref()
        .and_then(|s| compile_source(p, &format!("{key}.resource.id"), s, scope));
    if let Some(id) = &resource_id
        && id.kind != ValueType::String
    {
        p.push(format!("{key}.resource.id.type"), KeyErrorKind::IdType);
    }
    let attributes = compile_attributes(
        p,
        &format!("{key}.resource.attributes"),
        &r.resource.attributes,
        scope,
    );
    Route {
        label: format!(
            "routes[{i}] `{} {}`",
            method.as_deref().unwrap_or("*"),
            r.path
        ),
        method,
        segments,
        action: r.action.clone(),
        resource_type: r.resource.kind.clone().unwrap_or_default(),
        resource_id,
        attributes,
    }
}

/// A path pattern's segments and its parameter names.
fn compile_pattern(p: &mut Problems, key: &str, pattern: &str) -> (Vec<Segment>, Vec<String>) {
    let mut segments = Vec::new();
    let mut params: Vec<String> = Vec::new();
    let Some(rest) = pattern.strip_prefix('/') else {
        p.push(
            key,
            KeyErrorKind::RelativePath {
                pattern: pattern.to_owned(),
            },
        );
        return (segments, params);
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.into_iter().enumerate() {
        let segment = if part == "**" {
            if i != last {
                p.push(
                    key,
                    KeyErrorKind::RestNotLast {
                        pattern: pattern.to_owned(),
                    },
                );
            }
            Segment::Rest
        } else if part == "*" {
            Segment::Any
        } else if let Some(name) = part.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let kind = if !identifier(name) {
                Some(KeyErrorKind::ParameterName {
                    name: name.to_owned(),
                    pattern: pattern.to_owned(),
                })
            } else if params.iter().any(|n| n == name) {
                Some(KeyErrorKind::DuplicateParameter {
                    name: name.to_owned(),
                    pattern: pattern.to_owned(),
                })
            } else {
                None
            };
            if let Some(kind) = kind {
                p.push(key, kind);
            }
            params.push(name.to_owned());
            Segment::Param(name.to_owned())
        } else {
            if part.contains(['{', '}', '*', '?', '#']) {
                p.push(
                    key,
                    KeyErrorKind::PartialSegment {
                        segment: part.to_owned(),
                        pattern: pattern.to_owned(),
                    },
                );
            }
            Segment::Literal(part.to_owned())
        };
        segments.push(segment);
    }
    (segments, params)
}
