//! The declarative mapping from an Envoy ext_authz `CheckRequest` to a
//! `DecideRequest`: the `[ext_authz]` section of the config file, checked
//! once at startup ([`Mapping::compile`]), and the pure function that applies
//! it to each request ([`Mapping::map`]). No code is needed per service.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, address};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::google::protobuf as epb;
use pbjson_types::value::Kind;
use pbjson_types::{Timestamp, Value};

use crate::proto::v1 as pb;
use crate::request::validate::{self as convert, InvalidRequest};

/// The filter-metadata namespace Envoy's `jwt_authn` filter writes verified
/// JWT payloads to (`payload_in_metadata`).
pub const JWT_AUTHN_NAMESPACE: &str = "envoy.filters.http.jwt_authn";

/// The `context_extensions` key that names the action, set per route in
/// Envoy. Works with no mapping configured.
pub const ACTION_EXTENSION: &str = "stepup_action";

/// The header holding the proxies' address chain.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

// ---------------------------------------------------------------------------
// The config file's `[ext_authz]` section.

/// `[ext_authz]`: how `Check` requests become decisions. Every key is
/// optional; unknown keys are rejected.
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileExtAuthz {
    /// What a request that cannot be mapped gets: `deny` (default) or `allow`.
    pub unmapped: Option<Fallback>,
    /// Where the subject and session come from.
    #[serde(default)]
    pub subject: FileSubject,
    /// Device headers.
    #[serde(default)]
    pub device: FileDevice,
    /// Client address and network headers.
    #[serde(default)]
    pub network: FileNetwork,
    /// The request's custom `attributes`, from headers or query parameters.
    #[serde(default)]
    pub attributes: BTreeMap<String, FileSource>,
    /// Route rules, tried in order; the first that matches wins.
    #[serde(default)]
    pub routes: Vec<FileRoute>,
}

/// The answer for a request that cannot be mapped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// 403, like a DENY decision.
    #[default]
    Deny,
    /// Let it through (the upstream still gets a decision id).
    Allow,
}

/// Where the subject and session are read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectSource {
    /// The verified JWT payload `jwt_authn` put in the metadata context.
    #[default]
    Jwt,
    /// Headers set by a trusted proxy (which must strip client copies).
    Headers,
}

/// `[ext_authz.subject]`: claim names (source `jwt`) or header names
/// (source `headers`) per field.
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSubject {
    /// `jwt` (default) or `headers`.
    pub source: Option<SubjectSource>,
    /// The filter-metadata namespace (default `envoy.filters.http.jwt_authn`).
    pub namespace: Option<String>,
    /// The key of the payload in that namespace (jwt_authn's
    /// `payload_in_metadata`); default: the first, in key order, that has the
    /// subject claim.
    pub payload: Option<String>,
    /// Read the verified payload from this header (base64url JSON, as
    /// jwt_authn's `forward_payload_header` or Istio's
    /// `outputPayloadToHeader` write it) instead of the metadata context.
    pub payload_header: Option<String>,
    /// `subject.id` (default claim `sub`; required).
    pub id: Option<String>,
    /// `session.id` (default claim `sid`).
    pub session_id: Option<String>,
    /// `subject.tenant` (default claim `tenant`).
    pub tenant: Option<String>,
    /// `subject.roles` (default claim `roles`).
    pub roles: Option<String>,
    /// `session.acr` (default claim `acr`).
    pub acr: Option<String>,
    /// `session.amr` (default claim `amr`).
    pub amr: Option<String>,
    /// `session.auth_time` (default claim `auth_time`).
    pub auth_time: Option<String>,
    /// `subject.attributes`: attribute name -> claim (or header) name.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Fields that must be present, else the request is unmapped:
    /// `session_id`, `tenant`, `roles`, `acr`, `amr`, `auth_time`.
    #[serde(default)]
    pub required: Vec<String>,
}

/// `[ext_authz.device]`: header names.
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDevice {
    /// `device.id`.
    pub id: Option<String>,
    /// `device.trusted`: `true`, `1` or `yes` mean trusted.
    pub trusted: Option<String>,
    /// `device.platform`.
    pub platform: Option<String>,
}

/// `[ext_authz.network]`.
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNetwork {
    /// How many proxies in front append to `x-forwarded-for` (count Envoy
    /// itself when it appends, with `use_remote_address: true`). 0 (default)
    /// takes the connection's source address and ignores the header.
    pub trusted_hops: Option<u32>,
    /// Header with the ISO 3166-1 alpha-2 country (e.g. `cf-ipcountry`).
    pub country: Option<String>,
    /// Header with the autonomous system number.
    pub asn: Option<String>,
}

/// `[[ext_authz.routes]]`: a method and path pattern naming an action.
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    /// HTTP method (`POST`); absent or `*`: any.
    pub method: Option<String>,
    /// Path pattern: literal segments, `{name}` captures one segment, `*`
    /// matches one segment, a final `**` matches the rest.
    pub path: String,
    /// The action; absent: the `stepup_action` context extension.
    pub action: Option<String>,
    /// The resource.
    #[serde(default)]
    pub resource: FileResource,
}

/// `resource` of a route.
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileResource {
    /// `resource.type`, a literal.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `resource.id`, from a path parameter, query parameter or header.
    pub id: Option<FileSource>,
    /// `resource.attributes`.
    #[serde(default)]
    pub attributes: BTreeMap<String, FileSource>,
}

