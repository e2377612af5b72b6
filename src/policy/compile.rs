//! Compiling what was read into a [`PolicySet`]: the ladder of levels, ids
//! checked unique, every condition compiled and schema-checked, rules
//! indexed by action, and the request paths the set reads (the decision
//! cache key). Every problem is reported; a set is built only without
//! errors.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::condition::{Setting, Source, condition};
use super::cost::{ConditionCost, CostLimits};
use super::defs::{Definitions, LevelsDef, Mode, RuleDef, SignalDef, Sources, Spanned};
use super::diag::{Code, Diagnostic, Location, Report, did_you_mean};
use super::index::ActionIndex;
use super::schema::{self, ReadPath, Scope};
use super::{Condition, Level, PolicySet, Requirement, Rule, Signal, lint};
use crate::lists::{ListError, Lists};

/// Unique per compiled set in this process.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// acr value → level (foldhash: looked up on every decision and record).
type AcrLevels = HashMap<Arc<str>, usize, foldhash::fast::RandomState>;

/// Compiles `defs`, read from `dir`; `None` when anything is wrong (every
/// problem is in `report`).
pub(super) fn compile(
    defs: Definitions,
    dir: &Path,
    lists: Arc<Lists>,
    limits: CostLimits,
    report: &mut Report,
) -> Option<PolicySet> {
    let Definitions {
        sources,
        levels,
        signals,
        rules,
    } = defs;
    if sources.files.is_empty() {
        return None;
    }
    let mut env = cel::Env::stdlib();
    if let Err(e) = crate::expr::history::register(&mut env) {
        report.push(Diagnostic::error(
            Code::Internal,
            format!("cannot declare `history.count`: {e}"),
        ));
    }
    let ladder = Ladder::build(&sources, &levels, report);
    let mut c = Compiler {
        env: Arc::new(env),
        sources: &sources,
        lists: &lists,
        limits,
        signal_count: signals.len() as u64,
        ids: HashMap::new(),
        reads: SetReads::default(),
        costs: Vec::new(),
        report,
    };
    let signals = c.signals(signals);
    let volatile_signals = signals.compiled.iter().any(|s| s.when.volatile);
    let rules = c.rules(rules, &ladder, levels.is_empty(), volatile_signals);
    let Compiler {
        env, reads, costs, ..
    } = c;
    let read_paths = covering(reads.paths);

    if report.has_errors() {
        return None;
    }
    lint::warn(
        &signals.compiled,
        &rules.compiled,
        &signals.ids,
        &rules.ids,
        &sources,
        report,
    );
    let mut cel_root = cel::Context::with_env(Arc::clone(&env));
    if reads.ip_in {
        crate::lists::add_ip_in(&mut cel_root, &lists);
    }
    if reads.matches {
        crate::expr::matches::add_matches(&mut cel_root, &Arc::new(reads.regexes));
    }
    let signals_cost = signals.compiled.iter().map(|s| s.when.cost).sum::<u64>();
    let rules_cost = rules
        .compiled
        .iter()
        .filter_map(|r| r.when.as_ref().map(|w| w.cost))
        .sum::<u64>();
    Some(PolicySet {
        revision: revision(&sources, dir, &lists),
        signals_cost,
        total_cost: signals_cost.saturating_add(rules_cost),
        loaded_at: SystemTime::now(),
        generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        levels: ladder.levels,
        signals: signals.compiled,
        rules: rules.compiled,
        index: rules.index,
        key_tree: crate::request::key::KeyTree::new(&read_paths),
        #[cfg(test)]
        read_paths,
        reads_history: reads.history,
        time_step: reads.time_step,
        acr_levels: ladder.acr,
        env,
        sources,
        lists,
        cel_root,
        cost_limits: limits,
        costs,
    })
}

/// The assurance ladder of the set's one `kind: Levels` document.
#[derive(Default)]
struct Ladder {
    /// Weakest first.
    levels: Vec<Level>,
    acr: AcrLevels,
    /// Level name → rank.
    names: HashMap<String, usize>,
}

