//! The decision: signals -> risk -> rules -> requirements -> satisfied by the
//! session? [`Engine::decide`] is total: it always returns a [`Decision`];
//! a condition that fails to evaluate is recorded in it and fails closed.
//!
//! The engine takes the prost `DecideRequest` by reference rather than a
//! domain copy of it: the request is plain data, and borrowing it is what
//! keeps a decision free of per-field copies (see [`vals`]).

mod calendar;
pub mod fast;
pub mod glob;
pub mod vals;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::cache::{CacheConfig, DecisionCache};
use crate::history::{History, Lazy};
use crate::policy::{Condition, Effect, Mode, PolicySet};
use crate::proto::v1::DecideRequest;
use crate::telemetry::decision_log::{DecisionLog, Entry};
use crate::telemetry::metrics::Metrics;
use vals::Variables;

/// How far in the future a session's `auth_time` may lie (clock skew between
/// the identity provider and us) and still count.
pub const AUTH_TIME_SKEW: Duration = Duration::from_secs(300);

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Go ahead.
    Allow,
    /// Step up first.
    Challenge,
    /// Refuse.
    Deny,
}

/// The result of one condition.
#[derive(Clone, Debug, PartialEq)]
pub enum CondResult {
    /// It evaluated to true.
    True,
    /// It evaluated to false.
    False,
    /// It failed; the message says why.
    Error(Arc<str>),
    /// Not evaluated yet: volatile, evaluated per decision.
    Pending,
}

/// Condition results of one action's signals and candidate rules: what the
/// cache stores. Volatile conditions are `Pending` in a cached entry.
#[derive(Debug)]
pub struct Evaluated {
    signals: Arc<[CondResult]>,
    /// The risk, when no signal is pending.
    risk: Option<Risk>,
    /// (rule index, result) for the rules whose actions match.
    rules: Vec<(usize, CondResult)>,
    /// The finished assessment when nothing is pending.
    assessment: Option<Arc<Assessment>>,
}

/// A signal or rule whose condition failed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalError {
    /// The signal's or rule's id.
    pub id: Arc<str>,
    /// What went wrong.
    pub message: Arc<str>,
}

/// One line of an explanation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TraceEntry {
    /// `signal` or `rule`.
    pub kind: &'static str,
    /// Its id.
    pub id: Arc<str>,
    /// Whether it fired or matched.
    pub fired: bool,
    /// Why.
    pub detail: String,
}

/// What the signals and rules found, before the session is compared with the
/// requirements. Shared between cached decisions.
#[derive(Debug, PartialEq)]
pub struct Assessment {
    /// 0..=100.
    pub risk_score: u32,
    /// Ids of the signals that fired (shared with the cached entry).
    pub signals: Arc<[Arc<str>]>,
    /// Indices of the enforced rules that matched, in policy order.
    pub matched: Vec<usize>,
    /// Indices of the shadow rules that matched (report-only).
    pub shadow: Vec<usize>,
    /// Conditions that failed.
    pub errors: Vec<EvalError>,
}

/// A decision.
#[derive(Debug)]
pub struct Decision {
    /// The verdict.
    pub outcome: Outcome,
    /// What the signals and rules found.
    pub assessment: Arc<Assessment>,
    /// Matched challenge rules the session does not satisfy yet (indices).
    pub unmet: Vec<usize>,
    /// The merged challenge's level (the strongest any unmet rule asks for).
    pub challenge_level: Option<usize>,
    /// The merged challenge's freshness (the smallest unmet `max_age`).
    pub max_age: Option<Duration>,
    /// Unique, time-sortable id.
    pub id: uuid::Uuid,
    /// The policy set that decided.
    pub policy: Arc<PolicySet>,
    /// Whether the time-independent part came from the cache.
    pub cache_hit: bool,
    /// Filled when an explanation was asked for.
    pub trace: Vec<TraceEntry>,
    /// The matched shadow rules and what they would have done.
    pub shadow: Vec<ShadowResult>,
    /// Time to decide (set by [`Engine::decide`]).
    pub elapsed: Duration,
}

