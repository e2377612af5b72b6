//! Applying a [`Mapping`] to one `CheckRequest`: find the route, read the
//! action, subject, session, device, network, resource and attributes, and
//! validate the result as any `DecideRequest` is.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::google::protobuf as epb;
use pbjson_types::value::Kind;
use pbjson_types::{Timestamp, Value};

use super::claims::{Claim, Reader, as_struct, claim, from_json};
use super::decode::base64url;
use super::error::{MapError, UnmappedErrorKind};
use super::inputs::{Headers, Inputs, split_target, truncate};
use super::schema::SubjectSource;
use super::{
    ACTION_EXTENSION, AUTHORIZATION, FORWARDED_FOR, Field, ISSUER_CLAIM, ISSUER_SEPARATOR, Mapping,
    Route, Segment,
};
use crate::proto::v1 as pb;
use crate::request::validate::{self as convert, InvalidRequest};

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

fn malformed(field: &str, problem: &str) -> MapError {
    MapError::Malformed(InvalidRequest {
        field: field.to_owned(),
        problem: problem.to_owned(),
    })
}

impl Mapping {
    /// Maps a `CheckRequest` to a validated `DecideRequest` and the
    /// decision's clock (Envoy's `attributes.request.time`, else `clock`).
    pub fn map(&self, check: &CheckRequest, clock: DateTime<Utc>) -> Result<Mapped, MapError> {
        let (attrs, http, time) = http_request(check, clock)?;
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
        let action = action(attrs, route, &http.method, path)?;

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
            Some(r) => resource(r, &inputs)?,
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
        let now = convert::validate(&decide, clock).map_err(UnmappedErrorKind::Invalid)?;
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
                    UnmappedErrorKind::NotText {
                        claim: s.claim_name(name.unwrap_or("")),
                    }
                    .into()
                }),
            }
        };
        let list = |name: Option<&str>| -> Result<Vec<String>, MapError> {
            match name.and_then(&reader) {
                None => Ok(Vec::new()),
                Some(c) => c.list().ok_or_else(|| {
                    UnmappedErrorKind::NotList {
                        claim: s.claim_name(name.unwrap_or("")),
                    }
                    .into()
                }),
            }
        };
        let id = text(Some(&s.id))?;
        if id.is_empty() {
            return Err(UnmappedErrorKind::NoSubject {
                claim: s.claim_name(&s.id),
            }
            .into());
        }
        let id = qualified(&s.issuers, id, reader(ISSUER_CLAIM).and_then(|c| c.text()))?;
        let auth_time = match s.auth_time.as_deref().and_then(&reader) {
            None => None,
            Some(c) => Some(c.time().ok_or_else(|| UnmappedErrorKind::NotTime {
                claim: s.claim_name(s.auth_time.as_deref().unwrap_or("")),
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
                return Err(UnmappedErrorKind::MissingClaim {
                    claim: s.claim_name(s.name_of(*field).unwrap_or("")),
                }
                .into());
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
                return Err(UnmappedErrorKind::NoPayloadHeader { header: h.clone() }.into());
            };
            if !s.payload_header_stripped {
                bound_to_bearer(h, &encoded, headers)?;
            }
            let payload = base64url(encoded.trim())
                .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
                .and_then(|v| as_struct(&from_json(v, 0)).cloned())
                .ok_or_else(|| UnmappedErrorKind::PayloadHeader { header: h.clone() })?;
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
            match &s.payload {
                Some(key) => UnmappedErrorKind::NoPayload {
                    key: key.clone(),
                    namespace: s.namespace.clone(),
                },
                None => UnmappedErrorKind::NoSubjectPayload {
                    claim: s.id.clone(),
                    namespace: s.namespace.clone(),
                },
            }
            .into()
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
            .map_or(0, i64::from);
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
                    UnmappedErrorKind::ForwardedFor {
                        entry: truncate(entry).to_owned(),
                    }
                    .into()
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

/// A payload header is believed only as the payload of the request's
/// bearer token: the proxy verified that token (or refused the request), so
/// a header equal to its payload segment is the verified payload, and a
/// client-made one (no token, or another token's) is refused. Padding may
/// differ: jwt_authn can pad what it forwards (`pad_forward_payload_header`).
fn bound_to_bearer(header: &str, encoded: &str, headers: &Headers<'_>) -> Result<(), MapError> {
    let token = headers.get(AUTHORIZATION).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    });
    let payload = token.as_deref().and_then(|t| {
        let mut parts = t.split('.');
        let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
        let jws = parts.next().is_none()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.=".contains(&b));
        jws.then_some(payload)
    });
    let Some(payload) = payload else {
        return Err(UnmappedErrorKind::NoBearerToken {
            header: header.to_owned(),
        }
        .into());
    };
    let unpadded = |s: &str| s.trim().trim_end_matches('=').to_owned();
    if payload.is_empty() || unpadded(encoded) != unpadded(payload) {
        return Err(UnmappedErrorKind::UnboundPayloadHeader {
            header: header.to_owned(),
        }
        .into());
    }
    Ok(())
}

/// The subject id: as the claim says, or `<iss>#<sub>` when several
/// issuers are accepted (so their users never share a history). With any
/// issuers listed, a payload of another issuer is unmapped.
fn qualified(issuers: &[String], id: String, iss: Option<String>) -> Result<String, MapError> {
    if issuers.is_empty() {
        return Ok(id);
    }
    let Some(iss) = iss else {
        return Err(UnmappedErrorKind::NoIssuer.into());
    };
    if !issuers.contains(&iss) {
        return Err(UnmappedErrorKind::UnknownIssuer {
            issuer: truncate(&iss).to_owned(),
        }
        .into());
    }
    Ok(if issuers.len() > 1 {
        format!("{iss}{ISSUER_SEPARATOR}{id}")
    } else {
        id
    })
}

/// The canonical text of an address; IPv4 without the formatting machinery,
/// since every mapped request formats one.
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

/// The request's context and HTTP attributes, and Envoy's clock if it sent
/// one: what every mapping needs, or a malformed request.
fn http_request(
    check: &CheckRequest,
    clock: DateTime<Utc>,
) -> Result<(&AttributeContext, &HttpRequest, Option<Timestamp>), MapError> {
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
        Some(t) => Some(request_time(t, clock)?),
        None => None,
    };
    Ok((attrs, http, time))
}