impl Ladder {
    fn build(sources: &Sources, docs: &[LevelsDef], report: &mut Report) -> Self {
        let mut ladder = Self::default();
        let Some((first, rest)) = docs.split_first() else {
            report.push(
                Diagnostic::error(
                    Code::NoLevels,
                    "the policy set has no `kind: Levels` document",
                )
                .help("add one listing the assurance levels, weakest first, with their acr values"),
            );
            return ladder;
        };
        for extra in rest {
            report.push(
                sources
                    .error_at(
                        &extra.at,
                        Code::DuplicateLadder,
                        "a second `kind: Levels` document",
                    )
                    .help(format!(
                        "a set has exactly one ladder; the first is in `{}`",
                        file_name(sources, first.at.file)
                    )),
            );
        }
        for level in &first.levels {
            let name = &level.name;
            if ladder.names.contains_key(&name.value) {
                report.push(sources.error_at(
                    name,
                    Code::DuplicateLevel,
                    format!("duplicate level `{}`", name.value),
                ));
                continue;
            }
            if level.acr.is_empty() {
                report.push(
                    sources
                        .error_at(
                            name,
                            Code::EmptyLevel,
                            format!("level `{}` has no acr values", name.value),
                        )
                        .help("list the acr values that count as this level"),
                );
            }
            let rank = ladder.levels.len();
            for acr in &level.acr {
                if let Some(other) = ladder.acr.insert(Arc::from(acr.value.as_str()), rank) {
                    let other = ladder.levels.get(other).map_or("", |l| &*l.name);
                    report.push(
                        sources
                            .error_at(
                                acr,
                                Code::DuplicateAcr,
                                format!("acr value `{}` is already level `{other}`", acr.value),
                            )
                            .help("an acr value maps to exactly one level"),
                    );
                }
            }
            ladder.names.insert(name.value.clone(), rank);
            ladder.levels.push(Level {
                name: Arc::from(name.value.as_str()),
                acr: level
                    .acr
                    .iter()
                    .map(|a| Arc::from(a.value.as_str()))
                    .collect(),
            });
        }
        ladder
    }
}

/// What the set's valid conditions read, together.
#[derive(Default)]
struct SetReads {
    paths: HashSet<ReadPath>,
    ip_in: bool,
    history: bool,
    /// The smallest step of stepwise time reads.
    time_step: Option<Duration>,
    /// Whether any condition calls `matches`.
    matches: bool,
    /// The `matches` patterns written in the conditions, compiled.
    regexes: crate::expr::matches::Regexes,
}

impl SetReads {
    fn add(&mut self, reads: schema::Reads) {
        self.matches |= !reads.regexes.is_empty() || !reads.dynamic_regexes.is_empty();
        for r in reads.regexes {
            self.regexes.insert(&r.pattern, r.regex);
        }
        if let Some(s) = reads.now_step {
            self.time_step = Some(self.time_step.map_or(s, |t| t.min(s)));
        }
        self.paths.extend(reads.paths);
        self.history |= reads.history;
        self.ip_in |= reads.ip_lists;
    }
}

/// Compiled signals or rules, with where each one's id is written (for
/// warnings).
struct Compiled<T> {
    compiled: Vec<T>,
    ids: Vec<Spanned<String>>,
}

/// Compiled rules and their index by action.
struct CompiledRules {
    compiled: Vec<Rule>,
    ids: Vec<Spanned<String>>,
    index: ActionIndex,
}

struct Compiler<'a> {
    env: Arc<cel::Env>,
    sources: &'a Sources,
    lists: &'a Arc<Lists>,
    limits: CostLimits,
    /// Signals in the set (the length of `risk.signals`).
    signal_count: u64,
    /// Ids seen so far (signals and rules share one namespace).
    ids: HashMap<String, Spanned<String>>,
    reads: SetReads,
    /// The estimates of the compiled conditions.
    costs: Vec<ConditionCost>,
    report: &'a mut Report,
}

