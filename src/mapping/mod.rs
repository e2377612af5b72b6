//! The declarative mapping from an Envoy ext_authz `CheckRequest` to a
//! `DecideRequest`: the `[ext_authz]` section of the config file, checked
//! once at startup ([`Mapping::compile`]), and the pure function that applies
//! it to each request ([`Mapping::map`]). No code is needed per service.
//!
//! `schema` is the section as serde reads it, `compile` checks it into a
//! [`Mapping`], `map` applies that to one request, reading it through
//! `inputs` (headers, path and query values) and `claims` (subject fields),
//! with `decode` for the encodings; `error` holds both operations' errors.

mod claims;
mod compile;
mod decode;
mod error;
mod inputs;
mod map;
mod schema;

use error::UnmappedError;
#[cfg(test)]
pub(crate) use error::UnmappedErrorKind;
pub use error::{ClaimName, KeyError, KeyErrorKind, MapError, MappingError, Origin};
pub(crate) use inputs::Headers;
pub(crate) use map::Mapped;
pub use schema::{Fallback, FileDevice, FileExtAuthz, SubjectSource, ValueType};

/// The filter-metadata namespace Envoy's `jwt_authn` filter writes verified
/// JWT payloads to (`payload_in_metadata`).
pub const JWT_AUTHN_NAMESPACE: &str = "envoy.filters.http.jwt_authn";

/// The `context_extensions` key that names the action, set per route in
/// Envoy. Works with no mapping configured.
pub const ACTION_EXTENSION: &str = "stepup_action";

/// The header carrying the bearer token a payload header is bound to.
pub(crate) const AUTHORIZATION: &str = "authorization";

/// The header holding the proxies' address chain.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

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

impl Mapping {
    /// The answer for requests that cannot be mapped.
    pub fn fallback(&self) -> Fallback {
        self.unmapped
    }

    /// The answer for a request that could not be mapped for `reason`: the
    /// configured fallback, but always [`Fallback::Deny`] for a payload
    /// header that no verified token vouches for (a forged identity, which
    /// the upstream must not receive either).
    pub(crate) fn fallback_for(&self, reason: &UnmappedError) -> Fallback {
        if reason.kind().is_forged_identity() {
            Fallback::Deny
        } else {
            self.unmapped
        }
    }

    /// The accepted issuers (`[ext_authz.subject] issuers`); with two or
    /// more, subject ids are `<iss>#<sub>`.
    pub(crate) fn issuers(&self) -> &[String] {
        &self.subject.issuers
    }

    /// What the operator should know at start-up about how much this
    /// mapping believes: one line each.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let s = &self.subject;
        let mut out = Vec::new();
        if let Some(h) = &s.payload_header
            && s.payload_header_stripped
        {
            out.push(format!(
                "`ext_authz.subject.payload_header_stripped_by_proxy = true`: header `{h}` is believed without a bearer token; a client that reaches stepup through a proxy that does not remove client copies of `{h}` can claim any identity"
            ));
        }
        out
    }
}

/// The separator of an issuer-qualified subject id, `<iss>#<sub>`: an
/// issuer URL has no fragment, so the id splits back unambiguously.
pub(crate) const ISSUER_SEPARATOR: char = '#';

/// The claim naming a JWT's issuer.
pub(crate) const ISSUER_CLAIM: &str = "iss";

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

/// Where the subject and session fields are read: claim names (source
/// `jwt`) or header names (source `headers`).
#[derive(Debug, Clone, PartialEq)]
struct Subject {
    source: SubjectSource,
    namespace: String,
    payload: Option<String>,
    payload_header: Option<String>,
    /// `payload_header` is believed without a bearer token to bind it to.
    payload_header_stripped: bool,
    /// The accepted `iss` values; empty: any.
    issuers: Vec<String>,
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

impl Subject {
    fn jwt_defaults() -> Self {
        Subject {
            source: SubjectSource::Jwt,
            namespace: JWT_AUTHN_NAMESPACE.to_owned(),
            payload: None,
            payload_header: None,
            payload_header_stripped: false,
            issuers: Vec::new(),
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

    /// No field set: each is named in the config.
    fn headers() -> Self {
        Subject {
            source: SubjectSource::Headers,
            namespace: String::new(),
            payload: None,
            payload_header: None,
            payload_header_stripped: false,
            issuers: Vec::new(),
            id: String::new(),
            session_id: None,
            tenant: None,
            roles: None,
            acr: None,
            amr: None,
            auth_time: None,
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

    /// A claim or header name as messages name it.
    fn claim_name(&self, name: &str) -> ClaimName {
        ClaimName {
            source: self.source,
            name: name.to_owned(),
        }
    }
}

/// A route rule: a method and path pattern, and what it maps to.
#[derive(Debug, Clone, PartialEq)]
struct Route {
    /// For logs and messages, e.g. ``routes[0] `POST /v1/payments/{id}` ``.
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

/// A route value: where it is read, its type, and whether it must be there.
#[derive(Debug, Clone, PartialEq)]
struct Source {
    from: Origin,
    kind: ValueType,
    required: bool,
}

#[cfg(test)]
mod tests;
