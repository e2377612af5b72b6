//! `stepup.v1.DecisionService` over the [`Service`].

use std::sync::Arc;

use chrono::Utc;
use tonic::{Request, Response, Status};

use super::convert;
use crate::proto::v1::decision_service_server::DecisionService;
use crate::proto::v1::{DecideRequest, DecideResponse, RecordStepUpRequest, RecordStepUpResponse};
use crate::request::{InvalidRequest, validate};
use crate::service::Service;

/// The Decide API.
pub struct DecisionApi {
    engine: Arc<Service>,
}

impl DecisionApi {
    /// Serves decisions from `engine`.
    pub fn new(engine: Arc<Service>) -> Self {
        Self { engine }
    }
}

/// Every error a call can return, mapped to a `Status` here and only here.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request is malformed.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// History is turned off, so a step-up report has nowhere to go.
    #[error(
        "history is turned off (`[history] enabled = false`): step-up reports are not recorded"
    )]
    HistoryOff,
}

/// The `Status` for an error: bad input is `INVALID_ARGUMENT` naming the
/// field; nothing of the policy is ever put in a status.
pub fn status(e: CallError) -> Status {
    match e {
        CallError::Invalid(e) => Status::invalid_argument(e.to_string()),
        CallError::HistoryOff => Status::failed_precondition(e.to_string()),
    }
}

#[tonic::async_trait]
impl DecisionService for DecisionApi {
    async fn decide(
        &self,
        request: Request<DecideRequest>,
    ) -> Result<Response<DecideResponse>, Status> {
        let span = crate::telemetry::logging::decision_span(request.metadata(), "Decide");
        let _entered = span.as_ref().map(tracing::Span::enter);
        let req = request.into_inner();
        let now = match validate(&req, Utc::now()) {
            Ok(now) => now,
            Err(e) => {
                self.engine
                    .metrics()
                    .grpc_call("Decide", tonic::Code::InvalidArgument);
                return Err(status(e.into()));
            }
        };
        // With a shared history backend, refresh the subject's history first
        // (bounded by a timeout; a no-op without a backend).
        if self.engine.history().backend().is_some() {
            let policy = self.engine.policy();
            self.engine.history().prefetch(&policy, &req, now).await;
        }
        let decision = self.engine.decide(&req, now, req.explain);
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
        self.engine.metrics().grpc_call("Decide", tonic::Code::Ok);
        self.engine.log("decide", now, req, decision);
        Ok(Response::new(response))
    }

    async fn record_step_up(
        &self,
        request: Request<RecordStepUpRequest>,
    ) -> Result<Response<RecordStepUpResponse>, Status> {
        let req = request.into_inner();
        let history = self.engine.history();
        let fail = |e: CallError| {
            let code = match e {
                CallError::Invalid(_) => tonic::Code::InvalidArgument,
                CallError::HistoryOff => tonic::Code::FailedPrecondition,
            };
            self.engine.metrics().grpc_call("RecordStepUp", code);
            Err(status(e))
        };
        if !history.is_on() {
            return fail(CallError::HistoryOff);
        }
        let policy = self.engine.policy();
        let report = match super::record::step_up_report(&req, Utc::now(), &policy, history.keyer())
        {
            Ok(r) => r,
            Err(e) => return fail(e.into()),
        };
        let success = report.success;
        let (until, failed) = history.report(report);
        tracing::debug!(success, stepups_failed = failed, "step-up recorded");
        self.engine
            .metrics()
            .grpc_call("RecordStepUp", tonic::Code::Ok);
        Ok(Response::new(super::record::step_up_response(
            until, failed,
        )))
    }
}