impl Compiler<'_> {
    fn check_id(&mut self, id: &Spanned<String>) {
        if let Some(first) = self.ids.get(&id.value) {
            self.report.push(
                self.sources
                    .error_at(
                        id,
                        Code::DuplicateId,
                        format!("duplicate id `{}`", id.value),
                    )
                    .help(format!(
                        "ids are unique across signals and rules; `{}` is first used at {}:{}",
                        id.value,
                        file_name(self.sources, first.file),
                        first.location.line
                    )),
            );
        } else {
            self.ids.insert(id.value.clone(), id.clone());
        }
    }

    fn condition(
        &mut self,
        when: &Spanned<String>,
        id: &str,
        scope: Scope,
        dynamic_regex: bool,
    ) -> Option<(Condition, schema::Reads)> {
        let set = Setting {
            env: &self.env,
            sources: self.sources,
            lists: self.lists,
            limits: self.limits,
            signals: self.signal_count,
        };
        let src = Source {
            when,
            id,
            scope,
            dynamic_regex,
        };
        condition(&set, &src, self.report)
    }

    /// Notes a compiled condition's estimate.
    fn cost(&mut self, kind: &'static str, id: &str, when: &Spanned<String>, cost: u64) {
        self.costs.push(ConditionCost {
            kind,
            id: Arc::from(id),
            file: self
                .sources
                .files
                .get(when.file)
                .map(|f| f.path.clone())
                .unwrap_or_default(),
            line: when.location.line,
            cost,
        });
    }

    fn signals(&mut self, signals: Vec<SignalDef>) -> Compiled<Signal> {
        let mut out = Compiled {
            compiled: Vec::with_capacity(signals.len()),
            ids: Vec::with_capacity(signals.len()),
        };
        for s in signals {
            self.check_id(&s.id);
            let Some(when) = &s.when else { continue };
            let Some((cond, reads)) =
                self.condition(when, &s.id.value, Scope::Signal, s.dynamic_regex)
            else {
                continue;
            };
            if !s.valid {
                continue;
            }
            self.cost("signal", &s.id.value, when, cond.cost);
            let volatile = reads.now || reads.history;
            self.reads.add(reads);
            out.ids.push(s.id.clone());
            out.compiled.push(Signal {
                id: Arc::from(s.id.value.as_str()),
                when: Condition { volatile, ..cond },
                score: s.score,
            });
        }
        out
    }

    fn rules(
        &mut self,
        rules: Vec<RuleDef>,
        ladder: &Ladder,
        no_levels_document: bool,
        volatile_signals: bool,
    ) -> CompiledRules {
        let mut out = CompiledRules {
            compiled: Vec::with_capacity(rules.len()),
            ids: Vec::with_capacity(rules.len()),
            index: ActionIndex::default(),
        };
        for r in rules {
            self.check_id(&r.id);
            let when = r.when.as_ref().and_then(|w| {
                // A condition that does not compile is reported; the rest of
                // the rule is still checked.
                let (cond, reads) = self.condition(w, &r.id.value, Scope::Rule, r.dynamic_regex)?;
                let volatile = reads.now || reads.history || (reads.risk && volatile_signals);
                if r.valid {
                    self.reads.add(reads);
                    self.cost("rule", &r.id.value, w, cond.cost);
                }
                Some(Condition { volatile, ..cond })
            });
            let requirement = match &r.require {
                Some(req) => {
                    match self.level(req.level.as_ref(), &r.id.value, ladder, no_levels_document) {
                        Ok(level) => Some(Requirement {
                            level,
                            methods: req.methods.iter().map(|m| Arc::from(m.as_str())).collect(),
                            max_age: req.max_age,
                        }),
                        Err(Unknown) => continue,
                    }
                }
                None => None,
            };
            if !r.valid || (r.when.is_some() && when.is_none()) {
                continue;
            }
            let rank = out.compiled.len();
            for a in &r.actions {
                out.index.insert(&a.value, rank);
            }
            let message = r
                .message
                .clone()
                .or_else(|| r.description.clone())
                .unwrap_or_else(|| r.id.value.clone());
            out.ids.push(r.id.clone());
            out.compiled.push(Rule {
                id: Arc::from(r.id.value.as_str()),
                actions: r.actions.into_iter().map(|a| a.value).collect(),
                when,
                effect: r.effect,
                requirement,
                message: Arc::from(message.as_str()),
                mode: r.mode.unwrap_or(Mode::Enforce),
                defined_at: r.id.clone(),
            });
        }
        out
    }

    /// The rank of a requirement's level, `Ok(None)` when it names none.
    fn level(
        &mut self,
        name: Option<&Spanned<String>>,
        rule: &str,
        ladder: &Ladder,
        no_levels_document: bool,
    ) -> Result<Option<usize>, Unknown> {
        let Some(name) = name else { return Ok(None) };
        if let Some(rank) = ladder.names.get(&name.value) {
            return Ok(Some(*rank));
        }
        let help = did_you_mean(&name.value, ladder.names.keys().map(String::as_str))
            .unwrap_or_else(|| {
                levels_help(ladder.levels.iter().map(|l| &*l.name), no_levels_document)
            });
        self.report.push(
            self.sources
                .error_at(
                    name,
                    Code::UnknownLevel,
                    format!("unknown level `{}`", name.value),
                )
                .rule(rule)
                .help(help),
        );
        Err(Unknown)
    }
}