/// Where a value comes from (exactly one of `path`, `query`, `header`) and
/// its type.
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// A `{name}` path parameter of the route.
    pub path: Option<String>,
    /// A query parameter.
    pub query: Option<String>,
    /// A request header.
    pub header: Option<String>,
    /// `string` (default), `number` or `bool`.
    #[serde(rename = "type")]
    pub kind: Option<ValueType>,
    /// When true, a request without it is unmapped.
    pub required: Option<bool>,
}

/// The type a mapped value is parsed as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// As is.
    #[default]
    String,
    /// A finite decimal number.
    Number,
    /// `true` or `false`.
    Bool,
}

// ---------------------------------------------------------------------------
// The compiled mapping.

/// A checked `[ext_authz]` section, ready to map requests. The default maps
/// the action from the `stepup_action` context extension and the subject from
/// the first JWT payload with the standard claim names.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    unmapped: Fallback,
    subject: Subject,
    device: FileDevice,
    hops: usize,
    country: Option<String>,
    asn: Option<String>,
    attributes: Vec<(String, Source)>,
    routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq)]
struct Subject {
    source: SubjectSource,
    namespace: String,
    payload: Option<String>,
    payload_header: Option<String>,
    id: String,
    session_id: Option<String>,
    tenant: Option<String>,
    roles: Option<String>,
    acr: Option<String>,
    amr: Option<String>,
    auth_time: Option<String>,
    attributes: Vec<(String, String)>,
    required: Vec<Field>,
}

/// Optional subject and session fields that `required` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    SessionId,
    Tenant,
    Roles,
    Acr,
    Amr,
    AuthTime,
}

const FIELDS: [(&str, Field); 6] = [
    ("session_id", Field::SessionId),
    ("tenant", Field::Tenant),
    ("roles", Field::Roles),
    ("acr", Field::Acr),
    ("amr", Field::Amr),
    ("auth_time", Field::AuthTime),
];

#[derive(Debug, Clone, PartialEq)]
struct Route {
    label: String,
    method: Option<String>,
    segments: Vec<Segment>,
    action: Option<String>,
    resource_type: String,
    resource_id: Option<Source>,
    attributes: Vec<(String, Source)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Param(String),
    Any,
    Rest,
}

#[derive(Debug, Clone, PartialEq)]
struct Source {
    from: From,
    kind: ValueType,
    required: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum From {
    Path(String),
    Query(String),
    Header(String),
}

impl std::fmt::Display for From {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            From::Path(p) => write!(f, "path parameter `{{{p}}}`"),
            From::Query(q) => write!(f, "query parameter `{q}`"),
            From::Header(h) => write!(f, "header `{h}`"),
        }
    }
}

impl Default for Mapping {
    fn default() -> Self {
        // The empty section has nothing that can fail to compile.
        Mapping::compile(&FileExtAuthz::default()).unwrap_or_else(|_| Mapping {
            unmapped: Fallback::Deny,
            subject: Subject::jwt_defaults(),
            device: FileDevice::default(),
            hops: 0,
            country: None,
            asn: None,
            attributes: Vec::new(),
            routes: Vec::new(),
        })
    }
}

impl Subject {
    fn jwt_defaults() -> Self {
        Subject {
            source: SubjectSource::Jwt,
            namespace: JWT_AUTHN_NAMESPACE.to_owned(),
            payload: None,
            payload_header: None,
            id: "sub".to_owned(),
            session_id: Some("sid".to_owned()),
            tenant: Some("tenant".to_owned()),
            roles: Some("roles".to_owned()),
            acr: Some("acr".to_owned()),
            amr: Some("amr".to_owned()),
            auth_time: Some("auth_time".to_owned()),
            attributes: Vec::new(),
            required: Vec::new(),
        }
    }

    fn name_of(&self, field: Field) -> Option<&str> {
        match field {
            Field::SessionId => self.session_id.as_deref(),
            Field::Tenant => self.tenant.as_deref(),
            Field::Roles => self.roles.as_deref(),
            Field::Acr => self.acr.as_deref(),
            Field::Amr => self.amr.as_deref(),
            Field::AuthTime => self.auth_time.as_deref(),
        }
    }

    /// `claim `x`` or `header `x``, for messages.
    fn describe(&self, name: &str) -> String {
        match self.source {
            SubjectSource::Jwt => format!("claim `{name}`"),
            SubjectSource::Headers => format!("header `{name}`"),
        }
    }
}

/// Collects the problems of one section, each naming its key.
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, key: &str, problem: impl std::fmt::Display) {
        self.0.push(format!("`{key}`: {problem}"));
    }
}

fn header_name(p: &mut Problems, key: &str, name: &str) -> String {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        p.push(key, format!("`{name}` is not a valid header name"));
    }
    name.to_ascii_lowercase()
}

fn non_empty(p: &mut Problems, key: &str, value: &str) {
    if value.is_empty() {
        p.push(key, "must not be empty");
    }
}

