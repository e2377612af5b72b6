//! Evaluation of the signals and candidate rules of one request: every
//! condition at once, or (for the cache) the time-independent ones first and
//! the volatile ones per decision.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset};

use super::decision::{Assessment, EvalError};
use crate::expr::history::Recall;
use crate::expr::vals::Variables;
use crate::policy::{Condition, Mode, PolicySet};
use crate::proto::v1::DecideRequest;

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
    pub(crate) signals: Arc<[CondResult]>,
    /// The risk, when no signal is pending.
    pub(crate) risk: Option<Risk>,
    /// (rule index, result) for the rules whose actions match.
    pub(crate) rules: Vec<(usize, CondResult)>,
    /// The finished assessment when nothing is pending.
    pub(crate) assessment: Option<Arc<Assessment>>,
}

/// The risk score and the ids of the signals that fired, shared between an
/// evaluation, its cached entry and the assessments made from it.
pub(crate) type Risk = (u32, Arc<[Arc<str>]>);

/// Evaluates the conditions of the signals and of the rules in `candidates`.
/// With `stable_only`, volatile conditions are left `Pending`, for
/// [`finish`] to run per decision.
pub(super) fn evaluate(
    policy: &PolicySet,
    req: &DecideRequest,
    now: DateTime<FixedOffset>,
    history: &dyn Recall,
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
pub(super) fn finish(
    policy: &PolicySet,
    req: &DecideRequest,
    now: DateTime<FixedOffset>,
    history: &dyn Recall,
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
pub(crate) fn interpreter<'c, 'v>(
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
