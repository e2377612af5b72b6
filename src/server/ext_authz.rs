//! `envoy.service.auth.v3.Authorization/Check`: Envoy's ext_authz filter
//! (or Istio's `CUSTOM` action) asks, the [`Mapping`] turns the request into
//! a `DecideRequest`, the same [`Service`] decides, and the answer is one
//! Envoy enforces as is: ALLOW passes with decision headers, CHALLENGE is a
//! 401 with the RFC 9470 `WWW-Authenticate` challenge, DENY a 403.
//!
//! Errors inside the sidecar are gRPC errors, so Envoy's
//! `failure_mode_allow` and `status_on_error` decide what the client sees.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use envoy_types::pb::google::protobuf as epb;
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::call::CallError;
use crate::engine::{Decision, Outcome};
use crate::mapping::{Fallback, Headers, MapError, Mapped, Mapping};
use crate::request::{InvalidRequest, within_skew};
use crate::service::Service;

/// Upstream header with the decision id (set on ALLOW).
pub const DECISION_ID_HEADER: &str = "x-stepup-decision-id";
/// Upstream header with the risk score, 0..=100 (set on ALLOW).
pub const RISK_SCORE_HEADER: &str = "x-stepup-risk-score";
/// Headers under this prefix are ours: client-supplied ones are removed.
pub const HEADER_PREFIX: &str = "x-stepup-";

/// google.rpc.Code values.
const RPC_OK: i32 = 0;
const RPC_PERMISSION_DENIED: i32 = 7;
const RPC_UNAUTHENTICATED: i32 = 16;

/// The Authorization API over an engine and a mapping.
pub struct AuthorizationApi {
    engine: Arc<Service>,
    mapping: Arc<Mapping>,
    max_time_skew: Option<Duration>,
}

impl AuthorizationApi {
    /// Answers `Check` with decisions from `engine`, mapping requests with
    /// `mapping`; Envoy's request time is taken only within `max_time_skew`
    /// of the clock (`None`: any time).
    pub fn new(
        engine: Arc<Service>,
        mapping: Arc<Mapping>,
        max_time_skew: Option<Duration>,
    ) -> Self {
        for warning in mapping.warnings() {
            tracing::warn!("{warning}");
        }
        Self {
            engine,
            mapping,
            max_time_skew,
        }
    }
}

#[tonic::async_trait]
impl Authorization for AuthorizationApi {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // The call's span, a child of the trace Envoy's ext_authz client
        // propagates (made around the service, in `Counted`).
        let span = crate::telemetry::logging::current_call_span();
        let scope = span.clone().unwrap_or_else(tracing::Span::none);
        let caller = super::peer::Peer::of(&request).and_then(|p| p.identity.clone());
        let req = request.into_inner();
        let clock = Clock {
            now: Utc::now(),
            max_skew: self.max_time_skew,
        };
        let mapped = self.mapping.map(&req, clock.now);
        // With a shared history backend, refresh the subject's history first,
        // as `Decide` does, so that what another replica recorded (a revoked
        // session) is seen.
        if let Ok(m) = &mapped
            && self.engine.history().backend().is_some()
        {
            let policy = self.engine.policy();
            self.engine
                .history()
                .prefetch(&policy, &m.request, m.now)
                .instrument(scope.clone())
                .await;
        }
        // With any costly decision in the set, every check runs off the
        // runtime's threads.
        let checked = if self.engine.is_costly(None) {
            let mapping = Arc::clone(&self.mapping);
            Box::pin(self.engine.run_isolated(move |engine| {
                check_in(engine, &mapping, &req, mapped, clock, span.as_ref(), caller)
            }))
            .instrument(scope)
            .await
            .ok_or(CallError::ShuttingDown)?
        } else {
            let _entered = scope.enter();
            check_in(
                &self.engine,
                &self.mapping,
                &req,
                mapped,
                clock,
                span.as_ref(),
                caller,
            )
        };
        checked
            .map(Response::new)
            .map_err(|e| CallError::from(e).into())
    }
}

/// Maps, decides and answers one `Check`. A malformed request is an error
/// (a gRPC `INVALID_ARGUMENT`); one that cannot be mapped gets the
/// mapping's fallback, and the reason is logged.
pub fn check(
    engine: &Service,
    mapping: &Mapping,
    req: &CheckRequest,
    clock: DateTime<Utc>,
) -> Result<CheckResponse, InvalidRequest> {
    let clock = Clock {
        now: clock,
        max_skew: None,
    };
    check_in(
        engine,
        mapping,
        req,
        mapping.map(req, clock.now),
        clock,
        None,
        None,
    )
}