fn identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn compile_source(
    p: &mut Problems,
    key: &str,
    s: &FileSource,
    params: Option<(&[String], &str)>,
) -> Option<Source> {
    let from = match (&s.path, &s.query, &s.header) {
        (Some(name), None, None) => match params {
            Some((names, _)) if names.iter().any(|n| n == name) => From::Path(name.clone()),
            Some((_, pattern)) => {
                p.push(
                    &format!("{key}.path"),
                    format!("`{pattern}` has no parameter `{{{name}}}`"),
                );
                return None;
            }
            None => {
                p.push(
                    &format!("{key}.path"),
                    "path parameters exist only in a route (use `query` or `header`)",
                );
                return None;
            }
        },
        (None, Some(name), None) => {
            non_empty(p, &format!("{key}.query"), name);
            From::Query(name.clone())
        }
        (None, None, Some(name)) => From::Header(header_name(p, &format!("{key}.header"), name)),
        _ => {
            p.push(key, "set exactly one of `path`, `query`, `header`");
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
    params: Option<(&[String], &str)>,
) -> Vec<(String, Source)> {
    if map.len() > convert::MAX_ENTRIES {
        p.push(key, format!("more than {} entries", convert::MAX_ENTRIES));
    }
    map.iter()
        .filter_map(|(name, s)| {
            let source = compile_source(p, &format!("{key}.{name}"), s, params)?;
            Some((name.clone(), source))
        })
        .collect()
}

fn compile_pattern(p: &mut Problems, key: &str, pattern: &str) -> (Vec<Segment>, Vec<String>) {
    let mut segments = Vec::new();
    let mut params: Vec<String> = Vec::new();
    let Some(rest) = pattern.strip_prefix('/') else {
        p.push(key, format!("`{pattern}` must start with `/`"));
        return (segments, params);
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.into_iter().enumerate() {
        let segment = if part == "**" {
            if i != last {
                p.push(key, format!("`**` must be the last segment of `{pattern}`"));
            }
            Segment::Rest
        } else if part == "*" {
            Segment::Any
        } else if let Some(name) = part.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if !identifier(name) {
                p.push(
                    key,
                    format!(
                        "`{{{name}}}` in `{pattern}`: a parameter name is letters, digits and `_`"
                    ),
                );
            } else if params.iter().any(|n| n == name) {
                p.push(
                    key,
                    format!("parameter `{{{name}}}` appears twice in `{pattern}`"),
                );
            }
            params.push(name.to_owned());
            Segment::Param(name.to_owned())
        } else if part.contains(['{', '}', '*', '?', '#']) {
            p.push(
                key,
                format!(
                    "segment `{part}` of `{pattern}`: a parameter must be a whole segment (`{{name}}`), and `?`, `#` are not part of a path"
                ),
            );
            Segment::Literal(part.to_owned())
        } else {
            Segment::Literal(part.to_owned())
        };
        segments.push(segment);
    }
    (segments, params)
}

impl Mapping {
    /// Checks an `[ext_authz]` section: every problem is reported, each
    /// naming its config key (`ext_authz.routes[0].path`).
    pub fn compile(file: &FileExtAuthz) -> Result<Mapping, Vec<String>> {
        let mut p = Problems(Vec::new());
        let s = &file.subject;
        let source = s.source.unwrap_or_default();
        let mut subject = match source {
            SubjectSource::Jwt => Subject::jwt_defaults(),
            SubjectSource::Headers => Subject {
                source,
                namespace: String::new(),
                payload: None,
                payload_header: None,
                id: String::new(),
                session_id: None,
                tenant: None,
                roles: None,
                acr: None,
                amr: None,
                auth_time: None,
                attributes: Vec::new(),
                required: Vec::new(),
            },
        };
        let name = |p: &mut Problems, field: &str, value: &str| -> String {
            let key = format!("ext_authz.subject.{field}");
            match source {
                SubjectSource::Jwt => {
                    non_empty(p, &key, value);
                    value.to_owned()
                }
                SubjectSource::Headers => header_name(p, &key, value),
            }
        };
        if source == SubjectSource::Headers {
            for (key, set) in [
                ("namespace", &s.namespace),
                ("payload", &s.payload),
                ("payload_header", &s.payload_header),
            ] {
                if set.is_some() {
                    p.push(
                        &format!("ext_authz.subject.{key}"),
                        "only used with `source = \"jwt\"`",
                    );
                }
            }
        } else {
            if let Some(ns) = &s.namespace {
                non_empty(&mut p, "ext_authz.subject.namespace", ns);
                subject.namespace.clone_from(ns);
            }
            if let Some(payload) = &s.payload {
                non_empty(&mut p, "ext_authz.subject.payload", payload);
                subject.payload = Some(payload.clone());
            }
            if let Some(h) = &s.payload_header {
                subject.payload_header =
                    Some(header_name(&mut p, "ext_authz.subject.payload_header", h));
                if s.payload.is_some() || s.namespace.is_some() {
                    p.push(
                        "ext_authz.subject.payload_header",
                        "set either `payload_header` or `namespace`/`payload`, not both",
                    );
                }
            }
        }
        match &s.id {
            Some(id) => subject.id = name(&mut p, "id", id),
            None if source == SubjectSource::Headers => p.push(
                "ext_authz.subject.id",
                "required with `source = \"headers\"` (the header naming the subject)",
            ),
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
                *slot = Some(name(&mut p, field, v));
            }
        }
        for (attr, claim) in &s.attributes {
            let v = name(&mut p, &format!("attributes.{attr}"), claim);
            subject.attributes.push((attr.clone(), v));
        }
        for (i, field) in s.required.iter().enumerate() {
            let key = format!("ext_authz.subject.required[{i}]");
            match FIELDS.iter().find(|(n, _)| n == field) {
                Some((_, f)) if subject.name_of(*f).is_some() => subject.required.push(*f),
                Some(_) => p.push(
                    &key,
                    format!("`{field}` is required but `ext_authz.subject.{field}` is not set"),
                ),
                None => p.push(
                    &key,
                    format!(
                        "unknown field `{field}`; expected one of `session_id`, `tenant`, `roles`, `acr`, `amr`, `auth_time`"
                    ),
                ),
            }
        }

        let d = &file.device;
        let device = FileDevice {
            id: d
                .id
                .as_ref()
                .map(|h| header_name(&mut p, "ext_authz.device.id", h)),
            trusted: d
                .trusted
                .as_ref()
                .map(|h| header_name(&mut p, "ext_authz.device.trusted", h)),
            platform: d
                .platform
                .as_ref()
                .map(|h| header_name(&mut p, "ext_authz.device.platform", h)),
        };
        let n = &file.network;
        let hops = n.trusted_hops.unwrap_or(0);
        if hops > 64 {
            p.push(
                "ext_authz.network.trusted_hops",
                format!("`{hops}` is more than 64"),
            );
        }
        let country = n
            .country
            .as_ref()
            .map(|h| header_name(&mut p, "ext_authz.network.country", h));
        let asn = n
            .asn
            .as_ref()
            .map(|h| header_name(&mut p, "ext_authz.network.asn", h));

        let attributes = compile_attributes(&mut p, "ext_authz.attributes", &file.attributes, None);

        let mut routes = Vec::new();
        for (i, r) in file.routes.iter().enumerate() {
            let key = format!("ext_authz.routes[{i}]");
            let method = match r.method.as_deref() {
                None | Some("*") => None,
                Some(m) => {
                    let upper = m.to_ascii_uppercase();
                    if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
                        p.push(
                            &format!("{key}.method"),
                            format!("`{m}` is not an HTTP method (e.g. `POST`, or `*` for any)"),
                        );
                    }
                    Some(upper)
                }
            };
            let (segments, params) = compile_pattern(&mut p, &format!("{key}.path"), &r.path);
            if let Some(action) = &r.action {
                non_empty(&mut p, &format!("{key}.action"), action);
                if action.len() > convert::MAX_STRING_BYTES {
                    p.push(
                        &format!("{key}.action"),
                        format!("longer than {} bytes", convert::MAX_STRING_BYTES),
                    );
                }
            }
            let scope = Some((params.as_slice(), r.path.as_str()));
            let resource_id = r
                .resource
                .id
                .as_ref()
                .and_then(|s| compile_source(&mut p, &format!("{key}.resource.id"), s, scope));
            if let Some(id) = &resource_id
                && id.kind != ValueType::String
            {
                p.push(&format!("{key}.resource.id.type"), "an id is a string");
            }
            let attributes = compile_attributes(
                &mut p,
                &format!("{key}.resource.attributes"),
                &r.resource.attributes,
                scope,
            );
            routes.push(Route {
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
            });
        }

        if !p.0.is_empty() {
            return Err(p.0);
        }
        Ok(Mapping {
            unmapped: file.unmapped.unwrap_or_default(),
            subject,
            device,
            hops: usize::try_from(hops).unwrap_or(usize::MAX),
            country,
            asn,
            attributes,
            routes,
        })
    }

    /// The answer for requests that cannot be mapped.
    pub fn fallback(&self) -> Fallback {
        self.unmapped
    }

    /// Maps a `CheckRequest` to a validated `DecideRequest` and the
    /// decision's clock (Envoy's `attributes.request.time`, else `clock`).
    pub fn map(&self, check: &CheckRequest, clock: DateTime<Utc>) -> Result<Mapped, MapError> {
        let attrs = check
            .attributes
            .as_ref()
            .ok_or_else(|| malformed("attributes", "required"))?;
        let request = attrs
            .request
            .as_ref()
            .ok_or_else(|| malformed("attributes.request", "required"))?;
        let http = request.http.as_ref().ok_or_else(|| {
            malformed(
                "attributes.request.http",
                "required (stepup answers HTTP checks only)",
            )
        })?;
        if http.method.is_empty() {
            return Err(malformed("attributes.request.http.method", "required"));
        }
        if http.path.is_empty() {
            return Err(malformed("attributes.request.http.path", "required"));
        }
        let time = match &request.time {
            Some(t) => {
                let ts = Timestamp {
                    seconds: t.seconds,
                    nanos: t.nanos,
                };
                let probe = pb::DecideRequest {
                    action: "-".to_owned(),
                    subject: Some(pb::Subject {
                        id: "-".to_owned(),
                        ..Default::default()
                    }),
                    time: Some(ts),
                    ..Default::default()
                };
                convert::validate(&probe, clock).map_err(|e| {
                    MapError::Malformed(InvalidRequest {
                        field: "attributes.request.time".to_owned(),
                        problem: e.problem,
                    })
                })?;
                Some(ts)
            }
            None => None,
        };

        let headers = Headers {
            map: &http.headers,
            raw: http.header_map.as_ref(),
        };
        let (path, query) = split_target(&http.path);
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();

        let mut captures = Vec::new();
        let route = self
            .routes
            .iter()
            .find(|r| r.matches(&http.method, &segments, &mut captures));

        let action = match route.and_then(|r| r.action.as_deref()) {
            Some(a) => a.to_owned(),
            None => match attrs.context_extensions.get(ACTION_EXTENSION) {
                Some(a) if !a.is_empty() => a.clone(),
                _ => {
                    let why = match route {
                        Some(r) => format!(
                            "{} sets no action and no `{ACTION_EXTENSION}` context extension is set",
                            r.label
                        ),
                        None => format!(
                            "no route matches `{} {}` and no `{ACTION_EXTENSION}` context extension is set",
                            truncate(&http.method),
                            truncate(path)
                        ),
                    };
                    return Err(MapError::Unmapped(why));
                }
            },
        };

        let inputs = Inputs {
            headers: &headers,
            query,
            captures: &captures,
        };
        let (subject, session) = self.subject(attrs, &headers)?;
        let device = self.device(&headers);
        let network = self.network(attrs, &headers)?;
        let attributes = inputs.values(&self.attributes)?;
        let resource = match route {
            Some(r) => {
                let id = match &r.resource_id {
                    Some(s) => match inputs.value(s)? {
                        Some(Value {
                            kind: Some(Kind::StringValue(id)),
                        }) => id,
                        _ => String::new(),
                    },
                    None => String::new(),
                };
                let attributes = inputs.values(&r.attributes)?;
                (!r.resource_type.is_empty() || !id.is_empty() || !attributes.is_empty()).then(
                    || pb::Resource {
                        r#type: r.resource_type.clone(),
                        id,
                        attributes,
                    },
                )
            }
            None => None,
        };

        let decide = pb::DecideRequest {
            action,
            subject: Some(subject),
            session,
            device,
            network,
            resource,
            attributes,
            time,
            explain: false,
        };
        let now = convert::validate(&decide, clock)
            .map_err(|e| MapError::Unmapped(format!("the mapped request is invalid: {e}")))?;
        Ok(Mapped {
            request: decide,
            now,
            route: route.map(|r| r.label.clone()),
        })
    }

    fn subject<'a>(
        &'a self,
        attrs: &'a AttributeContext,
        headers: &'a Headers<'a>,
    ) -> Result<(pb::Subject, Option<pb::Session>), MapError> {
        let s = &self.subject;
        let payload;
        let reader: Reader<'_> = match s.source {
            SubjectSource::Jwt => {
                payload = self.payload(attrs, headers)?;
                let p: &epb::Struct = &payload;
                Box::new(move |name| claim(p, name).map(Claim::Json))
            }
            SubjectSource::Headers => Box::new(move |name| headers.get(name).map(Claim::Text)),
        };
        let text = |name: Option<&str>| -> Result<String, MapError> {
            match name.and_then(&reader) {
                None => Ok(String::new()),
                Some(c) => c.text().ok_or_else(|| {
                    unmapped(format!(
                        "{} is not a string",
                        s.describe(name.unwrap_or(""))
                    ))
                }),
            }
        };
        let list = |name: Option<&str>| -> Result<Vec<String>, MapError> {
            match name.and_then(&reader) {
                None => Ok(Vec::new()),
                Some(c) => c.list().ok_or_else(|| {
                    unmapped(format!(
                        "{} is not a list of strings",
                        s.describe(name.unwrap_or(""))
                    ))
                }),
            }
        };
        let id = text(Some(&s.id))?;
        if id.is_empty() {
            let whence = match s.source {
                SubjectSource::Jwt => "the JWT payload",
                SubjectSource::Headers => "the request",
            };
            return Err(unmapped(format!(
                "{} (the subject) is missing from {whence}",
                s.describe(&s.id)
            )));
        }
        let auth_time = match s.auth_time.as_deref().and_then(&reader) {
            None => None,
            Some(c) => Some(c.time().ok_or_else(|| {
                unmapped(format!(
                    "{} is not a Unix time in seconds{}",
                    s.describe(s.auth_time.as_deref().unwrap_or("")),
                    if s.source == SubjectSource::Headers {
                        " or an RFC 3339 timestamp"
                    } else {
                        ""
                    }
                ))
            })?),
        };
        let mut attributes = BTreeMap::new();
        for (attr, name) in &s.attributes {
            if let Some(c) = reader(name) {
                attributes.insert(attr.clone(), c.value());
            }
        }
        let subject = pb::Subject {
            id,
            tenant: text(s.tenant.as_deref())?,
            roles: list(s.roles.as_deref())?,
            attributes,
        };
        let session = pb::Session {
            id: text(s.session_id.as_deref())?,
            acr: text(s.acr.as_deref())?,
            amr: list(s.amr.as_deref())?,
            auth_time,
        };
        for field in &s.required {
            let missing = match field {
                Field::SessionId => session.id.is_empty(),
                Field::Tenant => subject.tenant.is_empty(),
                Field::Roles => subject.roles.is_empty(),
                Field::Acr => session.acr.is_empty(),
                Field::Amr => session.amr.is_empty(),
                Field::AuthTime => session.auth_time.is_none(),
            };
            if missing {
                return Err(unmapped(format!(
                    "required {} is missing",
                    s.describe(s.name_of(*field).unwrap_or(""))
                )));
            }
        }
        let session = (session != pb::Session::default()).then_some(session);
        Ok((subject, session))
    }

    /// The verified JWT payload: the configured one, or the first (in key
    /// order) that carries the subject claim.
    fn payload<'a>(
        &self,
        attrs: &'a AttributeContext,
        headers: &Headers<'_>,
    ) -> Result<Cow<'a, epb::Struct>, MapError> {
        let s = &self.subject;
        if let Some(h) = &s.payload_header {
            let Some(encoded) = headers.get(h) else {
                return Err(unmapped(format!(
                    "no JWT payload: header `{h}` is missing (is the request authenticated?)"
                )));
            };
            let payload = base64url(encoded.trim())
                .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
                .and_then(|v| as_struct(&from_json(v, 0)).cloned())
                .ok_or_else(|| {
                    unmapped(format!(
                        "header `{h}` is not a base64url-encoded JSON object (a verified JWT payload)"
                    ))
                })?;
            return Ok(Cow::Owned(payload));
        }
        let ns = attrs
            .metadata_context
            .as_ref()
            .and_then(|m| m.filter_metadata.get(&s.namespace));
        let found = match &s.payload {
            Some(key) => ns.and_then(|n| n.fields.get(key)).and_then(as_struct),
            None => ns.and_then(|n| {
                let mut keys: Vec<&String> = n.fields.keys().collect();
                keys.sort();
                keys.into_iter()
                    .filter_map(|k| n.fields.get(k).and_then(as_struct))
                    .find(|p| claim(p, &s.id).is_some())
            }),
        };
        found.map(Cow::Borrowed).ok_or_else(|| {
            unmapped(match &s.payload {
                Some(key) => format!(
                    "no JWT payload `{key}` under `{}` in the metadata context (is jwt_authn's `payload_in_metadata` `{key}`, and `{}` in ext_authz's `metadata_context_namespaces`?)",
                    s.namespace, s.namespace
                ),
                None => format!(
                    "no JWT payload with claim `{}` under `{}` in the metadata context (is the request authenticated, and `{}` in ext_authz's `metadata_context_namespaces`?)",
                    s.id, s.namespace, s.namespace
                ),
            })
        })
    }

    fn device(&self, headers: &Headers<'_>) -> Option<pb::Device> {
        let d = &self.device;
        let get = |h: &Option<String>| h.as_deref().and_then(|h| headers.get(h));
        let device = pb::Device {
            id: get(&d.id).map(Cow::into_owned).unwrap_or_default(),
            trusted: get(&d.trusted).is_some_and(|v| {
                let v = v.trim();
                ["true", "1", "yes"]
                    .iter()
                    .any(|t| v.eq_ignore_ascii_case(t))
            }),
            platform: get(&d.platform).map(Cow::into_owned).unwrap_or_default(),
            attributes: BTreeMap::new(),
        };
        (device != pb::Device::default()).then_some(device)
    }

    fn network(
        &self,
        attrs: &AttributeContext,
        headers: &Headers<'_>,
    ) -> Result<Option<pb::Network>, MapError> {
        let ip = self.client_ip(attrs, headers)?;
        let country = self
            .country
            .as_deref()
            .and_then(|h| headers.get(h))
            .map(|c| c.trim().to_ascii_uppercase())
            // A CDN's "unknown" markers (`T1`, empty) are not countries.
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
            .unwrap_or_default();
        let asn = self
            .asn
            .as_deref()
            .and_then(|h| headers.get(h))
            .and_then(|a| {
                let a = a.trim();
                a.strip_prefix("AS").unwrap_or(a).parse::<u32>().ok()
            })
            .unwrap_or(0);
        let network = pb::Network {
            ip: ip.map(ip_text).unwrap_or_default(),
            country,
            asn,
            attributes: BTreeMap::new(),
        };
        Ok((network != pb::Network::default()).then_some(network))
    }

    /// The client address: with N trusted hops, the Nth `x-forwarded-for`
    /// entry from the right (the one the outermost trusted proxy appended);
    /// with none, or a shorter chain, the connection's source address.
    fn client_ip(
        &self,
        attrs: &AttributeContext,
        headers: &Headers<'_>,
    ) -> Result<Option<IpAddr>, MapError> {
        if self.hops > 0
            && let Some(xff) = headers.get(FORWARDED_FOR)
        {
            let entry = xff
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .rev()
                .nth(self.hops - 1);
            if let Some(entry) = entry {
                return parse_ip(entry).map(Some).ok_or_else(|| {
                    unmapped(format!(
                        "`{FORWARDED_FOR}` entry `{}` is not an IP address",
                        truncate(entry)
                    ))
                });
            }
        }
        let source = attrs
            .source
            .as_ref()
            .and_then(|p| p.address.as_ref())
            .and_then(|a| a.address.as_ref());
        Ok(match source {
            Some(address::Address::SocketAddress(s)) => parse_ip(&s.address),
            _ => None,
        })
    }
}

