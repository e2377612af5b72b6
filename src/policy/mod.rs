//! Policies: load YAML files, validate them (a [`Report`] of every error and
//! warning, with file, line and caret), and compile them into a
//! [`PolicySet`]: CEL programs compiled once, rules indexed by action, and the
//! request paths the set reads (the decision cache key).

mod compile;
mod condition;
pub mod cost;
pub mod defs;
pub mod diag;
mod index;
pub mod lint;
pub mod load;
pub mod schema;
pub mod yaml;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use compile::{compile, list_diagnostic};
pub use cost::{CostLimits, CostReport};
pub use defs::{Effect, Mode};
use defs::{Sources, Spanned};
pub use diag::{Code, Diagnostic, Location, Report, Severity};

use crate::lists::{Lists, ListsConfig};
use index::ActionIndex;

/// A level of the assurance ladder.
#[derive(Debug)]
pub struct Level {
    /// Its name, e.g. `aal2`.
    pub name: Arc<str>,
    /// The acr values that count as this level, the first being the one to
    /// ask an identity provider for.
    pub acr: Arc<[Arc<str>]>,
}

/// What a challenge rule asks of the session.
#[derive(Debug)]
pub struct Requirement {
    /// Index into [`PolicySet::levels`] (higher is stronger).
    pub level: Option<usize>,
    /// Acceptable amr values, any one suffices; empty means any.
    pub methods: Arc<[Arc<str>]>,
    /// How recent `auth_time` must be.
    pub max_age: Option<Duration>,
}

/// A compiled CEL condition and what it reads.
#[derive(Debug)]
pub struct Condition {
    /// The expression as written.
    pub source: Arc<str>,
    /// The compiled program.
    pub program: cel::Program,
    /// The same condition for native evaluation, when it has a shape the
    /// fast path knows; the program decides whenever it cannot.
    pub fast: Option<crate::expr::fast::Fast>,
    /// Whether its value may change with time alone or with the subject's
    /// history (it reads `now` or `history`, or `risk` while a signal does):
    /// such conditions are evaluated on every decision, never cached.
    pub volatile: bool,
    /// Whether it reads `risk` (rules only).
    pub reads_risk: bool,
    /// The time-zone arguments of its calendar reads of `now`
    /// ([`schema::Reads::time_zones`]).
    pub time_zones: Box<[cel::IdedExpr]>,
    /// Its worst-case cost ([`cost`]), at most the set's limit.
    pub cost: u64,
}

/// A risk signal.
#[derive(Debug)]
pub struct Signal {
    /// Unique id.
    pub id: Arc<str>,
    /// When it fires.
    pub when: Condition,
    /// What it adds to the risk score.
    pub score: i64,
}

/// A rule.
#[derive(Debug)]
pub struct Rule {
    /// Unique id.
    pub id: Arc<str>,
    /// Action names or globs.
    pub actions: Vec<String>,
    /// Optional condition; absent means always.
    pub when: Option<Condition>,
    /// Challenge or deny.
    pub effect: Effect,
    /// For challenge rules.
    pub requirement: Option<Requirement>,
    /// For the end user (falls back to the description, then the id).
    pub message: Arc<str>,
    /// Shadow rules are evaluated and reported but do not decide.
    pub mode: Mode,
    /// Where its `id` is written, for diagnostics.
    pub defined_at: Spanned<String>,
}

