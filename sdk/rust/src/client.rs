//! The typed async client: deadlines, safe retries and the fail mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::error::{BuildError, CallError};
use crate::observe::{CallEvent, CallResult, Method, NoopObserver, Observer};
use crate::proto::decision_service_client::DecisionServiceClient;
use crate::proto::{
    DecideBatchRequest, DecideBatchResponse, DecideRequest, DecideResponse, Outcome,
    RecordStepUpRequest, RecordStepUpResponse,
};
use crate::transport::{self, TlsConfig};

/// The default deadline of a call: the sidecar runs next to the service and
/// answers in well under a millisecond; past this it is treated as down.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(500);

/// What to answer when the sidecar is unreachable or too slow (see
/// [`CallError::is_unavailable`]).
#[derive(Clone, Debug, Default)]
pub enum FailMode {
    /// Fail closed: the call returns the error (the layer answers 503). The
    /// default: an unreachable policy point never lets a request through.
    #[default]
    Closed,
    /// Answer with this decision instead, e.g. [`FailMode::challenge`] to
    /// ask for a step-up, or an explicit ALLOW for routes whose owners
    /// accept that risk. Its `decision_id` is empty: no decision was made.
    Answer(Box<DecideResponse>),
}

impl FailMode {
    /// Answer with `outcome` and nothing else (no requirements, no
    /// `www_authenticate`).
    pub fn outcome(outcome: Outcome) -> Self {
        Self::Answer(Box::new(DecideResponse {
            outcome: outcome.into(),
            ..DecideResponse::default()
        }))
    }

    /// Answer CHALLENGE with this RFC 9470 `WWW-Authenticate` value and
    /// `acr_values`.
    pub fn challenge(www_authenticate: impl Into<String>, acr_values: Vec<String>) -> Self {
        Self::Answer(Box::new(DecideResponse {
            outcome: Outcome::Challenge.into(),
            www_authenticate: www_authenticate.into(),
            acr_values,
            ..DecideResponse::default()
        }))
    }
}

/// Where a [`Decision`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionSource {
    /// The sidecar decided.
    Sidecar,
    /// The sidecar could not; the [`FailMode`] answered.
    FailMode,
}

/// A decision and where it came from; the layer puts it in the request
/// extensions (next to the [`DecideResponse`] itself).
#[derive(Clone, Debug)]
pub struct Decision {
    /// The answer.
    pub response: DecideResponse,
    /// Who gave it.
    pub source: DecisionSource,
}

impl Decision {
    /// The outcome (`Unspecified` for a value this client does not know).
    pub fn outcome(&self) -> Outcome {
        Outcome::try_from(self.response.outcome).unwrap_or(Outcome::Unspecified)
    }
}

/// Builds a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    target: String,
    tls: Option<TlsConfig>,
    deadline: Duration,
    connect_timeout: Option<Duration>,
    retries: u32,
    fail_mode: FailMode,
    observer: Arc<dyn Observer>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("target", &self.target)
            .field("deadline", &self.deadline)
            .field("retries", &self.retries)
            .field("fail_mode", &self.fail_mode)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The sidecar's TLS settings; needed for (and only for) `https://`.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The deadline of each call, retries included: sent as `grpc-timeout`
    /// and enforced by the client too. Default [`DEFAULT_DEADLINE`].
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How long a connection attempt may take. Default: the deadline.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Retries of a `Decide` or `DecideBatch` whose request was never sent
    /// (no connection could be made, or the sidecar answered UNAVAILABLE
    /// `SHUTTING_DOWN`: it stopped before the call ran), within the
    /// deadline. Default 2. `RecordStepUp` is never retried.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// What to answer when the sidecar is unreachable or too slow. Default
    /// [`FailMode::Closed`].
    pub fn fail_mode(mut self, fail_mode: FailMode) -> Self {
        self.fail_mode = fail_mode;
        self
    }

    /// Where telemetry events go. Default: nowhere.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Arc::new(observer);
        self
    }

    /// The client. It connects on the first call (and reconnects after a
    /// failure), so building it does not need the sidecar up; it must be
    /// built inside a Tokio runtime.
    pub fn build(self) -> Result<Client, BuildError> {
        let channel = transport::channel(
            &self.target,
            self.tls.as_ref(),
            self.connect_timeout.unwrap_or(self.deadline),
        )?;
        Ok(Client {
            rpc: DecisionServiceClient::new(channel),
            settings: Arc::new(self),
        })
    }
}

/// A client of the stepup sidecar. Cheap to clone (one shared connection).
#[derive(Clone, Debug)]
pub struct Client {
    rpc: DecisionServiceClient<Channel>,
    settings: Arc<ClientBuilder>,
}

