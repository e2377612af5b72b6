//! `stepup.v1.DecisionService` over the [`Service`]. Errors are
//! [`CallError`]s; [`Counted`](super::counted::Counted) counts the calls.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::call::CallError;
use super::convert;
use crate::proto::v1::decision_service_server::DecisionService;
use crate::proto::v1::{
    DecideBatchRequest, DecideBatchResponse, DecideRequest, DecideResponse, RecordStepUpRequest,
    RecordStepUpResponse,
};
use crate::request::validate::invalid;
use crate::request::{InvalidRequest, validate_within};
use crate::service::Service;

/// Most requests in one `DecideBatch` call.
pub const MAX_BATCH: usize = 100;

/// The Decide API.
pub struct DecisionApi {
    engine: Arc<Service>,
    max_time_skew: Option<Duration>,
}

impl DecisionApi {
    /// Serves decisions from `engine`, taking a request's `time` only
    /// within `max_time_skew` of the clock (`None`: any time).
    pub fn new(engine: Arc<Service>, max_time_skew: Option<Duration>) -> Self {
        Self {
            engine,
            max_time_skew,
        }
    }
}

#[tonic::async_trait]
impl DecisionService for DecisionApi {
    async fn decide(
        &self,
        request: Request<DecideRequest>,
    ) -> Result<Response<DecideResponse>, Status> {
        let span = crate::telemetry::logging::current_call_span();
        // For the decision log: an `Arc` count, nothing without mutual TLS.
        let caller = super::peer::Peer::of(&request).and_then(|p| p.identity.clone());
        // Entered whenever the call runs, and only then (it awaits).
        match span {
            Some(scope) => {
                self.decide_in(request.into_inner(), Some(scope.clone()), caller)
                    .instrument(scope)
                    .await
            }
            None => self.decide_in(request.into_inner(), None, caller).await,
        }
    }

    async fn decide_batch(
        &self,
        request: Request<DecideBatchRequest>,
    ) -> Result<Response<DecideBatchResponse>, Status> {
        let span = crate::telemetry::logging::current_call_span();
        let caller = super::peer::Peer::of(&request).and_then(|p| p.identity.clone());
        // The call's span covers the whole batch (its decisions are many, so
        // none of them sets the span's `stepup.*` attributes).
        match span {
            Some(scope) => {
                self.decide_batch_in(request.into_inner(), caller)
                    .instrument(scope)
                    .await
            }
            None => self.decide_batch_in(request.into_inner(), caller).await,
        }
    }

    async fn record_step_up(
        &self,
        request: Request<RecordStepUpRequest>,
    ) -> Result<Response<RecordStepUpResponse>, Status> {
        let peer = super::peer::Peer::of(&request).cloned();
        let req = request.into_inner();
        let history = self.engine.history();
        if !history.is_on() {
            return Err(CallError::HistoryOff.into());
        }
        let policy = self.engine.policy();
        let (report, authority) = super::record::trusted_report(
            req,
            peer.as_ref(),
            self.engine.trust(),
            &policy,
            history.keyer(),
            Utc::now(),
            self.max_time_skew,
        )
        .await?;
        let success = report.success;
        let (until, failed) = history.report(report);
        match &authority {
            super::record::Authority::Evidence(token) => tracing::info!(
                success,
                stepups_failed = failed,
                issuer = %token.issuer,
                "step-up recorded from verified evidence"
            ),
            super::record::Authority::Reporter(id) => tracing::info!(
                success,
                stepups_failed = failed,
                reporter = %id,
                "step-up recorded from a listed reporter"
            ),
        }
        Ok(Response::new(super::record::step_up_response(
            until, failed,
        )))
    }
}

impl DecisionApi {
    /// [`DecisionService::decide`] within its span.
    async fn decide_in(
        &self,
        req: DecideRequest,
        span: Option<tracing::Span>,
        caller: Option<Arc<str>>,
    ) -> Result<Response<DecideResponse>, Status> {
        let now = validate_within(&req, Utc::now(), self.max_time_skew).map_err(CallError::from)?;
        let explain = req.explain;
        let (req, decision) = self
            .engine
            .decide_served(req, now, explain)
            .await
            .ok_or(CallError::ShuttingDown)?;
        crate::telemetry::logging::record(span.as_ref(), &req.action, &decision);
        if !decision.shadow.is_empty() {
            let rules: Vec<&str> = decision
                .shadow
                .iter()
                .filter_map(|s| decision.policy.rules.get(s.rule).map(|r| &*r.id))
                .collect();
            tracing::info!(
                action = %req.action,
                decision_id = %decision.id,
                outcome = ?decision.outcome,
                shadow_rules = ?rules,
                "shadow rules matched"
            );
        }
        tracing::debug!(
            action = %req.action,
            outcome = ?decision.outcome,
            decision_id = %decision.id,
            cache_hit = decision.cache_hit,
            risk = decision.assessment.risk_score,
            "decided"
        );
        let response = convert::response(&decision);
        self.engine.log_from("decide", now, req, decision, caller);
        Ok(Response::new(response))
    }

    /// [`DecisionService::decide_batch`]: validates every request (a bad one
    /// fails the whole batch, named by its index), reads the clock once,
    /// decides all against one history snapshot, then logs each decision.
    async fn decide_batch_in(
        &self,
        batch: DecideBatchRequest,
        caller: Option<Arc<str>>,
    ) -> Result<Response<DecideBatchResponse>, Status> {
        let combine = batch.combine_challenges;
        let items = self.validate_batch(batch.requests, Utc::now())?;
        let (items, decisions) = self
            .engine
            .decide_batch_served(items)
            .await
            .ok_or(CallError::ShuttingDown)?;
        let combined = if combine {
            convert::combined_challenge(&decisions)
        } else {
            None
        };
        let responses = decisions.iter().map(convert::response).collect();
        for ((req, now), decision) in items.into_iter().zip(decisions) {
            tracing::debug!(
                action = %req.action,
                outcome = ?decision.outcome,
                decision_id = %decision.id,
                "decided in a batch"
            );
            self.engine
                .log_from("batch", now, req, decision, caller.clone());
        }
        Ok(Response::new(DecideBatchResponse {
            responses,
            combined,
        }))
    }

    /// The batch's requests with their "now": `clock`, read once for the
    /// batch, or a request's own `time` within the skew limit.
    fn validate_batch(
        &self,
        requests: Vec<DecideRequest>,
        clock: chrono::DateTime<Utc>,
    ) -> Result<Vec<(DecideRequest, chrono::DateTime<Utc>)>, CallError> {
        if requests.is_empty() {
            return Err(invalid("requests", "required (1 to 100 requests)").into());
        }
        if requests.len() > MAX_BATCH {
            return Err(invalid(
                "requests",
                format!(
                    "{} requests, over the limit of {MAX_BATCH} per batch",
                    requests.len()
                ),
            )
            .into());
        }
        requests
            .into_iter()
            .enumerate()
            .map(
                |(i, req)| match validate_within(&req, clock, self.max_time_skew) {
                    Ok(now) => Ok((req, now)),
                    Err(e) => Err(CallError::from(InvalidRequest {
                        field: format!("requests[{i}].{}", e.field),
                        problem: e.problem,
                    })),
                },
            )
            .collect()
    }
}