/// A validated, compiled policy set: immutable, shared by every decision
/// through an `Arc` and replaced whole on reload.
pub struct PolicySet {
    /// `sha256:` + hex of the set's files (paths and contents).
    pub revision: Arc<str>,
    /// When it was loaded.
    pub(crate) loaded_at: SystemTime,
    /// Unique per compiled set in this process (part of the cache key, so
    /// no answer of one set can be served under another).
    pub(crate) generation: u64,
    /// The assurance ladder, weakest first.
    pub(crate) levels: Vec<Level>,
    /// Signals in policy order.
    pub(crate) signals: Vec<Signal>,
    /// Rules in policy order.
    pub(crate) rules: Vec<Rule>,
    /// Rules by action.
    pub(crate) index: ActionIndex,
    /// Every request path any condition reads: the decision cache key.
    #[cfg(test)]
    pub(crate) read_paths: Vec<schema::ReadPath>,
    /// `read_paths` as the decision cache key reads them.
    pub(crate) key_tree: crate::request::key::KeyTree,
    /// Whether any condition reads `history` (then decisions are recorded
    /// in `[history] enabled = "auto"` mode).
    pub(crate) reads_history: bool,
    /// The smallest step of the stepwise time reads of non-volatile
    /// conditions (see `schema::Reads::now_step`): the cache key holds
    /// `floor(now / step)`.
    pub(crate) time_step: Option<Duration>,
    /// acr value → level (foldhash: looked up on every decision and record).
    acr_levels: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
    env: Arc<cel::Env>,
    sources: Sources,
    /// The IP lists and GeoIP database loaded with the set.
    lists: Arc<Lists>,
    /// The limits the set was checked against (a reload keeps them).
    cost_limits: CostLimits,
    /// Every condition's worst-case cost, in policy order.
    costs: Vec<cost::ConditionCost>,
    /// The worst-case cost of the signals, which every decision evaluates.
    signals_cost: u64,
    /// The worst-case cost of every condition of the set: no decision costs
    /// more.
    total_cost: u64,
    /// The root CEL context: the environment and the set's functions
    /// (`ip_in`, when a condition calls it). Built once; every evaluation
    /// runs in a child scope of it, so it costs no allocation per decision.
    cel_root: cel::Context<'static, 'static>,
}

impl PolicySet {
    /// Loads, validates and compiles every policy file under `dir`. On
    /// success the report holds the warnings; on failure, every error.
    pub fn load(dir: &Path) -> Result<(Self, Report), Report> {
        Self::load_with(dir, &ListsConfig::default(), None)
    }

    /// Like [`PolicySet::load`], with the IP lists and GeoIP database of
    /// `lists` (besides those in the directory's `lists/`). `previous`, the
    /// set being replaced, lends what has not changed (an unchanged GeoIP
    /// database is not read again) and its cost limits (the default
    /// without one).
    pub fn load_with(
        dir: &Path,
        lists: &ListsConfig,
        previous: Option<&PolicySet>,
    ) -> Result<(Self, Report), Report> {
        let limits = previous.map_or_else(CostLimits::default, |p| p.cost_limits);
        Self::load_limited(dir, lists, limits, previous)
    }

    /// Like [`PolicySet::load_with`], checking every condition's worst-case
    /// cost against `limits` (`[limits] max_condition_cost`).
    pub fn load_limited(
        dir: &Path,
        lists: &ListsConfig,
        limits: CostLimits,
        previous: Option<&PolicySet>,
    ) -> Result<(Self, Report), Report> {
        let mut report = Report::default();
        let defs = load::read_dir(dir, &mut report);
        Self::finish(defs, dir, lists, limits, previous, report)
    }

    /// Like [`PolicySet::load_limited`] with no previous set, for policy
    /// files held in memory (paths under `dir`, e.g. the playground's edited
    /// files): the same checks, diagnostics and limits; the IP lists and
    /// GeoIP database are still read from `dir`'s `lists/` and `lists`.
    pub fn load_sources(
        dir: &Path,
        files: Vec<diag::SourceFile>,
        lists: &ListsConfig,
        limits: CostLimits,
    ) -> Result<(Self, Report), Report> {
        let mut report = Report::default();
        let defs = load::read_sources(dir, files, &mut report);
        Self::finish(defs, dir, lists, limits, None, report)
    }

    /// Loads the lists and compiles `defs`, read from `dir`.
    fn finish(
        defs: defs::Definitions,
        dir: &Path,
        lists: &ListsConfig,
        limits: CostLimits,
        previous: Option<&PolicySet>,
        mut report: Report,
    ) -> Result<(Self, Report), Report> {
        let lists = match Lists::load(lists, Some(dir), previous.map(|p| &*p.lists)) {
            Ok(lists) => lists,
            Err(errors) => {
                for e in errors {
                    report.push(list_diagnostic(e));
                }
                Lists::declared(lists, Some(dir))
            }
        };
        let set = compile(defs, dir, Arc::new(lists), limits, &mut report);
        match set {
            Some(set) if !report.has_errors() => Ok((set, report)),
            _ => Err(report),
        }
    }

    /// Every condition's worst-case cost and the limit (`stepup check
    /// --costs`).
    pub fn cost_report(&self) -> CostReport {
        CostReport {
            limit: self.cost_limits.max_condition_cost,
            conditions: self.costs.clone(),
        }
    }

    /// The worst-case cost of every condition of the set: no decision costs
    /// more.
    pub fn total_cost(&self) -> u64 {
        self.total_cost
    }