impl Client {
    /// A builder for the sidecar at `target`: `http://HOST:PORT`,
    /// `https://HOST:PORT` (with [`ClientBuilder::tls`]) or `unix:PATH`.
    pub fn builder(target: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            target: target.into(),
            tls: None,
            deadline: DEFAULT_DEADLINE,
            connect_timeout: None,
            retries: 2,
            fail_mode: FailMode::Closed,
            observer: Arc::new(NoopObserver),
        }
    }

    /// The sidecar address this client calls.
    pub fn target(&self) -> &str {
        &self.settings.target
    }

    /// Asks the sidecar for a decision. Errors are returned as they are;
    /// see [`Client::decide_with_fail_mode`] for the configured fail mode.
    pub async fn decide(&self, request: DecideRequest) -> Result<DecideResponse, CallError> {
        let started = Instant::now();
        let (result, attempts) = self
            .retrying(request, |mut rpc, req| async move { rpc.decide(req).await })
            .await;
        let outcome = result.as_ref().map(|r| {
            CallResult::Decided(Outcome::try_from(r.outcome).unwrap_or(Outcome::Unspecified))
        });
        self.report(Method::Decide, started, attempts, outcome);
        result
    }

    /// [`Client::decide`], with the [`FailMode`] answering when the sidecar
    /// is unreachable or too slow. Other errors (e.g. INVALID_ARGUMENT for a
    /// malformed request) are returned.
    pub async fn decide_with_fail_mode(
        &self,
        request: DecideRequest,
    ) -> Result<Decision, CallError> {
        match self.decide(request).await {
            Ok(response) => Ok(Decision {
                response,
                source: DecisionSource::Sidecar,
            }),
            Err(err) if err.is_unavailable() => match &self.settings.fail_mode {
                FailMode::Closed => Err(err),
                FailMode::Answer(answer) => {
                    let decision = Decision {
                        response: (**answer).clone(),
                        source: DecisionSource::FailMode,
                    };
                    self.settings
                        .observer
                        .on_fail_mode(&err, decision.outcome());
                    Ok(decision)
                }
            },
            Err(err) => Err(err),
        }
    }

    /// Decides up to 100 requests in one call (retried like `Decide`).
    pub async fn decide_batch(
        &self,
        request: DecideBatchRequest,
    ) -> Result<DecideBatchResponse, CallError> {
        let started = Instant::now();
        let (result, attempts) = self
            .retrying(request, |mut rpc, req| async move {
                rpc.decide_batch(req).await
            })
            .await;
        self.report(
            Method::DecideBatch,
            started,
            attempts,
            result.as_ref().map(|_| CallResult::Ok),
        );
        result
    }

    /// Reports the outcome of a step-up (with the step-up's signed token in
    /// `evidence`, or as a listed reporter). Never retried: a report is not
    /// idempotent when it records a failure.
    pub async fn record_step_up(
        &self,
        request: RecordStepUpRequest,
    ) -> Result<RecordStepUpResponse, CallError> {
        let started = Instant::now();
        let deadline = self.settings.deadline;
        let result = self
            .attempt(request, deadline, |mut rpc, req| async move {
                rpc.record_step_up(req).await
            })
            .await;
        self.report(
            Method::RecordStepUp,
            started,
            1,
            result.as_ref().map(|_| CallResult::Ok),
        );
        result
    }

    fn report(
        &self,
        method: Method,
        started: Instant,
        attempts: u32,
        result: Result<CallResult<'_>, &CallError>,
    ) {
        let result = match result {
            Ok(r) => r,
            Err(err) => CallResult::Failed(err),
        };
        self.settings.observer.on_call(&CallEvent {
            method,
            result,
            latency: started.elapsed(),
            attempts,
        });
    }

    /// Attempts `call` until it succeeds, fails for a reason that makes a
    /// retry unsafe, or the retries or the deadline run out.
    async fn retrying<Req, Resp, F, Fut>(
        &self,
        request: Req,
        call: F,
    ) -> (Result<Resp, CallError>, u32)
    where
        Req: Clone,
        F: Fn(DecisionServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let end = Instant::now() + self.settings.deadline;
        let mut attempts = 0;
        let mut pause = Duration::from_millis(20);
        loop {
            attempts += 1;
            let left = end.saturating_duration_since(Instant::now());
            let result = self.attempt(request.clone(), left, &call).await;
            match result {
                Err(err) if attempts <= self.settings.retries && retry_is_safe(&err) => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left <= pause {
                        return (Err(err), attempts);
                    }
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                other => return (other, attempts),
            }
        }
    }

    /// One call with `deadline`: as `grpc-timeout` for the sidecar, and a
    /// client-side timeout for a sidecar that does not answer at all.
    async fn attempt<Req, Resp, F, Fut>(
        &self,
        request: Req,
        deadline: Duration,
        call: F,
    ) -> Result<Resp, CallError>
    where
        F: Fn(DecisionServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let timeout = || CallError::Timeout {
            target: self.settings.target.clone(),
            deadline: self.settings.deadline,
        };
        if deadline.is_zero() {
            return Err(timeout());
        }
        let mut request = tonic::Request::new(request);
        request.set_timeout(deadline);
        match tokio::time::timeout(deadline, call(self.rpc.clone(), request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            // DEADLINE_EXCEEDED from the sidecar; CANCELLED from tonic's own
            // timeouts (this client never cancels a call otherwise).
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
                ) =>
            {
                Err(timeout())
            }
            Ok(Err(status)) => Err(CallError::from_status(&self.settings.target, &status)),
            Err(_) => Err(timeout()),
        }
    }
}

/// A retry is safe when the request was never sent, or the sidecar says it
/// did not run it (`SHUTTING_DOWN`).
fn retry_is_safe(err: &CallError) -> bool {
    match err {
        CallError::Unreachable { .. } => true,
        CallError::Status { code, reason, .. } => {
            *code == tonic::Code::Unavailable && reason.as_deref() == Some("SHUTTING_DOWN")
        }
        CallError::Timeout { .. } => false,
    }
}
