//! The errors of the mapping: [`MappingError`] when an `[ext_authz]`
//! section does not compile, [`MapError`] when one request does not map.

use std::fmt;

use super::schema::SubjectSource;
use super::{ACTION_EXTENSION, FORWARDED_FOR};
use crate::request::validate::InvalidRequest;

// ---------------------------------------------------------------------------
// Compiling.

/// Why an `[ext_authz]` section is unusable: every problem, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.problems))]
pub struct MappingError {
    /// Each names its config key, in the order of the section.
    pub problems: Vec<KeyError>,
}

fn lines(problems: &[KeyError]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// One bad key of the `[ext_authz]` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {kind}")]
pub struct KeyError {
    /// The config key, e.g. `ext_authz.routes[0].path`.
    pub key: String,
    /// What is wrong with it.
    pub kind: KeyErrorKind,
}

/// What is wrong with a key of the `[ext_authz]` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyErrorKind {
    /// Not a header name (RFC 9110 token characters).
    #[error("`{name}` is not a valid header name")]
    HeaderName {
        /// The name as given.
        name: String,
    },
    /// An empty string where a name is needed.
    #[error("must not be empty")]
    Empty,
    /// A value source names a path parameter the route does not have.
    #[error("`{pattern}` has no parameter `{{{name}}}`")]
    UnknownParameter {
        /// The route's path pattern.
        pattern: String,
        /// The parameter named.
        name: String,
    },
    /// A path parameter outside a route.
    #[error("path parameters exist only in a route (use `query` or `header`)")]
    ParameterOutsideRoute,
    /// A value source with none or several of `path`, `query`, `header`.
    #[error("set exactly one of `path`, `query`, `header`")]
    SourceCount,
    /// An attributes table larger than a request may carry.
    #[error("more than {max} entries")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// A path pattern that does not start with `/`.
    #[error("`{pattern}` must start with `/`")]
    RelativePath {
        /// The pattern.
        pattern: String,
    },
    /// `**` before the end of a path pattern.
    #[error("`**` must be the last segment of `{pattern}`")]
    RestNotLast {
        /// The pattern.
        pattern: String,
    },
    /// A `{name}` segment whose name is not an identifier.
    #[error("`{{{name}}}` in `{pattern}`: a parameter name is letters, digits and `_`")]
    ParameterName {
        /// The name as given.
        name: String,
        /// The pattern.
        pattern: String,
    },
    /// The same `{name}` twice in a pattern.
    #[error("parameter `{{{name}}}` appears twice in `{pattern}`")]
    DuplicateParameter {
        /// The name.
        name: String,
        /// The pattern.
        pattern: String,
    },
    /// A segment that mixes a parameter or wildcard with text.
    #[error(
        "segment `{segment}` of `{pattern}`: a parameter must be a whole segment (`{{name}}`), and `?`, `#` are not part of a path"
    )]
    PartialSegment {
        /// The segment.
        segment: String,
        /// The pattern.
        pattern: String,
    },
    /// A JWT setting with `source = "headers"`.
    #[error("only used with `source = \"jwt\"`")]
    JwtOnly,
    /// Both `payload_header` and `namespace`/`payload`.
    #[error("set either `payload_header` or `namespace`/`payload`, not both")]
    PayloadConflict,
    /// `payload_header_stripped_by_proxy` without `payload_header`.
    #[error("only used with `payload_header`")]
    PayloadHeaderOnly,
    /// An issuer containing the separator of a qualified subject id.
    #[error("`{issuer}` contains `#` (an issuer URL has no fragment)")]
    IssuerSeparator {
        /// The issuer as given.
        issuer: String,
    },
    /// The same issuer twice.
    #[error("`{issuer}` is listed twice")]
    DuplicateIssuer {
        /// The issuer.
        issuer: String,
    },
    /// `source = "headers"` without the subject header.
    #[error("required with `source = \"headers\"` (the header naming the subject)")]
    SubjectHeader,
    /// `required` names a field whose claim or header is not set.
    #[error("`{field}` is required but `ext_authz.subject.{field}` is not set")]
    RequiredUnset {
        /// The field.
        field: String,
    },
    /// `required` names no known field.
    #[error(
        "unknown field `{field}`; expected one of `session_id`, `tenant`, `roles`, `acr`, `amr`, `auth_time`"
    )]
    UnknownField {
        /// The name as given.
        field: String,
    },
    /// More trusted hops than a chain can sensibly have.
    #[error("`{hops}` is more than {max}")]
    TooManyHops {
        /// The value.
        hops: u32,
        /// The limit.
        max: u32,
    },
    /// Not an HTTP method.
    #[error("`{method}` is not an HTTP method (e.g. `POST`, or `*` for any)")]
    Method {
        /// The method as given.
        method: String,
    },
    /// A string longer than a request field may be.
    #[error("longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A resource id typed other than `string`.
    #[error("an id is a string")]
    IdType,
}

