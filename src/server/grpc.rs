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
use crate::proto::v1::{DecideRequest, DecideResponse, RecordStepUpRequest, RecordStepUpResponse};
use crate::request::validate_within;
use crate::service::Service;

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
        let span = crate::telemetry::logging::decision_span(request.metadata(), "Decide");
        // Entered whenever the call runs, and only then (it awaits).
        match span {
            Some(scope) => {
                self.decide_in(request.into_inner(), Some(scope.clone()))
                    .instrument(scope)
                    .await
            }
            None => self.decide_in(request.into_inner(), None).await,
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
    ) -> Result<Response<DecideResponse>, Status> {
        let now = validate_within(&req, Utc::now(), self.max_time_skew).map_err(CallError::from)?;
        // With a shared history backend, refresh the subject's history first
        // (bounded by a timeout; a no-op without a backend).
        if self.engine.history().backend().is_some() {
            let policy = self.engine.policy();
            self.engine.history().prefetch(&policy, &req, now).await;
        }
        let (req, decision) = if self.engine.is_costly(Some(&req.action)) {
            // Boxed: the cheap path's future stays small (it is moved and
            // copied on every call).
            Box::pin(self.engine.run_isolated(move |engine| {
                let decision = engine.decide(&req, now, req.explain);
                (req, decision)
            }))
            .await
            .ok_or(CallError::ShuttingDown)?
        } else {
            let decision = self.engine.decide(&req, now, req.explain);
            (req, decision)
        };
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
        self.engine.log("decide", now, req, decision);
        Ok(Response::new(response))
    }
}