/// The server clock, and how far Envoy's request time may lie from it.
#[derive(Clone, Copy)]
struct Clock {
    now: DateTime<Utc>,
    max_skew: Option<Duration>,
}

/// [`check`] of `req`, already `mapped` by `mapping`, recording the
/// decision on `span`. Decisions go to the decision log (source `check`,
/// with the `caller`'s verified identity) like `Decide`'s.
fn check_in(
    engine: &Service,
    mapping: &Mapping,
    req: &CheckRequest,
    mapped: Result<Mapped, MapError>,
    clock: Clock,
    span: Option<&tracing::Span>,
    caller: Option<Arc<str>>,
) -> Result<CheckResponse, InvalidRequest> {
    let spoofed = spoofed_headers(req);
    match mapped {
        Ok(mapped) => {
            within_skew(
                "attributes.request.time",
                mapped.now,
                clock.now,
                clock.max_skew,
            )?;
            let decision = engine.decide(&mapped.request, mapped.now, false);
            crate::telemetry::logging::record(span, &mapped.request.action, &decision);
            tracing::debug!(
                action = %mapped.request.action,
                route = mapped.route.as_deref().unwrap_or("-"),
                outcome = ?decision.outcome,
                decision_id = %decision.id,
                cache_hit = decision.cache_hit,
                risk = decision.assessment.risk_score,
                "checked"
            );
            let response = answer(&decision, &mapped.request.action, spoofed);
            engine.log_from("check", mapped.now, mapped.request, decision, caller);
            Ok(response)
        }
        Err(MapError::Malformed(e)) => Err(e),
        Err(MapError::Unmapped(reason)) => {
            let id = uuid::Uuid::now_v7();
            let fallback = mapping.fallback_for(&reason);
            let method = req
                .attributes
                .as_ref()
                .and_then(|a| a.request.as_ref())
                .and_then(|r| r.http.as_ref())
                .map_or("", |h| h.method.as_str());
            // No request values here (path, parameters, headers): they
            // reach logs only through the decision log, where masks apply.
            // Envoy gets the full reason (the `unmapped` metadata).
            tracing::info!(
                reason = %unmapped_reason(reason.as_str()),
                decision_id = %id,
                method,
                fallback = ?fallback,
                "ext_authz request not mapped: answering with the fallback"
            );
            Ok(unmapped(
                fallback,
                &id.to_string(),
                reason.as_str(),
                spoofed,
            ))
        }
    }
}

/// Why a request was not mapped, without the request's values (its path,
/// a parameter's, header's or claim's value): what the text log may say.
/// The reasons that quote a value are known by their wording (the mapping's
/// `UnmappedErrorKind`); the others name only settings.
fn unmapped_reason(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with("no route matches `") {
        return "no route matches the request's method and path (not logged), and no action context extension is set".into();
    }
    for tail in ["` is not a number", "` is not `true` or `false`"] {
        if let Some(head) = text.strip_suffix(tail)
            && let Some((origin, _value)) = head.split_once(": `")
        {
            return format!(
                "{origin}{} (value not logged)",
                tail.trim_start_matches('`')
            )
            .into();
        }
    }
    if text.starts_with("`x-forwarded-for` entry `") {
        return "an `x-forwarded-for` entry is not an IP address (not logged)".into();
    }
    if text.starts_with("the mapped request is invalid") {
        return "the mapped request is invalid (details not logged)".into();
    }
    text.into()
}

/// The names of client-supplied `x-stepup-*` headers, to remove upstream
/// (but for the ones an answer sets: those are overwritten instead).
fn spoofed_headers(req: &CheckRequest) -> Vec<String> {
    let Some(http) = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        return Vec::new();
    };
    let headers = Headers {
        map: &http.headers,
        raw: http.header_map.as_ref(),
    };
    let mut names: Vec<String> = headers
        .names()
        .filter(|n| n.starts_with(HEADER_PREFIX))
        .map(|n| n.into_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn header(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

fn rpc_status(code: i32) -> Option<rpc::Status> {
    Some(rpc::Status {
        code,
        message: String::new(),
        details: Vec::new(),
    })
}

fn string(s: impl Into<String>) -> epb::Value {
    epb::Value {
        kind: Some(epb::value::Kind::StringValue(s.into())),
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Allow => "allow",
        Outcome::Challenge => "challenge",
        Outcome::Deny => "deny",
    }
}

/// The `dynamic_metadata` Envoy puts under `envoy.filters.http.ext_authz`,
/// for access logs and later filters.
fn metadata(fields: Vec<(&str, epb::Value)>) -> Option<epb::Struct> {
    Some(epb::Struct {
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    })
}

/// The 401 body, for clients that read bodies rather than headers.
#[derive(serde::Serialize)]
struct ChallengeBody<'a> {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr_values: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_age: Option<u64>,
    decision_id: &'a str,
}

/// The 403 body: the decision id and nothing of the policy.
#[derive(serde::Serialize)]
struct DenyBody<'a> {
    decision_id: &'a str,
}