// ---------------------------------------------------------------------------
// Mapping one request.

/// Why a `CheckRequest` was not mapped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError {
    /// Not a request Envoy sends: a gRPC `INVALID_ARGUMENT`.
    #[error(transparent)]
    Malformed(InvalidRequest),
    /// A well-formed request the mapping cannot turn into a decision (no
    /// route, a missing claim, a bad parameter): the configured fallback.
    #[error(transparent)]
    Unmapped(UnmappedError),
}

/// A well-formed request the mapping cannot turn into a decision. The
/// reason is rendered when it is found, since every unmapped request both
/// logs it and returns it to Envoy (the `unmapped` dynamic metadata).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{text}")]
pub struct UnmappedError {
    kind: UnmappedErrorKind,
    text: String,
}

impl UnmappedError {
    /// What went wrong, as a value.
    pub fn kind(&self) -> &UnmappedErrorKind {
        &self.kind
    }

    /// The reason, as logged and sent to Envoy.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl From<UnmappedErrorKind> for UnmappedError {
    fn from(kind: UnmappedErrorKind) -> Self {
        let text = kind.to_string();
        UnmappedError { kind, text }
    }
}

impl From<UnmappedErrorKind> for MapError {
    fn from(kind: UnmappedErrorKind) -> Self {
        MapError::Unmapped(kind.into())
    }
}

