//! Hooks for the service's own telemetry: every call to the sidecar (its
//! method, outcome, latency, attempts) and every answer the fail mode gave
//! in the sidecar's place.

use std::time::Duration;

use crate::error::CallError;
use crate::proto::Outcome;

/// The sidecar method a call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `stepup.v1.DecisionService/Decide`.
    Decide,
    /// `stepup.v1.DecisionService/DecideBatch`.
    DecideBatch,
    /// `stepup.v1.DecisionService/RecordStepUp`.
    RecordStepUp,
}

impl Method {
    /// The method's name, e.g. `Decide`, for a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decide => "Decide",
            Self::DecideBatch => "DecideBatch",
            Self::RecordStepUp => "RecordStepUp",
        }
    }
}

/// How a call ended.
#[derive(Debug)]
pub enum CallResult<'a> {
    /// `Decide` answered with this outcome.
    Decided(Outcome),
    /// `DecideBatch` or `RecordStepUp` succeeded.
    Ok,
    /// The call failed (after its retries, if any).
    Failed(&'a CallError),
}

/// One completed call to the sidecar.
#[derive(Debug)]
pub struct CallEvent<'a> {
    /// The method.
    pub method: Method,
    /// How it ended.
    pub result: CallResult<'a>,
    /// From the first attempt to the end, retries and their pauses included.
    pub latency: Duration,
    /// Attempts made (1 when the first one answered).
    pub attempts: u32,
}

/// Receives telemetry events. Both methods do nothing by default; they run
/// on the calling task, so they should be quick (count, record, return).
pub trait Observer: Send + Sync + 'static {
    /// A call to the sidecar completed or failed.
    fn on_call(&self, event: &CallEvent<'_>) {
        let _ = event;
    }

    /// The configured [`FailMode`](crate::FailMode) answered `outcome`
    /// because the sidecar could not (`error`).
    fn on_fail_mode(&self, error: &CallError, outcome: Outcome) {
        let _ = (error, outcome);
    }
}

/// The observer that ignores everything (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {}