fn json<T: serde::Serialize>(body: &T) -> String {
    let mut out = Vec::with_capacity(160);
    // Writing these plain structs cannot fail, and the writer only ever
    // writes UTF-8.
    match crate::json::write(&mut out, body) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn allowed(id: &str, risk: Option<u32>, spoofed: Vec<String>) -> HttpResponse {
    let mut headers = vec![header(DECISION_ID_HEADER, id.to_owned())];
    if let Some(risk) = risk {
        headers.push(header(
            RISK_SCORE_HEADER,
            itoa::Buffer::new().format(risk).to_owned(),
        ));
    }
    // Envoy applies the removals after the headers set here: a client's
    // copy of a header this answer sets is overwritten, every other one
    // (a risk score on an unmapped request included) removed.
    let headers_to_remove = spoofed
        .into_iter()
        .filter(|n| {
            !headers
                .iter()
                .any(|h| h.header.as_ref().is_some_and(|h| h.key == *n))
        })
        .collect();
    HttpResponse::OkResponse(OkHttpResponse {
        headers,
        headers_to_remove,
        ..Default::default()
    })
}

fn denied(code: StatusCode, extra: Option<HeaderValueOption>, body: String) -> HttpResponse {
    let mut headers: Vec<HeaderValueOption> = extra.into_iter().collect();
    headers.push(header("content-type", "application/json".to_owned()));
    headers.push(header("cache-control", "no-store".to_owned()));
    HttpResponse::DeniedResponse(DeniedHttpResponse {
        status: Some(HttpStatus { code: code as i32 }),
        headers,
        body,
    })
}

/// The answer Envoy enforces for a decision.
pub fn answer(d: &Decision, action: &str, spoofed: Vec<String>) -> CheckResponse {
    let id = d.id_string();
    let rules = epb::Value {
        kind: Some(epb::value::Kind::ListValue(epb::ListValue {
            values: d.reasons().map(|(id, _, _)| string(&**id)).collect(),
        })),
    };
    let dynamic_metadata = metadata(vec![
        ("outcome", string(outcome_name(d.outcome))),
        ("decision_id", string(id.as_str())),
        ("rule_ids", rules),
        ("action", string(action)),
        (
            "risk_score",
            epb::Value {
                kind: Some(epb::value::Kind::NumberValue(f64::from(
                    d.assessment.risk_score,
                ))),
            },
        ),
    ]);
    let (code, http) = match d.outcome {
        Outcome::Allow => (RPC_OK, allowed(&id, Some(d.assessment.risk_score), spoofed)),
        Outcome::Challenge => {
            let acr = d.acr_values();
            let body = ChallengeBody {
                error: "insufficient_user_authentication",
                acr_values: (!acr.is_empty()).then(|| acr.join(" ")),
                max_age: d.max_age.map(|m| m.as_secs()),
                decision_id: &id,
            };
            let challenge = d.www_authenticate().map(|v| header("www-authenticate", v));
            (
                RPC_UNAUTHENTICATED,
                denied(StatusCode::Unauthorized, challenge, json(&body)),
            )
        }
        Outcome::Deny => (
            RPC_PERMISSION_DENIED,
            denied(
                StatusCode::Forbidden,
                None,
                json(&DenyBody { decision_id: &id }),
            ),
        ),
    };
    CheckResponse {
        status: rpc_status(code),
        dynamic_metadata,
        http_response: Some(http),
    }
}

/// The answer for a request that could not be mapped.
fn unmapped(fallback: Fallback, id: &str, reason: &str, spoofed: Vec<String>) -> CheckResponse {
    let (outcome, code, http) = match fallback {
        Fallback::Allow => ("allow", RPC_OK, allowed(id, None, spoofed)),
        Fallback::Deny => (
            "deny",
            RPC_PERMISSION_DENIED,
            denied(
                StatusCode::Forbidden,
                None,
                json(&DenyBody { decision_id: id }),
            ),
        ),
    };
    CheckResponse {
        status: rpc_status(code),
        dynamic_metadata: metadata(vec![
            ("outcome", string(outcome)),
            ("decision_id", string(id)),
            (
                "rule_ids",
                epb::Value {
                    kind: Some(epb::value::Kind::ListValue(epb::ListValue::default())),
                },
            ),
            ("unmapped", string(reason)),
        ]),
        http_response: Some(http),
    }
}