/// The canonical text of an address; IPv4 without the formatting machinery
/// (`Display` for `Ipv4Addr` costs about a microsecond's tenth per call).
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(itoa::Buffer::new().format(octet));
            }
            out
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse().ok())
        })
}

impl Route {
    fn matches<'p>(
        &self,
        method: &str,
        path: &[&'p str],
        captures: &mut Vec<(&'p str, String)>,
    ) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        captures.clear();
        let mut parts = path.iter();
        let mut rest = false;
        for segment in &self.segments {
            match segment {
                Segment::Rest => {
                    rest = true;
                    break;
                }
                Segment::Literal(l) => {
                    if parts.next() != Some(&l.as_str()) {
                        return false;
                    }
                }
                Segment::Any => {
                    if parts.next().is_none_or(|p| p.is_empty()) {
                        return false;
                    }
                }
                Segment::Param(_) => match parts.next() {
                    Some(p) if !p.is_empty() => captures.push((p, String::new())),
                    _ => return false,
                },
            }
        }
        if !rest && parts.next().is_some() {
            return false;
        }
        // Name the captures only for the route that matched.
        let names = self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) => Some(n),
            _ => None,
        });
        for (c, n) in captures.iter_mut().zip(names) {
            c.1.clone_from(n);
        }
        true
    }
}