/// What a matched shadow rule would have done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowResult {
    /// Index of the rule.
    pub rule: usize,
    /// Its effect.
    pub effect: Effect,
    /// For a challenge: whether the session already meets the requirement
    /// (then enforcing the rule would not have challenged).
    pub satisfied: bool,
}

impl Decision {
    /// The ids, effects and messages of the matched rules.
    pub fn reasons(&self) -> impl Iterator<Item = (&Arc<str>, Effect, &Arc<str>)> {
        self.assessment
            .matched
            .iter()
            .filter_map(|i| self.policy.rules.get(*i))
            .map(|r| (&r.id, r.effect, &r.message))
    }

    /// The merged challenge's acr values.
    pub fn acr_values(&self) -> &[Arc<str>] {
        self.challenge_level
            .and_then(|l| self.policy.levels.get(l))
            .map_or(&[], |l| &l.acr)
    }

    /// The decision id in its canonical text form (lowercase, hyphenated;
    /// formatted without going through `Display`).
    pub fn id_string(&self) -> String {
        let mut buf = uuid::Uuid::encode_buffer();
        (*self.id.hyphenated().encode_lower(&mut buf)).to_owned()
    }

    /// The RFC 9470 `WWW-Authenticate` value for a challenge.
    pub fn www_authenticate(&self) -> Option<String> {
        if self.outcome != Outcome::Challenge {
            return None;
        }
        let description = self
            .unmet
            .first()
            .and_then(|i| self.policy.rules.get(*i))
            .map_or("step-up authentication required", |r| &r.message);
        let mut v = String::with_capacity(160);
        v.push_str("Bearer error=\"insufficient_user_authentication\", error_description=\"");
        push_quoted(&mut v, description);
        v.push('"');
        let acr = self.acr_values();
        if !acr.is_empty() {
            v.push_str(", acr_values=\"");
            for (i, a) in acr.iter().enumerate() {
                if i > 0 {
                    v.push(' ');
                }
                push_quoted(&mut v, a);
            }
            v.push('"');
        }
        if let Some(max_age) = self.max_age {
            v.push_str(", max_age=\"");
            v.push_str(itoa::Buffer::new().format(max_age.as_secs()));
            v.push('"');
        }
        Some(v)
    }
}

/// Appends `s` as the content of an RFC 6750 quoted-string: only the
/// characters RFC 6750 allows in `error_description` (printable ASCII but
/// `"` and `\`) are kept; others become `?`, so a policy message can never
/// break the header.
///
/// Policy messages and acr values are almost always clean: they are then
/// copied whole instead of character by character.
fn push_quoted(out: &mut String, s: &str) {
    let allowed = |c: char| matches!(c, ' ' | '!' | '#'..='[' | ']'..='~');
    if s.bytes().all(|b| allowed(char::from(b))) {
        out.push_str(s);
        return;
    }
    out.extend(s.chars().map(|c| if allowed(c) { c } else { '?' }));
}

/// The decision engine: the current policy set (swapped atomically on
/// reload; readers never lock) and the decision cache.
pub struct Engine {
    policy: ArcSwap<PolicySet>,
    cache: Option<DecisionCache>,
    reloads: crate::policy::watch::ReloadStatus,
    metrics: Arc<Metrics>,
    decision_log: Option<DecisionLog>,
    history: Arc<History>,
}

