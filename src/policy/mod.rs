//! Policies: load YAML files, validate them (a [`Report`] of every error and
//! warning, with file, line and caret), and compile them into a
//! [`PolicySet`]: CEL programs compiled once, rules indexed by action, and the
//! request paths the set reads (the decision cache key).

pub mod diag;
pub mod lint;
pub mod load;
pub mod schema;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

pub use diag::{Diagnostic, Location, Report, Severity, SourceFile};
use load::{Definitions, Sources, Spanned};
pub use load::{Effect, Mode};
use schema::{ReadPath, Scope, Underline};

use crate::glob::ActionIndex;
use crate::lists::{ListError, Lists, ListsConfig};

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
}

/// A risk signal.
#[derive(Debug)]
pub struct Signal {
    /// Unique id.
    pub id: Arc<str>,
    /// For people.
    pub description: Option<Arc<str>>,
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
    /// For people.
    pub description: Option<Arc<str>>,
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
    pub loaded_at: SystemTime,
    /// Unique per compiled set in this process (part of the cache key, so
    /// no answer of one set can be served under another).
    pub generation: u64,
    /// The assurance ladder, weakest first.
    pub levels: Vec<Level>,
    /// Signals in policy order.
    pub signals: Vec<Signal>,
    /// Rules in policy order.
    pub rules: Vec<Rule>,
    /// Rules by action.
    pub index: ActionIndex,
    /// Every request path any condition reads: the decision cache key.
    pub read_paths: Vec<ReadPath>,
    /// `read_paths` as the decision cache key reads them.
    pub key_tree: crate::request::key::KeyTree,
    /// Whether any signal is volatile (then rules reading `risk` are too).
    pub volatile_signals: bool,
    /// Whether any condition reads `history` (then decisions are recorded
    /// in `[history] enabled = "auto"` mode).
    pub reads_history: bool,
    /// The smallest step of the stepwise time reads of non-volatile
    /// conditions (see [`schema::Reads::now_step`]): the cache key holds
    /// `floor(now / step)`.
    pub time_step: Option<Duration>,
    /// acr value → level (foldhash: looked up on every decision and record).
    acr_levels: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
    env: Arc<cel::Env>,
    sources: Sources,
    /// The IP lists and GeoIP database loaded with the set.
    lists: Arc<Lists>,
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
    /// database is not read again).
    pub fn load_with(
        dir: &Path,
        lists: &ListsConfig,
        previous: Option<&PolicySet>,
    ) -> Result<(Self, Report), Report> {
        let mut report = Report::default();
        let defs = load::read_dir(dir, &mut report);
        let lists = match Lists::load(lists, Some(dir), previous.map(|p| &*p.lists)) {
            Ok(lists) => lists,
            Err(errors) => {
                for e in errors {
                    report.push(list_diagnostic(e));
                }
                Lists::declared(lists, Some(dir))
            }
        };
        let set = compile(defs, dir, Arc::new(lists), &mut report);
        match set {
            Some(set) if !report.has_errors() => Ok((set, report)),
            _ => Err(report),
        }
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
        let set = compile(defs, Path::new(""), lists, &mut report);
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
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let exact: Vec<&String> = rule.actions.iter().filter(|a| !a.contains('*')).collect();
            if exact.len() != rule.actions.len() {
                continue; // a glob is deliberate
            }
            // Only exact names are evidence that an action exists: a glob
            // such as `payments.*` or `*` matches typos too.
            let used = exact.iter().any(|a| {
                tested_actions.iter().any(|t| t == *a)
                    || self
                        .rules
                        .iter()
                        .enumerate()
                        .any(|(j, other)| j != i && other.actions.iter().any(|p| p == *a))
            });
            if !used {
                let candidates: Vec<&str> = tested_actions.iter().map(String::as_str).collect();
                let help = exact
                    .iter()
                    .find_map(|a| diag::did_you_mean(a, candidates.iter().copied()))
                    .unwrap_or_else(|| {
                        "add a test case for it (`stepup test`), or check the spelling".to_owned()
                    });
                out.push(
                    self.sources
                        .place(
                            Diagnostic::warning(format!(
                                "no test and no other rule uses the action{} of rule `{}`: {}",
                                if exact.len() == 1 { "" } else { "s" },
                                rule.id,
                                exact
                                    .iter()
                                    .map(|a| format!("`{a}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
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

static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

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

fn compile(
    defs: Definitions,
    dir: &Path,
    lists: Arc<Lists>,
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
        report.push(Diagnostic::error(format!(
            "cannot declare `history.count`: {e}"
        )));
    }
    let env = Arc::new(env);

    // The ladder: exactly one Levels document.
    let mut ladder = Vec::new();
    let mut acr_levels: HashMap<Arc<str>, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut level_names: HashMap<String, usize> = HashMap::new();
    match levels.as_slice() {
        [] => report.push(
            Diagnostic::error("the policy set has no `kind: Levels` document")
                .help("add one listing the assurance levels, weakest first, with their acr values"),
        ),
        [first, rest @ ..] => {
            for extra in rest {
                report.push(
                    sources
                        .error_at(&extra.at, "a second `kind: Levels` document")
                        .help(format!(
                            "a set has exactly one ladder; the first is in `{}`",
                            file_name(&sources, first.at.file)
                        )),
                );
            }
            for level in &first.levels {
                if level_names.contains_key(&level.name.value) {
                    report.push(sources.error_at(
                        &level.name,
                        format!("duplicate level `{}`", level.name.value),
                    ));
                    continue;
                }
                if level.acr.is_empty() {
                    report.push(
                        sources
                            .error_at(
                                &level.name,
                                format!("level `{}` has no acr values", level.name.value),
                            )
                            .help("list the acr values that count as this level"),
                    );
                }
                let rank = ladder.len();
                for acr in &level.acr {
                    let key: Arc<str> = Arc::from(acr.value.as_str());
                    if let Some(other) = acr_levels.insert(key, rank) {
                        let other = ladder.get(other).map_or("", |l: &Level| &l.name);
                        report.push(
                            sources
                                .error_at(
                                    acr,
                                    format!("acr value `{}` is already level `{other}`", acr.value),
                                )
                                .help("an acr value maps to exactly one level"),
                        );
                    }
                }
                level_names.insert(level.name.value.clone(), rank);
                ladder.push(Level {
                    name: Arc::from(level.name.value.as_str()),
                    acr: level
                        .acr
                        .iter()
                        .map(|a| Arc::from(a.value.as_str()))
                        .collect(),
                });
            }
        }
    }

    let mut ids: HashMap<String, Spanned<String>> = HashMap::new();
    let mut check_id = |id: &Spanned<String>, report: &mut Report| {
        if let Some(first) = ids.get(&id.value) {
            report.push(
                sources
                    .error_at(id, format!("duplicate id `{}`", id.value))
                    .help(format!(
                        "ids are unique across signals and rules; `{}` is first used at {}:{}",
                        id.value,
                        file_name(&sources, first.file),
                        first.location.line
                    )),
            );
        } else {
            ids.insert(id.value.clone(), id.clone());
        }
    };

    let mut read_paths: HashSet<ReadPath> = HashSet::new();
    let mut uses_ip_in = false;
    let mut reads_history = false;
    let mut time_step: Option<Duration> = None;
    let mut step = |reads: &schema::Reads| {
        if let Some(s) = reads.now_step {
            time_step = Some(time_step.map_or(s, |t| t.min(s)));
        }
    };
    let mut compiled_signals = Vec::with_capacity(signals.len());
    // Where each compiled signal and rule is defined, for warnings.
    let mut signal_ids: Vec<Spanned<String>> = Vec::with_capacity(signals.len());
    let mut rule_ids: Vec<Spanned<String>> = Vec::with_capacity(rules.len());
    for s in signals {
        check_id(&s.id, report);
        let Some(when) = &s.when else { continue };
        if let Some((cond, reads)) = condition(
            &env,
            &sources,
            when,
            &s.id.value,
            Scope::Signal,
            &lists,
            report,
        ) {
            if !s.valid {
                continue;
            }
            step(&reads);
            read_paths.extend(reads.paths);
            reads_history |= reads.history;
            uses_ip_in |= reads.ip_lists;
            signal_ids.push(s.id.clone());
            compiled_signals.push(Signal {
                id: Arc::from(s.id.value.as_str()),
                description: s.description.map(Arc::from),
                when: Condition {
                    volatile: reads.now || reads.history,
                    ..cond
                },
                score: s.score,
            });
        }
    }
    let volatile_signals = compiled_signals.iter().any(|s| s.when.volatile);

    let mut compiled_rules = Vec::with_capacity(rules.len());
    let mut index = ActionIndex::default();
    for r in rules {
        check_id(&r.id, report);
        let when = match &r.when {
            Some(w) => match condition(&env, &sources, w, &r.id.value, Scope::Rule, &lists, report)
            {
                Some((cond, reads)) => {
                    if r.valid {
                        step(&reads);
                        read_paths.extend(reads.paths);
                        reads_history |= reads.history;
                        uses_ip_in |= reads.ip_lists;
                    }
                    Some(Condition {
                        volatile: reads.now || reads.history || (reads.risk && volatile_signals),
                        ..cond
                    })
                }
                // Reported; go on checking the rest of the rule.
                None => None,
            },
            None => None,
        };
        let requirement = match &r.require {
            Some(req) => {
                let level = match &req.level {
                    Some(name) => match level_names.get(&name.value) {
                        Some(rank) => Some(*rank),
                        None => {
                            report.push(
                                sources
                                    .error_at(name, format!("unknown level `{}`", name.value))
                                    .rule(&r.id.value)
                                    .maybe_help(
                                        diag::did_you_mean(
                                            &name.value,
                                            level_names.keys().map(String::as_str),
                                        )
                                        .or_else(|| {
                                            Some(levels_help(
                                                ladder.iter().map(|l| &*l.name),
                                                levels.is_empty(),
                                            ))
                                        }),
                                    ),
                            );
                            continue;
                        }
                    },
                    None => None,
                };
                Some(Requirement {
                    level,
                    methods: req.methods.iter().map(|m| Arc::from(m.as_str())).collect(),
                    max_age: req.max_age,
                })
            }
            None => None,
        };
        if !r.valid || (r.when.is_some() && when.is_none()) {
            continue;
        }
        let rank = compiled_rules.len();
        for a in &r.actions {
            index.insert(&a.value, rank);
        }
        let message = r
            .message
            .clone()
            .or_else(|| r.description.clone())
            .unwrap_or_else(|| r.id.value.clone());
        rule_ids.push(r.id.clone());
        compiled_rules.push(Rule {
            id: Arc::from(r.id.value.as_str()),
            description: r.description.map(Arc::from),
            actions: r.actions.into_iter().map(|a| a.value).collect(),
            when,
            effect: r.effect,
            requirement,
            message: Arc::from(message.as_str()),
            mode: r.mode.unwrap_or(Mode::Enforce),
            defined_at: r.id.clone(),
        });
    }

    let mut read_paths: Vec<ReadPath> = read_paths.into_iter().collect();
    read_paths.sort();
    // A path already covered by a shorter one (`device` covers
    // `device.trusted`) adds nothing to the key.
    let mut covered: Vec<ReadPath> = Vec::with_capacity(read_paths.len());
    for p in read_paths {
        if !covered.iter().any(|c| p.starts_with(c)) {
            covered.push(p);
        }
    }

    if report.has_errors() {
        return None;
    }
    lint::warn(
        &compiled_signals,
        &compiled_rules,
        &signal_ids,
        &rule_ids,
        &sources,
        report,
    );
    let mut cel_root = cel::Context::with_env(Arc::clone(&env));
    if uses_ip_in {
        crate::lists::add_ip_in(&mut cel_root, &lists);
    }
    Some(PolicySet {
        revision: revision(&sources, dir, &lists),
        loaded_at: SystemTime::now(),
        generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        levels: ladder,
        signals: compiled_signals,
        rules: compiled_rules,
        index,
        key_tree: crate::request::key::KeyTree::new(&covered),
        read_paths: covered,
        volatile_signals,
        reads_history,
        time_step,
        acr_levels,
        env,
        sources,
        lists,
        cel_root,
    })
}

/// A list or database problem as a policy diagnostic: at the file, line and
/// column of a bad line, with the line and a caret.
fn list_diagnostic(e: ListError) -> Diagnostic {
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
            let mut d = Diagnostic::error(message.clone());
            d.file = Some(path.clone());
            d.location = Some(Location {
                line: *line,
                column: *column,
                len: *len,
            });
            d.source_line = Some(Arc::from(source_line.as_str()));
            d
        }
        ListError::More { path, count } => {
            Diagnostic::error(format!("{count} more bad lines not shown")).in_file(path)
        }
        ListError::Read {
            what,
            path,
            message,
        } => Diagnostic::error(format!("cannot read {what}: {message}")).in_file(path),
        ListError::GeoIp { path, message } => {
            Diagnostic::error(format!("invalid GeoIP database: {message}")).in_file(path)
        }
        ListError::Name { name, path } => {
            Diagnostic::error(format!("invalid IP list name `{name}`")).in_file(path)
        }
        ListError::Duplicate { second, .. } => Diagnostic::error(e.to_string()).in_file(second),
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

/// Compiles and schema-checks one expression, reporting problems at their
/// column in the policy file.
fn condition(
    env: &Arc<cel::Env>,
    sources: &Sources,
    when: &Spanned<String>,
    id: &str,
    scope: Scope,
    lists: &Arc<Lists>,
    report: &mut Report,
) -> Option<(Condition, schema::Reads)> {
    let program = match env.compile(&when.value) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors.errors {
                // `pos` is (1-based line, 1-based column) in the expression.
                let line = usize::try_from(e.pos.0).unwrap_or(1).max(1);
                let col = usize::try_from(e.pos.1).unwrap_or(1).saturating_sub(1);
                let offset = char_offset_of(&when.value, line, col);
                let loc = locate_error(sources, when, offset);
                report.push(
                    sources
                        .place(
                            Diagnostic::error(format!("invalid CEL: {}", e.msg)),
                            when.file,
                            loc,
                        )
                        .rule(id),
                );
            }
            return None;
        }
    };
    let ip_lists: Vec<&str> = lists.names().collect();
    match schema::check_in(program.expression(), scope, &ip_lists, Some(env)) {
        Ok(mut reads) => Some((
            Condition {
                source: Arc::from(when.value.as_str()),
                fast: crate::expr::fast::Fast::compile(program.expression(), env, lists),
                program,
                volatile: false,
                reads_risk: reads.risk,
                time_zones: std::mem::take(&mut reads.time_zones).into(),
            },
            reads,
        )),
        Err(errors) => {
            for e in errors {
                let (start, stop) = program
                    .source_info()
                    .offset_for(e.expr_id)
                    .unwrap_or((0, 0));
                let start = usize::try_from(start).unwrap_or(0);
                // `stop` is inclusive; a select's node sits at its dot.
                let (start, len) = match &e.underline {
                    Underline::Field(field) => (start + 1, field.chars().count()),
                    Underline::Callee(name) => {
                        let len = name.chars().count();
                        (start.saturating_sub(len), len)
                    }
                    Underline::Node => (
                        start,
                        usize::try_from(stop).unwrap_or(0).saturating_sub(start) + 1,
                    ),
                };
                let loc = locate(sources, when, start, len);
                report.push(
                    sources
                        .place(Diagnostic::error(e.message), when.file, loc)
                        .rule(id)
                        .maybe_help(e.help),
                );
            }
            None
        }
    }
}

/// The char offset of (1-based `line`, 0-based `col`) in `text`.
fn char_offset_of(text: &str, line: usize, col: usize) -> usize {
    let before: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(|l| l.chars().count())
        .sum();
    before + col
}

/// Where a syntax error at char `offset` of the expression `when` sits in its
/// file. At the end of the expression (`foo(1` missing its `)`), the parser
/// points past the last character, where there is no text to look up: the
/// caret goes just after the last non-blank character, on its line.
fn locate_error(sources: &Sources, when: &Spanned<String>, offset: usize) -> Location {
    let chars: Vec<char> = when.value.chars().collect();
    let rest_is_blank = chars
        .get(offset..)
        .is_none_or(|rest| rest.iter().all(|c| c.is_whitespace()));
    if !rest_is_blank {
        return locate(sources, when, offset, 1);
    }
    let Some(last) = chars.iter().take(offset).rposition(|c| !c.is_whitespace()) else {
        return locate(sources, when, offset, 1);
    };
    find(sources, when, last, 1).map_or_else(
        || locate(sources, when, offset, 1),
        |at| Location {
            column: at.column + 1,
            len: 1,
            ..at
        },
    )
}

/// Finds where char `offset` of the expression `when` sits in its file. The
/// text at the offset is looked up in the source from the scalar's start,
/// skipping as many earlier occurrences as the expression has before the
/// offset: this works for plain, quoted, literal and folded scalars alike
/// (folding turns newlines into spaces, so line-by-line matching would not).
/// When the text cannot be found (escapes in a quoted scalar), the scalar's
/// start is used.
fn locate(sources: &Sources, when: &Spanned<String>, offset: usize, len: usize) -> Location {
    find(sources, when, offset, len).unwrap_or(Location {
        len: 1,
        ..when.location
    })
}

/// [`locate`], `None` when the text is not found.
fn find(sources: &Sources, when: &Spanned<String>, offset: usize, len: usize) -> Option<Location> {
    let file = sources.files.get(when.file)?;
    let expr: Vec<char> = when.value.chars().collect();
    let end = offset.saturating_add(len.max(1)).min(expr.len());
    let needle = expr
        .get(offset..end)
        .map(|c| c.iter().collect::<String>())?;
    if needle.trim().is_empty() {
        return None;
    }
    let before: String = expr.iter().take(offset).collect();
    let mut skip = before.matches(needle.as_str()).count();
    let first_line = when.location.line;
    let mut min_col = when.location.column.saturating_sub(1);
    for line_no in first_line..=file.text.lines().count() {
        let Some(src) = file.line(line_no) else { break };
        let mut from_byte = src
            .char_indices()
            .nth(min_col)
            .map_or(src.len(), |(b, _)| b);
        min_col = 0;
        while let Some(at) = src.get(from_byte..).and_then(|s| s.find(needle.as_str())) {
            let abs = from_byte + at;
            if skip == 0 {
                let column = src.get(..abs).map_or(0, |s| s.chars().count()) + 1;
                return Some(Location {
                    line: line_no,
                    column,
                    len: needle.chars().count(),
                });
            }
            skip -= 1;
            from_byte = abs + needle.len();
        }
    }
    None
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

#[cfg(test)]
mod tests;