/// Why a well-formed request was not mapped. User input in the values is
/// cut to 64 characters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnmappedErrorKind {
    /// No route matches and Envoy named no action.
    #[error(
        "no route matches `{method} {path}` and no `{ACTION_EXTENSION}` context extension is set"
    )]
    NoRoute {
        /// The request's method.
        method: String,
        /// The request's path, without the query.
        path: String,
    },
    /// The matching route names no action, and Envoy named none either.
    #[error("{route} sets no action and no `{ACTION_EXTENSION}` context extension is set")]
    NoAction {
        /// The route's label, e.g. ``routes[0] `* /v1/users/{user}` ``.
        route: String,
    },
    /// A path or query value is not valid percent-encoded UTF-8.
    #[error("{origin} is not valid percent-encoded UTF-8")]
    Escape {
        /// Where the value was read.
        origin: Origin,
    },
    /// A query parameter given twice with different values: the upstream
    /// may read another copy than we do.
    #[error("{origin} is given more than once with different values")]
    Repeated {
        /// The parameter.
        origin: Origin,
    },
    /// A required value is missing.
    #[error("required {origin} is missing")]
    Missing {
        /// Where it was looked for.
        origin: Origin,
    },
    /// A `number` value that is not a finite number.
    #[error("{origin}: `{value}` is not a number")]
    Number {
        /// Where it was read.
        origin: Origin,
        /// The value.
        value: String,
    },
    /// A `bool` value other than `true` or `false`.
    #[error("{origin}: `{value}` is not `true` or `false`")]
    Bool {
        /// Where it was read.
        origin: Origin,
        /// The value.
        value: String,
    },
    /// No subject id.
    #[error("{claim} (the subject) is missing from {}", whence(.claim.source))]
    NoSubject {
        /// The subject's claim or header.
        claim: ClaimName,
    },
    /// A text field's claim is not a string.
    #[error("{claim} is not a string")]
    NotText {
        /// The claim.
        claim: ClaimName,
    },
    /// A list field's claim is not a list of strings.
    #[error("{claim} is not a list of strings")]
    NotList {
        /// The claim.
        claim: ClaimName,
    },
    /// `auth_time` is not a time.
    #[error("{claim} is not a Unix time in seconds{}", time_formats(.claim.source))]
    NotTime {
        /// The claim or header.
        claim: ClaimName,
    },
    /// A field `required` names is missing.
    #[error("required {claim} is missing")]
    MissingClaim {
        /// The claim or header.
        claim: ClaimName,
    },
    /// The configured payload header is absent.
    #[error("no JWT payload: header `{header}` is missing (is the request authenticated?)")]
    NoPayloadHeader {
        /// The header.
        header: String,
    },
    /// The payload header does not hold a payload.
    #[error("header `{header}` is not a base64url-encoded JSON object (a verified JWT payload)")]
    PayloadHeader {
        /// The header.
        header: String,
    },
    /// The payload header came without a bearer token that could vouch for
    /// it.
    #[error(
        "header `{header}` is not believed: the request has no `Authorization: Bearer` JWT to bind it to (a client-made payload header, or a proxy that removes the token: keep it with jwt_authn's `forward: true` or Istio's `forwardOriginalToken: true`)"
    )]
    NoBearerToken {
        /// The payload header.
        header: String,
    },
    /// The payload header is not the payload of the request's bearer token.
    #[error(
        "header `{header}` is not believed: it is not the payload of the request's bearer token (a client-made payload header)"
    )]
    UnboundPayloadHeader {
        /// The payload header.
        header: String,
    },
    /// The payload's issuer is not an accepted one.
    #[error("issuer `{issuer}` (claim `iss`) is not one of `ext_authz.subject.issuers`")]
    UnknownIssuer {
        /// The `iss` claim.
        issuer: String,
    },
    /// `issuers` is set but the payload names no issuer.
    #[error("claim `iss` is missing or not a string, and `ext_authz.subject.issuers` is set")]
    NoIssuer,
    /// No payload under the configured key.
    #[error(
        "no JWT payload `{key}` under `{namespace}` in the metadata context (is jwt_authn's `payload_in_metadata` `{key}`, and `{namespace}` in ext_authz's `metadata_context_namespaces`?)"
    )]
    NoPayload {
        /// The configured key.
        key: String,
        /// The metadata namespace.
        namespace: String,
    },
    /// No payload carries the subject claim.
    #[error(
        "no JWT payload with claim `{claim}` under `{namespace}` in the metadata context (is the request authenticated, and `{namespace}` in ext_authz's `metadata_context_namespaces`?)"
    )]
    NoSubjectPayload {
        /// The subject claim.
        claim: String,
        /// The metadata namespace.
        namespace: String,
    },
    /// The trusted `x-forwarded-for` entry is not an address.
    #[error("`{FORWARDED_FOR}` entry `{entry}` is not an IP address")]
    ForwardedFor {
        /// The entry.
        entry: String,
    },
    /// The mapped request fails validation.
    #[error("the mapped request is invalid: {0}")]
    Invalid(InvalidRequest),
}

impl UnmappedErrorKind {
    /// A payload header no verified token vouches for: a forged identity,
    /// refused whatever the fallback.
    pub fn is_forged_identity(&self) -> bool {
        matches!(
            self,
            UnmappedErrorKind::NoBearerToken { .. }
                | UnmappedErrorKind::UnboundPayloadHeader { .. }
        )
    }
}

fn whence(source: SubjectSource) -> &'static str {
    match source {
        SubjectSource::Jwt => "the JWT payload",
        SubjectSource::Headers => "the request",
    }
}

fn time_formats(source: SubjectSource) -> &'static str {
    match source {
        SubjectSource::Jwt => "",
        SubjectSource::Headers => " or an RFC 3339 timestamp",
    }
}

/// Where a route value is read: a path parameter, query parameter or
/// header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A `{name}` path parameter.
    Path(String),
    /// A query parameter.
    Query(String),
    /// A request header (lowercase).
    Header(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Path(p) => write!(f, "path parameter `{{{p}}}`"),
            Origin::Query(q) => write!(f, "query parameter `{q}`"),
            Origin::Header(h) => write!(f, "header `{h}`"),
        }
    }
}

/// A subject field's claim (source `jwt`) or header (source `headers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimName {
    /// Where subject fields are read.
    pub source: SubjectSource,
    /// The claim or header name.
    pub name: String,
}

impl fmt::Display for ClaimName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            SubjectSource::Jwt => write!(f, "claim `{}`", self.name),
            SubjectSource::Headers => write!(f, "header `{}`", self.name),
        }
    }
}