/// The result of mapping a `CheckRequest`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The validated request to decide.
    pub request: pb::DecideRequest,
    /// The decision's clock.
    pub now: DateTime<Utc>,
    /// The route rule that matched, e.g. ``routes[0] `POST /v1/payments/{id}/refunds` ``.
    pub route: Option<String>,
}

/// Why a `CheckRequest` was not mapped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError {
    /// Not a request Envoy sends: a gRPC `INVALID_ARGUMENT`.
    #[error(transparent)]
    Malformed(InvalidRequest),
    /// A well-formed request the mapping cannot turn into a decision (no
    /// route, a missing claim, a bad parameter): the configured fallback.
    #[error("{0}")]
    Unmapped(String),
}

fn malformed(field: &str, problem: &str) -> MapError {
    MapError::Malformed(InvalidRequest {
        field: field.to_owned(),
        problem: problem.to_owned(),
    })
}

fn unmapped(reason: String) -> MapError {
    MapError::Unmapped(reason)
}

/// At most 64 characters of user input in a message.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

// ---------------------------------------------------------------------------
// Reading the request.

/// The request's headers: the `headers` map, or `header_map` when Envoy sends
/// raw headers (`encode_raw_headers`). Names are lowercase.
pub(crate) struct Headers<'a> {
    pub(crate) map: &'a HashMap<String, String>,
    pub(crate) raw: Option<&'a HeaderMap>,
}