/// A name that was reported unknown.
struct Unknown;

/// The paths, sorted, without those a shorter one covers (`device` covers
/// `device.trusted`): they add nothing to the cache key. Sorted, the paths
/// a path covers follow it directly, so only the last one kept can cover
/// the next.
fn covering(paths: HashSet<ReadPath>) -> Vec<ReadPath> {
    let mut paths: Vec<ReadPath> = paths.into_iter().collect();
    paths.sort();
    let mut covered: Vec<ReadPath> = Vec::with_capacity(paths.len());
    for p in paths {
        if !covered.last().is_some_and(|c| p.starts_with(c)) {
            covered.push(p);
        }
    }
    covered
}

/// A list or database problem as a policy diagnostic: at the file, line and
/// column of a bad line, with the line and a caret.
pub(super) fn list_diagnostic(e: ListError) -> Diagnostic {
    let help = e.help();
    let d = match &e {
        ListError::Line {
            path,
            line,
            column,
            len,
            source_line,
            message,
            ..
        } => {
            let mut d = Diagnostic::error(Code::InvalidList, message.clone());
            d.file = Some(path.clone());
            d.location = Some(Location {
                line: *line,
                column: *column,
                len: *len,
            });
            d.source_line = Some(Arc::from(source_line.as_str()));
            d
        }
        ListError::More { path, count } => Diagnostic::error(
            Code::InvalidList,
            format!("{count} more bad lines not shown"),
        )
        .in_file(path),
        ListError::Read {
            what,
            path,
            message,
        } => Diagnostic::error(
            Code::UnreadableFile,
            format!("cannot read {what}: {message}"),
        )
        .in_file(path),
        ListError::GeoIp { path, message } => Diagnostic::error(
            Code::InvalidGeoip,
            format!("invalid GeoIP database: {message}"),
        )
        .in_file(path),
        ListError::Name { name, path } => {
            Diagnostic::error(Code::InvalidList, format!("invalid IP list name `{name}`"))
                .in_file(path)
        }
        ListError::Duplicate { second, .. } => {
            Diagnostic::error(Code::DuplicateList, e.to_string()).in_file(second)
        }
    };
    d.maybe_help(help)
}

/// The help for an unknown level: the levels there are, or how to define
/// some when there are none (`no_document`: the set has no `kind: Levels`
/// document at all).
fn levels_help<'a>(names: impl Iterator<Item = &'a str>, no_document: bool) -> String {
    let mut names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    names.sort_unstable();
    if !names.is_empty() {
        format!("the levels are {}", names.join(", "))
    } else if no_document {
        "the set defines no levels: add a `kind: Levels` document listing them, weakest first"
            .to_owned()
    } else {
        "the set defines no levels: list them under `levels:` in its `kind: Levels` document"
            .to_owned()
    }
}

fn file_name(sources: &Sources, file: usize) -> String {
    sources
        .files
        .get(file)
        .map(|f| f.path.display().to_string())
        .unwrap_or_default()
}
fn revision(sources: &Sources, dir: &Path, lists: &Lists) -> Arc<str> {
    let mut h = Sha256::new();
    // Without lists the revision is the files' alone, as it always was.
    if !lists.is_empty() {
        h.update(b"lists\0");
        h.update(lists.digest());
    }
    for f in &sources.files {
        let rel = f.path.strip_prefix(dir).unwrap_or(&f.path);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(f.text.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256:");
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    Arc::from(hex)
}
