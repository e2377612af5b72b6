//! The composition root: one [`Service`] holds what a decision needs beyond
//! the pure engine (the policy set, swapped atomically on reload; the
//! decision cache; the subject history; the metrics; the decision log) and
//! decides with it. [`Service::start`] builds it from a [`Config`];
//! [`watch`] reloads its policy set when the files change.
//!
//! Costly decisions (a worst case of [`COSTLY`] cost units or more) do not
//! run on the runtime's threads, where they would hold up every other call
//! and the health checks: [`Service::run_isolated`] runs them on the
//! blocking pool, a bounded number at once.

pub mod watch;

use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::cache::{self, CacheConfig, DecisionCache};
use crate::config::Config;
use crate::engine::Decision;
use crate::history::{History, Lazy};
use crate::policy::{PolicySet, Report};
use crate::proto::v1::DecideRequest;
use crate::telemetry::decision_log::{DecisionLog, Entry};
use crate::telemetry::metrics::Metrics;
use watch::ReloadStatus;

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The policy set does not load.
    #[error("{0}")]
    Policy(Report),
    /// The shared history backend cannot be set up.
    #[error("history backend: {0}")]
    HistoryBackend(#[source] crate::history::redis::StartError),
    /// The decision log cannot be opened.
    #[error("cannot open the decision log: {0}")]
    DecisionLog(#[source] std::io::Error),
}

/// The worst-case cost (units of the cost model,
/// [`PolicySet::decision_cost`]) from which a decision runs off the
/// runtime's threads: about 0.1 ms at worst on a 2-core machine. Below it,
/// handing the work to another thread would cost more than it saves.
pub const COSTLY: u64 = 2_000;

/// The decision service: the current policy set (swapped atomically on
/// reload; readers never lock), the decision cache, the subject history,
/// the metrics and the decision log.
pub struct Service {
    policy: ArcSwap<PolicySet>,
    cache: Option<DecisionCache>,
    reloads: ReloadStatus,
    metrics: Arc<Metrics>,
    decision_log: Option<DecisionLog>,
    history: Arc<History>,
    /// Who is believed when a call asks to change state (`[trust]`).
    trust: Arc<crate::trust::Trust>,
    /// Costly decisions running or allowed to run at once: one fewer than
    /// the cores (at least one), so that a core is left for the runtime.
    costly_slots: tokio::sync::Semaphore,
}

/// How many costly decisions may run at once: [`Service::costly_slots`].
fn costly_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

impl Service {
    /// A service deciding with `policy`, without history recording settings
    /// (a local store with the defaults) or a decision log.
    pub fn new(policy: PolicySet, cache: CacheConfig) -> Self {
        Self {
            policy: ArcSwap::from_pointee(policy),
            cache: DecisionCache::new(cache),
            reloads: ReloadStatus::default(),
            metrics: Arc::new(Metrics::default()),
            decision_log: None,
            history: Arc::new(History::default()),
            trust: Arc::new(crate::trust::Trust::default()),
            costly_slots: tokio::sync::Semaphore::new(costly_slots()),
        }
    }

    /// Remembers and reads subject history with `history` (the default is a
    /// local store with default settings).
    pub fn with_history(mut self, history: History) -> Self {
        self.history = Arc::new(history);
        self
    }

    /// The subject history decisions read and update.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// Believes the issuers and reporters of `trust` (the default trusts
    /// nobody: step-up reports are refused).
    pub fn with_trust(mut self, trust: crate::trust::Trust) -> Self {
        self.trust = Arc::new(trust);
        self
    }

    /// The trusted issuers and reporters.
    pub fn trust(&self) -> &Arc<crate::trust::Trust> {
        &self.trust
    }

    /// Logs decisions passed to [`Service::log`] to `log`.
    pub fn with_decision_log(mut self, log: DecisionLog) -> Self {
        self.decision_log = Some(log);
        self
    }

    /// The metrics every decision updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Hands a decided request to the decision log, if one is configured
    /// (never blocks; see [`DecisionLog`]).
    pub fn log(
        &self,
        source: &'static str,
        time: DateTime<Utc>,
        request: DecideRequest,
        decision: Decision,
    ) {
        self.log_from(source, time, request, decision, None);
    }

    /// [`Service::log`] with the caller's verified identity (e.g. the
    /// SPIFFE ID of its client certificate), written as the line's
    /// `caller`.
    pub fn log_from(
        &self,
        source: &'static str,
        time: DateTime<Utc>,
        request: DecideRequest,
        decision: Decision,
        caller: Option<Arc<str>>,
    ) {
        if let Some(log) = &self.decision_log {
            let elapsed = decision.elapsed;
            log.submit(Entry {
                time,
                source,
                request,
                decision,
                elapsed,
                caller,
            });
        }
    }

    /// Whether a decision log is configured (callers can skip building an
    /// owned request for it otherwise).
    pub fn logs_decisions(&self) -> bool {
        self.decision_log.is_some()
    }

    /// Flushes and stops the decision log (at shutdown).
    pub fn close(&self) {
        if let Some(log) = &self.decision_log {
            log.close();
        }
    }

    /// The current policy set.
    pub fn policy(&self) -> Arc<PolicySet> {
        self.policy.load_full()
    }

    /// Replaces the policy set. Decisions in flight finish on the set they
    /// started with; cached entries of the old set can never be served (the
    /// key holds the set's generation) and are dropped.
    pub fn replace_policy(&self, policy: PolicySet) {
        self.policy.store(Arc::new(policy));
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// Reload counters and the last reload error.
    pub fn reload_status(&self) -> &ReloadStatus {
        &self.reloads
    }

    /// The Prometheus text exposition of every metric (what the admin
    /// listener's `/metrics` serves).
    pub fn render_metrics(&self) -> String {
        let policy = self.policy();
        let reloads = self.reload_status();
        let state = crate::telemetry::metrics::ScrapeState {
            policy: &policy,
            cache_entries: self.cache().map_or(0, |c| c.len()),
            cache_bytes: self.cache().map_or(0, |c| c.weight()),
            reloads_ok: reloads.ok.load(std::sync::atomic::Ordering::Relaxed),
            reloads_failed: reloads.failed.load(std::sync::atomic::Ordering::Relaxed),
            last_reload_failed: reloads.last_error().is_some(),
        };
        let mut body = self.metrics.render(&state);
        self.history.render_metrics(&mut body);
        body
    }

    /// The cache, when on.
    pub fn cache(&self) -> Option<&DecisionCache> {
        self.cache.as_ref()
    }

    /// Whether deciding `action` may cost `COSTLY` (2,000 units) or more;
    /// with `None`, whether deciding any action may (for callers that learn
    /// the action only as they decide).
    pub fn is_costly(&self, action: Option<&str>) -> bool {
        let policy = self.policy.load();
        match action {
            Some(action) => policy.decision_cost(action, COSTLY) >= COSTLY,
            None => policy.total_cost() >= COSTLY,
        }
    }

    /// Runs `work` (a costly decision, see [`Service::is_costly`]) on the
    /// blocking pool once one of the costly slots is free, so that the
    /// runtime's threads go on serving other calls meanwhile; `None` when
    /// the runtime shuts down before it runs. The current span goes with
    /// the work.
    pub async fn run_isolated<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Self) -> T + Send + 'static,
    ) -> Option<T> {
        let _slot = self.costly_slots.acquire().await.ok()?;
        let this = Arc::clone(self);
        let span = tracing::Span::current();
        match tokio::task::spawn_blocking(move || span.in_scope(|| work(&this))).await {
            Ok(done) => Some(done),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }

    /// One decision as the servers make it (`Decide`, the AuthZEN API):
    /// with a shared history backend the subject's history is refreshed
    /// first (bounded by the backend's timeout); a costly decision runs off
    /// the runtime's threads ([`Service::run_isolated`]). `None` when the
    /// runtime shuts down before a costly one runs.
    pub async fn decide_served(
        self: &Arc<Self>,
        req: DecideRequest,
        now: DateTime<Utc>,
        explain: bool,
    ) -> Option<(DecideRequest, Decision)> {
        if self.history.backend().is_some() {
            let policy = self.policy();
            self.history.prefetch(&policy, &req, now).await;
        }
        if self.is_costly(Some(&req.action)) {
            // Boxed: the cheap path's future stays small (it is moved and
            // copied on every call).
            return Box::pin(self.run_isolated(move |engine| {
                let decision = engine.decide(&req, now, explain);
                (req, decision)
            }))
            .await;
        }
        let decision = self.decide(&req, now, explain);
        Some((req, decision))
    }

    /// Decisions of `items` as the servers make a batch (`DecideBatch`, the
    /// AuthZEN evaluations): every subject's history refreshed from a shared
    /// backend before any decision (one snapshot), then all decided against
    /// it; one costly request sends the whole batch off the runtime's
    /// threads. `None` as for [`Service::decide_served`].
    pub async fn decide_batch_served(
        self: &Arc<Self>,
        items: Vec<(DecideRequest, DateTime<Utc>)>,
    ) -> Option<(Vec<(DecideRequest, DateTime<Utc>)>, Vec<Decision>)> {
        if self.history.backend().is_some() {
            let policy = self.policy();
            for (req, now) in &items {
                self.history.prefetch(&policy, req, *now).await;
            }
        }
        if items
            .iter()
            .any(|(req, _)| self.is_costly(Some(&req.action)))
        {
            return Box::pin(self.run_isolated(move |engine| {
                let decisions = engine.decide_batch(&items);
                (items, decisions)
            }))
            .await;
        }
        let decisions = self.decide_batch(&items);
        Some((items, decisions))
    }

    /// Decides `req` at `now`. `explain` adds a trace and bypasses the cache.
    pub fn decide(&self, req: &DecideRequest, now: DateTime<Utc>, explain: bool) -> Decision {
        let started = std::time::Instant::now();
        let policy = self.policy.load_full();
        // A live step-up elevation lifts the session before the cache
        // lookup, so the key sees the effective session.
        let elevated = self.history.elevate(&policy, req, now);
        let req = elevated.as_ref().unwrap_or(req);
        let cache = if explain { None } else { self.cache.as_ref() };
        // The history view is built only if a condition reads `history`;
        // recording reuses what it looked up.
        let lazy = Lazy::new(Some(&self.history), &policy, req, now);
        let mut decision = cache::decide(cache, Arc::clone(&policy), req, now, &lazy, explain);
        self.history.record(req, &decision, now, lazy.built());
        decision.elapsed = started.elapsed();
        self.metrics
            .record(&decision, decision.elapsed, cache.is_some());
        decision
    }
}

impl Service {
    /// Decides every `(request, now)` of a batch against the history as it
    /// stands, and only then records the decisions, in order: no decision
    /// of a batch sees another's (as if all were sent at once). One policy
    /// set decides them all. Answers come in request order.
    pub fn decide_batch(&self, batch: &[(DecideRequest, DateTime<Utc>)]) -> Vec<Decision> {
        let policy = self.policy.load_full();
        let decided: Vec<(Option<DecideRequest>, Decision)> = batch
            .iter()
            .map(|(req, now)| {
                let started = std::time::Instant::now();
                let elevated = self.history.elevate(&policy, req, *now);
                let req = elevated.as_ref().unwrap_or(req);
                let cache = if req.explain {
                    None
                } else {
                    self.cache.as_ref()
                };
                let lazy = Lazy::new(Some(&self.history), &policy, req, *now);
                let mut decision =
                    cache::decide(cache, Arc::clone(&policy), req, *now, &lazy, req.explain);
                decision.elapsed = started.elapsed();
                (elevated, decision)
            })
            .collect();
        decided
            .into_iter()
            .zip(batch)
            .map(|((elevated, decision), (req, now))| {
                let req = elevated.as_ref().unwrap_or(req);
                self.history.record(req, &decision, *now, None);
                self.metrics.record(
                    &decision,
                    decision.elapsed,
                    !req.explain && self.cache.is_some(),
                );
                decision
            })
            .collect()
    }
}

impl Service {
    /// The service `config` describes: the policy set loaded from its
    /// directory (warnings go to the log), the cache, the history with its
    /// shared backend, the decision log.
    pub fn start(config: &Config) -> Result<Self, StartError> {
        let policy = match PolicySet::load_limited(
            &config.policies,
            &config.lists,
            config.cost_limits,
            None,
        ) {
            Ok((set, warnings)) => {
                for w in &warnings.diagnostics {
                    tracing::warn!("{w}");
                }
                set
            }
            Err(report) => return Err(StartError::Policy(report)),
        };
        tracing::info!(
            revision = %policy.revision,
            levels = policy.levels.len(),
            signals = policy.signals.len(),
            rules = policy.rules.len(),
            lists = %policy.lists().summary(),
            dir = %config.policies.display(),
            "policy set loaded"
        );
        let mut history = History::new(config.history.clone());
        if let Some(redis) = &config.history.redis {
            let backend = crate::history::redis::RedisBackend::start(redis, config.history.limits)
                .map_err(StartError::HistoryBackend)?;
            tracing::info!("history shared through Redis");
            history = history.with_backend(Arc::new(backend));
        }
        if config.trust.is_off() {
            tracing::warn!(
                "step-up reports are off: no `[trust]` settings, so RecordStepUp refuses every report; \
                 add `[[trust.issuers]]` to accept reports that carry the step-up's signed token, \
                 or `[trust] reporters` for mTLS callers"
            );
        }
        let service = Self::new(policy, config.cache)
            .with_history(history)
            .with_trust(crate::trust::Trust::new(&config.trust));
        Ok(match &config.decision_log {
            Some(log) => {
                let log = DecisionLog::start(log.clone(), Arc::clone(service.metrics()))
                    .map_err(StartError::DecisionLog)?;
                service.with_decision_log(log)
            }
            None => service,
        })
    }
}

impl crate::telemetry::otlp::PolicyState for Service {
    fn reloads(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.reloads.ok.load(Relaxed),
            self.reloads.failed.load(Relaxed),
        )
    }

    fn revision(&self) -> Arc<str> {
        Arc::clone(&self.policy.load().revision)
    }
}

#[cfg(test)]
mod tests;