impl<'a> Headers<'a> {
    fn get(&self, name: &str) -> Option<Cow<'a, str>> {
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
fn split_target(target: &str) -> (&str, &str) {
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    target.split_once('?').unwrap_or((target, ""))
}

/// Decodes `%XX` escapes (and `+` as a space in a query); `None` when the
/// escapes are malformed or the result is not UTF-8.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+')) {
        return Some(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(|h| (h as char).to_digit(16))?;
                let lo = bytes.next().and_then(|l| (l as char).to_digit(16))?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// What route values are read from.
struct Inputs<'r, 'a> {
    headers: &'r Headers<'a>,
    query: &'r str,
    captures: &'r [(&'r str, String)],
}

impl Inputs<'_, '_> {
    fn raw(&self, from: &From) -> Result<Option<Cow<'_, str>>, MapError> {
        let bad_escape = || unmapped(format!("{from} is not valid percent-encoded UTF-8"));
        Ok(match from {
            From::Header(h) => self.headers.get(h),
            From::Path(name) => match self.captures.iter().find(|(_, n)| n == name) {
                Some((v, _)) => Some(percent_decode(v, false).ok_or_else(bad_escape)?),
                None => None,
            },
            From::Query(name) => {
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
                            return Err(unmapped(format!(
                                "{from} is given more than once with different values"
                            )));
                        }
                        Some(_) => {}
                        None => found = Some(v),
                    }
                }
                found
            }
        })
    }

    fn value(&self, s: &Source) -> Result<Option<Value>, MapError> {
        let Some(raw) = self.raw(&s.from)? else {
            if s.required {
                return Err(unmapped(format!("required {} is missing", s.from)));
            }
            return Ok(None);
        };
        let kind = match s.kind {
            ValueType::String => Kind::StringValue(raw.into_owned()),
            ValueType::Number => match raw.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Kind::NumberValue(n),
                _ => {
                    return Err(unmapped(format!(
                        "{}: `{}` is not a number",
                        s.from,
                        truncate(&raw)
                    )));
                }
            },
            ValueType::Bool => match raw.trim() {
                t if t.eq_ignore_ascii_case("true") => Kind::BoolValue(true),
                f if f.eq_ignore_ascii_case("false") => Kind::BoolValue(false),
                other => {
                    return Err(unmapped(format!(
                        "{}: `{}` is not `true` or `false`",
                        s.from,
                        truncate(other)
                    )));
                }
            },
        };
        Ok(Some(Value { kind: Some(kind) }))
    }

    fn values(&self, sources: &[(String, Source)]) -> Result<BTreeMap<String, Value>, MapError> {
        let mut out = BTreeMap::new();
        for (name, s) in sources {
            if let Some(v) = self.value(s)? {
                out.insert(name.clone(), v);
            }
        }
        Ok(out)
    }
}