impl Engine {
    /// An engine deciding with `policy`.
    pub fn new(policy: PolicySet, cache: CacheConfig) -> Self {
        Self {
            policy: ArcSwap::from_pointee(policy),
            cache: DecisionCache::new(cache),
            reloads: crate::policy::watch::ReloadStatus::default(),
            metrics: Arc::new(Metrics::default()),
            decision_log: None,
            history: Arc::new(History::default()),
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

    /// Logs decisions passed to [`Engine::log`] to `log`.
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
        if let Some(log) = &self.decision_log {
            let elapsed = decision.elapsed;
            log.submit(Entry {
                time,
                source,
                request,
                decision,
                elapsed,
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
    pub fn reload_status(&self) -> &crate::policy::watch::ReloadStatus {
        &self.reloads
    }

    /// The cache, when on.
    pub fn cache(&self) -> Option<&DecisionCache> {
        self.cache.as_ref()
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
        let mut decision = decide_lazy(Arc::clone(&policy), cache, req, now, explain, &lazy);
        self.history.record(req, &decision, now, lazy.built());
        decision.elapsed = started.elapsed();
        self.metrics
            .record(&decision, decision.elapsed, cache.is_some());
        decision
    }
}

/// Decides `req` under `policy`, through `cache` when given; `history`
/// reads as a subject never seen.
pub fn decide_with(
    policy: Arc<PolicySet>,
    cache: Option<&DecisionCache>,
    req: &DecideRequest,
    now: DateTime<Utc>,
    explain: bool,
) -> Decision {
    decide_with_history(policy, cache, req, now, explain, None)
}

/// [`decide_with`], reading `history` from `history` (built only if a
/// condition reads it). Recording the decision is the caller's business.
pub fn decide_with_history(
    policy: Arc<PolicySet>,
    cache: Option<&DecisionCache>,
    req: &DecideRequest,
    now: DateTime<Utc>,
    explain: bool,
    history: Option<&History>,
) -> Decision {
    let lazy = Lazy::new(history, &policy, req, now);
    decide_lazy(Arc::clone(&policy), cache, req, now, explain, &lazy)
}

/// The decision, with `history` read from `lazy`.
fn decide_lazy(
    policy: Arc<PolicySet>,
    cache: Option<&DecisionCache>,
    req: &DecideRequest,
    now: DateTime<Utc>,
    explain: bool,
    lazy: &Lazy<'_>,
) -> Decision {
    let now_fixed = now.fixed_offset();
    let candidates = || {
        let mut c = Vec::new();
        policy.index.lookup(&req.action, &mut c);
        c
    };

    // Without a cache everything is evaluated at once; an explanation reuses
    // that evaluation instead of running every condition again.
    let mut uncached = None;
    let (assessment, cache_hit) = match cache {
        Some(cache) => {
            let (stable, hit) = match cache.lookup(&policy, req, now) {
                Ok(e) => (e, true),
                Err(key) => {
                    let e = Arc::new(evaluate(&policy, req, now_fixed, lazy, &candidates(), true));
                    // Calendar reads in a zone off the key's time step
                    // would not hold for the whole step.
                    if calendar::steady(&policy, req, now, lazy, &e) {
                        cache.insert(key, Arc::clone(&e));
                    }
                    (e, false)
                }
            };
            let assessment = match &stable.assessment {
                Some(a) => Arc::clone(a),
                None => Arc::new(finish(&policy, req, now_fixed, lazy, &stable)),
            };
            (assessment, hit)
        }
        None => {
            let full = evaluate(&policy, req, now_fixed, lazy, &candidates(), false);
            let a = full.assessment.clone().unwrap_or_else(|| {
                // Unreachable: nothing is left pending without `stable_only`.
                Arc::new(finish(&policy, req, now_fixed, lazy, &full))
            });
            uncached = Some(full);
            (a, false)
        }
    };

    let trace = if explain {
        let full = uncached
            .unwrap_or_else(|| evaluate(&policy, req, now_fixed, lazy, &candidates(), false));
        explain_trace(&policy, req, &full)
    } else {
        Vec::new()
    };
    conclude(policy, assessment, req, now, cache_hit, trace)
}

/// The risk score and the ids of the signals that fired, shared between an
/// evaluation, its cached entry and the assessments made from it.
type Risk = (u32, Arc<[Arc<str>]>);

/// Evaluates the conditions of the signals and of the rules in `candidates`.
/// With `stable_only`, volatile conditions are left `Pending`, for
/// [`finish`] to run per decision.
fn evaluate(
    policy: &PolicySet,
    req: &DecideRequest,
    now: DateTime<chrono::FixedOffset>,
    history: &Lazy<'_>,
    candidates: &[usize],
    stable_only: bool,
) -> Evaluated {
    let vars = Variables {
        request: req,
        now,
        risk: None,
        history: Some(history),
    };
    // The interpreter's context, made only if a condition needs it (the
    // fast path answers most without).
    let ctx = std::cell::OnceCell::new();
    let ctx = || interpreter(&ctx, policy, &vars);
    let signals: Arc<[CondResult]> = policy
        .signals
        .iter()
        .map(|s| {
            if stable_only && s.when.volatile {
                CondResult::Pending
            } else {
                run(&s.when, &vars, ctx)
            }
        })
        .collect();
    let risk = if signals.contains(&CondResult::Pending) {
        None
    } else {
        Some(risk_of(policy, &signals))
    };
    let rules: Vec<(usize, CondResult)> = {
        let rule_vars = vars.with_risk(risk.as_ref());
        let rule_ctx = std::cell::OnceCell::new();
        let rule_ctx = || interpreter(&rule_ctx, policy, &rule_vars);
        candidates
            .iter()
            .map(|&i| {
                let r = match policy.rules.get(i).and_then(|r| r.when.as_ref()) {
                    None => CondResult::True,
                    // Rules reading `risk` are volatile when a signal is.
                    Some(c) if stable_only && c.volatile => CondResult::Pending,
                    Some(c) => run(c, &rule_vars, rule_ctx),
                };
                (i, r)
            })
            .collect()
    };
    let assessment = match &risk {
        Some(risk) if rules.iter().all(|(_, r)| *r != CondResult::Pending) => {
            let mut a = Assessor::new(policy, &signals);
            for (i, r) in &rules {
                a.rule(*i, r);
            }
            Some(Arc::new(a.finish(risk.clone())))
        }
        _ => None,
    };
    Evaluated {
        signals,
        risk,
        rules,
        assessment,
    }
}

/// The assessment of a cached evaluation with pending conditions: those
/// run now, the settled results (and the risk, when every signal is
/// settled) are taken as they are, and nothing is collected on the way.
fn finish(
    policy: &PolicySet,
    req: &DecideRequest,
    now: DateTime<chrono::FixedOffset>,
    history: &Lazy<'_>,
    stable: &Evaluated,
) -> Assessment {
    let vars = Variables {
        request: req,
        now,
        risk: None,
        history: Some(history),
    };
    let settled;
    let (signals, risk): (&[CondResult], Risk) = match &stable.risk {
        Some(risk) => (&stable.signals, risk.clone()),
        None => {
            let ctx = std::cell::OnceCell::new();
            let ctx = || interpreter(&ctx, policy, &vars);
            settled = policy
                .signals
                .iter()
                .zip(stable.signals.iter())
                .map(|(s, r)| match r {
                    CondResult::Pending => run(&s.when, &vars, ctx),
                    done => done.clone(),
                })
                .collect::<Vec<_>>();
            let risk = risk_of(policy, &settled);
            (&settled, risk)
        }
    };
    let mut a = Assessor::new(policy, signals);
    // In a scope of its own: the context borrows `risk` until it is dropped.
    {
        let rule_vars = vars.with_risk(Some(&risk));
        let rule_ctx = std::cell::OnceCell::new();
        let rule_ctx = || interpreter(&rule_ctx, policy, &rule_vars);
        for (i, r) in &stable.rules {
            match (r, policy.rules.get(*i).and_then(|r| r.when.as_ref())) {
                (CondResult::Pending, Some(c)) => a.rule(*i, &run(c, &rule_vars, rule_ctx)),
                (CondResult::Pending, None) => a.rule(*i, &CondResult::True),
                (done, _) => a.rule(*i, done),
            }
        }
    }
    a.finish(risk)
}

fn risk_of(policy: &PolicySet, signals: &[CondResult]) -> Risk {
    let mut score: i64 = 0;
    let mut fired = Vec::new();
    for (s, r) in policy.signals.iter().zip(signals) {
        if *r == CondResult::True {
            score += s.score;
            fired.push(Arc::clone(&s.id));
        }
    }
    (
        u32::try_from(score.clamp(0, 100)).unwrap_or(0),
        fired.into(),
    )
}

/// Builds an [`Assessment`] from complete condition results, rule by rule.
struct Assessor<'p> {
    policy: &'p PolicySet,
    matched: Vec<usize>,
    shadow: Vec<usize>,
    errors: Vec<EvalError>,
}

impl<'p> Assessor<'p> {
    /// Starts with the signals' results (their errors are reported).
    fn new(policy: &'p PolicySet, signals: &[CondResult]) -> Self {
        let mut errors = Vec::new();
        for (s, r) in policy.signals.iter().zip(signals) {
            if let CondResult::Error(e) = r {
                errors.push(EvalError {
                    id: Arc::clone(&s.id),
                    message: Arc::clone(e),
                });
            }
        }
        Self {
            policy,
            matched: Vec::new(),
            shadow: Vec::new(),
            errors,
        }
    }

    /// Rule `i`'s result (rules in ascending order).
    fn rule(&mut self, i: usize, r: &CondResult) {
        let rule = self.policy.rules.get(i);
        let list = match rule.map(|r| r.mode) {
            Some(Mode::Shadow) => &mut self.shadow,
            _ => &mut self.matched,
        };
        match r {
            CondResult::True => list.push(i),
            // Fail closed: a rule that cannot be evaluated counts as matched.
            CondResult::Error(e) => {
                list.push(i);
                if let Some(rule) = rule {
                    self.errors.push(EvalError {
                        id: Arc::clone(&rule.id),
                        message: Arc::clone(e),
                    });
                }
            }
            CondResult::False | CondResult::Pending => {}
        }
    }

    fn finish(self, (risk_score, signals): Risk) -> Assessment {
        Assessment {
            risk_score,
            signals,
            matched: self.matched,
            shadow: self.shadow,
            errors: self.errors,
        }
    }
}

/// The CEL context over `vars` in `cell`, made on first use.
fn interpreter<'c, 'v>(
    cell: &'c std::cell::OnceCell<cel::Context<'v, 'v>>,
    policy: &'v PolicySet,
    vars: &'v Variables<'_>,
) -> &'c cel::Context<'v, 'v> {
    cell.get_or_init(|| {
        let mut c = policy.cel_context();
        c.set_variable_resolver(vars);
        c
    })
}

fn run<'c, 'v: 'c>(
    cond: &Condition,
    vars: &Variables<'_>,
    ctx: impl FnOnce() -> &'c cel::Context<'v, 'v>,
) -> CondResult {
    if let Some(answer) = cond.fast.as_ref().and_then(|f| f.eval(vars)) {
        return if answer {
            CondResult::True
        } else {
            CondResult::False
        };
    }
    match cond.program.execute(ctx()) {
        Ok(cel::Value::Bool(true)) => CondResult::True,
        Ok(cel::Value::Bool(false)) => CondResult::False,
        Ok(other) => CondResult::Error(Arc::from(format!(
            "condition must be a bool, got {:?}",
            other.type_of()
        ))),
        Err(e) => CondResult::Error(Arc::from(error_text(&e))),
    }
}

/// Run-time CEL errors in our message style (lowercase, names in backticks).
fn error_text(e: &cel::ExecutionError) -> String {
    match e {
        cel::ExecutionError::NoSuchKey(k) => format!("no such key: `{k}`"),
        cel::ExecutionError::UndeclaredReference(r) => format!("undeclared reference to `{r}`"),
        other => {
            let s = other.to_string();
            let mut c = s.chars();
            match c.next() {
                Some(first) => first.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

/// Compares the session with each matched challenge rule's requirement.
fn conclude(
    policy: Arc<PolicySet>,
    assessment: Arc<Assessment>,
    req: &DecideRequest,
    now: DateTime<Utc>,
    cache_hit: bool,
    trace: Vec<TraceEntry>,
) -> Decision {
    let mut denied = false;
    let mut unmet = Vec::new();
    let mut challenge_level: Option<usize> = None;
    let mut max_age: Option<Duration> = None;
    let session = req.session.as_ref();
    let session_level = session.and_then(|s| policy.level_of_acr(&s.acr));
    let age = session.and_then(|s| s.auth_time.as_ref()).and_then(|t| {
        let at = DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)?;
        let age = now.signed_duration_since(at);
        if age < -chrono::Duration::from_std(AUTH_TIME_SKEW).ok()? {
            None // from the future: not a usable authentication time
        } else {
            Some(age.to_std().unwrap_or(Duration::ZERO))
        }
    });
    let amr: &[String] = session.map_or(&[], |s| &s.amr);
    let satisfied = |r: &crate::policy::Requirement| {
        let level_ok = r
            .level
            .is_none_or(|need| session_level.is_some_and(|have| have >= need));
        let methods_ok =
            r.methods.is_empty() || amr.iter().any(|m| r.methods.iter().any(|x| **x == **m));
        let fresh = r
            .max_age
            .is_none_or(|limit| age.is_some_and(|a| a <= limit));
        level_ok && methods_ok && fresh
    };
    for &i in &assessment.matched {
        let Some(rule) = policy.rules.get(i) else {
            continue;
        };
        match rule.effect {
            Effect::Deny => denied = true,
            Effect::Challenge => {
                let Some(r) = &rule.requirement else { continue };
                if !satisfied(r) {
                    unmet.push(i);
                    if r.level > challenge_level {
                        challenge_level = r.level;
                    }
                    if let Some(m) = r.max_age {
                        max_age = Some(max_age.map_or(m, |cur| cur.min(m)));
                    }
                }
            }
        }
    }
    let shadow: Vec<ShadowResult> = assessment
        .shadow
        .iter()
        .filter_map(|&i| {
            let rule = policy.rules.get(i)?;
            Some(ShadowResult {
                rule: i,
                effect: rule.effect,
                satisfied: rule.effect == Effect::Challenge
                    && rule.requirement.as_ref().is_some_and(&satisfied),
            })
        })
        .collect();
    let outcome = if denied {
        Outcome::Deny
    } else if !unmet.is_empty() {
        Outcome::Challenge
    } else {
        Outcome::Allow
    };
    if outcome != Outcome::Challenge {
        unmet.clear();
        challenge_level = None;
        max_age = None;
    }
    Decision {
        outcome,
        assessment,
        unmet,
        challenge_level,
        max_age,
        id: uuid::Uuid::now_v7(),
        policy,
        cache_hit,
        trace,
        shadow,
        elapsed: Duration::ZERO,
    }
}

/// Per signal and rule: whether it fired and why.
fn explain_trace(policy: &PolicySet, req: &DecideRequest, full: &Evaluated) -> Vec<TraceEntry> {
    let mut out = Vec::new();
    for (s, r) in policy.signals.iter().zip(full.signals.iter()) {
        let (fired, detail) = describe(r, &s.when.source);
        out.push(TraceEntry {
            kind: "signal",
            id: Arc::clone(&s.id),
            fired,
            detail: if fired {
                format!("{detail}; adds {}", s.score)
            } else {
                detail
            },
        });
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let entry = match full.rules.iter().find(|(j, _)| *j == i) {
            Some((_, r)) => match &rule.when {
                Some(w) => {
                    let (fired, detail) = describe(r, &w.source);
                    let detail = if matches!(r, CondResult::Error(_)) {
                        format!("{detail}; counts as matched (fail closed)")
                    } else {
                        detail
                    };
                    (fired || matches!(r, CondResult::Error(_)), detail)
                }
                None => (
                    true,
                    format!("action `{}` matches and the rule has no `when`", req.action),
                ),
            },
            None => (
                false,
                format!(
                    "not considered: action `{}` matches none of {:?}",
                    req.action, rule.actions
                ),
            ),
        };
        let detail = match rule.mode {
            Mode::Shadow => format!("shadow (report-only): {}", entry.1),
            Mode::Enforce => entry.1,
        };
        out.push(TraceEntry {
            kind: "rule",
            id: Arc::clone(&rule.id),
            fired: entry.0,
            detail,
        });
    }
    out
}

fn describe(r: &CondResult, source: &str) -> (bool, String) {
    match r {
        CondResult::True => (true, format!("`{source}` is true")),
        CondResult::False => (false, format!("`{source}` is false")),
        CondResult::Error(e) => (false, format!("`{source}` failed: {e}")),
        CondResult::Pending => (false, format!("`{source}` was not evaluated")),
    }
}

#[cfg(test)]
mod tests;