    /// The worst-case cost of deciding `action`: the signals and the
    /// conditions of the rules for it. Under `below`, when the whole set
    /// costs less than that, the answer is the set's total, without looking
    /// the action's rules up (so a caller that only compares pays nothing
    /// for sets of cheap conditions).
    pub fn decision_cost(&self, action: &str, below: u64) -> u64 {
        if self.total_cost < below {
            return self.total_cost;
        }
        let mut candidates = Vec::new();
        self.index.lookup(action, &mut candidates);
        candidates
            .iter()
            .filter_map(|&i| self.rules.get(i)?.when.as_ref().map(|w| w.cost))
            .fold(self.signals_cost, u64::saturating_add)
    }

    /// Compiles a set from one in-memory document stream (tests, tools).
    pub fn from_str(path: &str, text: &str) -> Result<(Self, Report), Report> {
        Self::from_str_with(path, text, Arc::new(Lists::default()))
    }

    /// Like [`PolicySet::from_str`], with `lists` for `ip_in` and location.
    pub fn from_str_with(
        path: &str,
        text: &str,
        lists: Arc<Lists>,
    ) -> Result<(Self, Report), Report> {
        let mut report = Report::default();
        let defs = load::read_str(path, text, &mut report);
        let set = compile(
            defs,
            Path::new(""),
            lists,
            CostLimits::default(),
            &mut report,
        );
        match set {
            Some(set) if !report.has_errors() => Ok((set, report)),
            _ => Err(report),
        }
    }

    /// The level an acr value maps to, if any.
    pub fn level_of_acr(&self, acr: &str) -> Option<usize> {
        self.acr_levels.get(acr).copied()
    }

    /// Warnings for rules whose exact action names are used by no other
    /// rule and by none of `tested_actions` (the actions of the test
    /// suites' requests): most likely a typo. Nothing when there are no
    /// tests to compare with.
    pub fn unused_action_warnings(&self, tested_actions: &[String]) -> Vec<Diagnostic> {
        if tested_actions.is_empty() {
            return Vec::new();
        }
        let tested: HashSet<&str> = tested_actions.iter().map(String::as_str).collect();
        // How many rules list each name or pattern (a rule counts once).
        let mut listed: HashMap<&str, usize> = HashMap::new();
        for rule in &self.rules {
            let own: HashSet<&str> = rule.actions.iter().map(String::as_str).collect();
            for a in own {
                *listed.entry(a).or_default() += 1;
            }
        }
        let candidates: Vec<&str> = tested_actions.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for rule in &self.rules {
            let exact: Vec<&String> = rule.actions.iter().filter(|a| !a.contains('*')).collect();
            if exact.len() != rule.actions.len() {
                continue; // a glob is deliberate
            }
            // Only exact names are evidence that an action exists: a glob
            // such as `payments.*` or `*` matches typos too. Another rule
            // uses a name when more than this one list it.
            let used = exact.iter().any(|a| {
                tested.contains(a.as_str()) || listed.get(a.as_str()).is_some_and(|&n| n > 1)
            });
            if !used {
                let help = exact
                    .iter()
                    .find_map(|a| diag::did_you_mean(a, candidates.iter().copied()))
                    .unwrap_or_else(|| {
                        "add a test case for it (`stepup test`), or check the spelling".to_owned()
                    });
                out.push(
                    self.sources
                        .place(
                            Diagnostic::warning(
                                Code::UntestedAction,
                                format!(
                                    "no test and no other rule uses the action{} of rule `{}`: {}",
                                    if exact.len() == 1 { "" } else { "s" },
                                    rule.id,
                                    exact
                                        .iter()
                                        .map(|a| format!("`{a}`"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            ),
                            rule.defined_at.file,
                            rule.defined_at.location,
                        )
                        .rule(&*rule.id)
                        .help(help),
                );
            }
        }
        out
    }

    /// The CEL environment the programs were compiled for.
    pub fn env(&self) -> &Arc<cel::Env> {
        &self.env
    }

    /// The IP lists and GeoIP database loaded with this set.
    pub fn lists(&self) -> &Arc<Lists> {
        &self.lists
    }

    /// A CEL context to evaluate this set's programs in (set its variable
    /// resolver): a child scope of the set's root context, which holds the
    /// environment and `ip_in` answering from the set's lists.
    pub fn cel_context(&self) -> cel::Context<'_, '_> {
        self.cel_root.new_inner_scope()
    }
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("revision", &self.revision)
            .field("levels", &self.levels.len())
            .field("signals", &self.signals.len())
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