/// Reads a subject field by claim or header name.
type Reader<'a> = Box<dyn Fn(&str) -> Option<Claim<'a>> + 'a>;

/// A subject field as found: a JWT claim or a header value.
enum Claim<'a> {
    Json(&'a epb::Value),
    Text(Cow<'a, str>),
}

impl Claim<'_> {
    fn text(&self) -> Option<String> {
        match self {
            Claim::Text(t) => Some(t.to_string()),
            Claim::Json(v) => match &v.kind {
                Some(epb::value::Kind::StringValue(s)) => Some(s.clone()),
                // Numeric subject ids exist (e.g. GitHub's).
                Some(epb::value::Kind::NumberValue(n))
                    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 =>
                {
                    Some(format!("{n:.0}"))
                }
                _ => None,
            },
        }
    }

    /// A JSON list of strings, or a string of items separated by spaces or
    /// commas.
    fn list(&self) -> Option<Vec<String>> {
        let split = |s: &str| {
            s.split([' ', ','])
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match self {
            Claim::Text(t) => Some(split(t)),
            Claim::Json(v) => match &v.kind {
                Some(epb::value::Kind::StringValue(s)) => Some(split(s)),
                Some(epb::value::Kind::ListValue(l)) => l
                    .values
                    .iter()
                    .map(|v| match &v.kind {
                        Some(epb::value::Kind::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            },
        }
    }

    fn time(&self) -> Option<Timestamp> {
        let from_secs = |secs: f64| {
            if !secs.is_finite() {
                return None;
            }
            let whole = secs.floor();
            // In range: the Timestamp range is checked by validation.
            #[expect(clippy::cast_possible_truncation, reason = "checked finite, floored")]
            let seconds = whole as i64;
            #[expect(clippy::cast_possible_truncation, reason = "in 0..1e9")]
            let nanos = ((secs - whole) * 1e9) as i32;
            Some(Timestamp { seconds, nanos })
        };
        match self {
            Claim::Json(v) => match &v.kind {
                Some(epb::value::Kind::NumberValue(n)) => from_secs(*n),
                Some(epb::value::Kind::StringValue(s)) => s.trim().parse().ok().and_then(from_secs),
                _ => None,
            },
            Claim::Text(t) => {
                let t = t.trim();
                match t.parse::<i64>() {
                    Ok(seconds) => Some(Timestamp { seconds, nanos: 0 }),
                    Err(_) => DateTime::parse_from_rfc3339(t)
                        .ok()
                        .map(|d| Timestamp::from(d.with_timezone(&Utc))),
                }
            }
        }
    }

    fn value(&self) -> Value {
        match self {
            Claim::Text(t) => Value {
                kind: Some(Kind::StringValue(t.to_string())),
            },
            Claim::Json(v) => json_value(v, 0),
        }
    }
}

/// Decodes base64url (or standard base64), padding optional.
fn base64url(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// A JSON value as Envoy's `google.protobuf.Value`; nesting past the request
/// limit is cut.
fn from_json(v: serde_json::Value, depth: usize) -> epb::Value {
    use epb::value::Kind as E;
    let kind = match v {
        _ if depth > convert::MAX_DEPTH + 1 => E::NullValue(0),
        serde_json::Value::Null => E::NullValue(0),
        serde_json::Value::Bool(b) => E::BoolValue(b),
        serde_json::Value::Number(n) => E::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => E::StringValue(s),
        serde_json::Value::Array(a) => E::ListValue(epb::ListValue {
            values: a.into_iter().map(|v| from_json(v, depth + 1)).collect(),
        }),
        serde_json::Value::Object(o) => E::StructValue(epb::Struct {
            fields: o
                .into_iter()
                .map(|(k, v)| (k, from_json(v, depth + 1)))
                .collect(),
        }),
    };
    epb::Value { kind: Some(kind) }
}

fn as_struct(v: &epb::Value) -> Option<&epb::Struct> {
    match &v.kind {
        Some(epb::value::Kind::StructValue(s)) => Some(s),
        _ => None,
    }
}

/// A claim by name; a dotted name that is not a claim itself walks nested
/// objects (`realm_access.roles`).
fn claim<'a>(payload: &'a epb::Struct, name: &str) -> Option<&'a epb::Value> {
    if let Some(v) = payload.fields.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = payload.fields.get(parts.next()?)?;
    for part in parts {
        v = as_struct(v)?.fields.get(part)?;
    }
    Some(v)
}

/// Envoy's `google.protobuf.Value` as ours; nesting past the request limit
/// is cut (validation rejects it anyway).
fn json_value(v: &epb::Value, depth: usize) -> Value {
    use epb::value::Kind as E;
    let kind = match &v.kind {
        _ if depth > convert::MAX_DEPTH => Kind::NullValue(0),
        None | Some(E::NullValue(_)) => Kind::NullValue(0),
        Some(E::NumberValue(n)) => Kind::NumberValue(*n),
        Some(E::StringValue(s)) => Kind::StringValue(s.clone()),
        Some(E::BoolValue(b)) => Kind::BoolValue(*b),
        Some(E::StructValue(s)) => Kind::StructValue(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v, depth + 1)))
                .collect(),
        ),
        Some(E::ListValue(l)) => {
            Kind::ListValue(l.values.iter().map(|v| json_value(v, depth + 1)).collect())
        }
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests;
