//! The `[ext_authz]` section of the config file as serde reads it: every
//! key optional, unknown keys rejected. [`Mapping::compile`](super::Mapping::compile)
//! checks it.

use std::collections::BTreeMap;

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
    /// Believe `payload_header` without a bearer token to bind it to: only
    /// when the proxy in front removes every client-sent copy of the header
    /// (and sets it only from a verified token). Default `false`: the header
    /// must equal the payload segment of the request's
    /// `Authorization: Bearer` token, which the proxy verified.
    pub payload_header_stripped_by_proxy: Option<bool>,
    /// The accepted issuers (the `iss` claim): a payload from any other is
    /// unmapped. With two or more, `subject.id` is `<iss>#<sub>`, so users
    /// of different issuers never share a history; with one or none it is
    /// the subject claim as is.
    #[serde(default)]
    pub issuers: Vec<String>,
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