/// Envoy's `attributes.request.time`, checked as the request's `time` is.
fn request_time(t: &epb::Timestamp, clock: DateTime<Utc>) -> Result<Timestamp, MapError> {
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
    Ok(ts)
}

/// The route's action, else the `stepup_action` context extension.
fn action(
    attrs: &AttributeContext,
    route: Option<&Route>,
    method: &str,
    path: &str,
) -> Result<String, MapError> {
    if let Some(a) = route.and_then(|r| r.action.as_deref()) {
        return Ok(a.to_owned());
    }
    match attrs.context_extensions.get(ACTION_EXTENSION) {
        Some(a) if !a.is_empty() => Ok(a.clone()),
        _ => Err(match route {
            Some(r) => UnmappedErrorKind::NoAction {
                route: r.label.clone(),
            },
            None => UnmappedErrorKind::NoRoute {
                method: truncate(method).to_owned(),
                path: truncate(path).to_owned(),
            },
        }
        .into()),
    }
}

/// The matched route's resource; `None` when it names nothing.
fn resource(r: &Route, inputs: &Inputs<'_, '_>) -> Result<Option<pb::Resource>, MapError> {
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
    Ok(
        (!r.resource_type.is_empty() || !id.is_empty() || !attributes.is_empty()).then(|| {
            pb::Resource {
                r#type: r.resource_type.clone(),
                id,
                attributes,
            }
        }),
    )
}
