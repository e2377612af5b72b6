//! Reading policy files: every `*.yaml`/`*.yml` under a directory, each
//! document checked key by key (unknown keys, wrong types, missing fields)
//! with its position kept, so that every problem is reported at once with
//! file, line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use saphyr::{Scalar, YamlData};

pub use super::defs::*;
use super::diag::{Code, Diagnostic, Report, SourceFile, did_you_mean};
use super::yaml::{self, Node, get, location};
use crate::duration::parse_duration;

/// Lists the policy files under `dir`, sorted, skipping hidden entries and
/// test suites (`*_test.yaml`).
pub fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, Box<Diagnostic>> {
    let policy = |name: &str| {
        (name.ends_with(".yaml") || name.ends_with(".yml"))
            && !name.ends_with("_test.yaml")
            && !name.ends_with("_test.yml")
    };
    yaml::files(dir, &policy).map_err(|e| {
        Box::new(
            Diagnostic::error(
                Code::UnreadableFile,
                format!("cannot read policy directory `{}`: {e}", dir.display()),
            )
            .help("pass a directory of *.yaml policy files with --policies"),
        )
    })
}

/// Reads and checks every policy file under `dir`. Problems go to `report`;
/// what could be read is returned either way.
pub fn read_dir(dir: &Path, report: &mut Report) -> Definitions {
    let mut defs = Definitions::default();
    let files = match policy_files(dir) {
        Ok(files) => files,
        Err(d) => {
            report.push(*d);
            return defs;
        }
    };
    if files.is_empty() {
        report.push(no_policy_files(dir));
    }
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push(SourceFile { path, text }),
            Err(e) => report.push(
                Diagnostic::error(
                    Code::UnreadableFile,
                    format!("cannot read policy file: {e}"),
                )
                .in_file(&path),
            ),
        }
    }
    defs.sources.files = sources;
    read_all(&mut defs, report);
    defs
}

/// Checks policy files held in memory (their paths as if under `dir`, for
/// the diagnostics and the revision), exactly as [`read_dir`] checks the
/// files it reads: an editor or the playground sees what `check` would.
pub fn read_sources(dir: &Path, files: Vec<SourceFile>, report: &mut Report) -> Definitions {
    if files.is_empty() {
        report.push(no_policy_files(dir));
    }
    let mut defs = Definitions::default();
    defs.sources.files = files;
    read_all(&mut defs, report);
    defs
}

fn no_policy_files(dir: &Path) -> Diagnostic {
    Diagnostic::error(
        Code::NoPolicyFiles,
        format!("no policy files in `{}`", dir.display()),
    )
    .help("policy files end in .yaml or .yml")
}

fn read_all(defs: &mut Definitions, report: &mut Report) {
    for index in 0..defs.sources.files.len() {
        read_file(defs, index, report);
    }
}

/// Reads the policy documents of one in-memory file (used by tests and by
/// tools that hold policies in memory).
pub fn read_str(path: &str, text: &str, report: &mut Report) -> Definitions {
    let mut defs = Definitions::default();
    defs.sources.files.push(SourceFile {
        path: PathBuf::from(path),
        text: text.to_owned(),
    });
    read_file(&mut defs, 0, report);
    defs
}

fn read_file(defs: &mut Definitions, index: usize, report: &mut Report) {
    let Some(file) = defs.sources.files.get(index) else {
        return;
    };
    let Some(docs) = yaml::documents(file, report) else {
        return;
    };
    let mut reader = Reader {
        y: yaml::Reader::new(file, report),
        index,
    };
    let mut levels = Vec::new();
    let mut signals = Vec::new();
    let mut rules = Vec::new();
    for doc in &docs {
        reader.document(doc, &mut levels, &mut signals, &mut rules);
    }
    defs.levels.extend(levels);
    defs.signals.extend(signals);
    defs.rules.extend(rules);
}

/// The YAML reader of one policy file, which also knows the file's index
/// (for [`Spanned`] values).
struct Reader<'a> {
    y: yaml::Reader<'a>,
    index: usize,
}

impl Reader<'_> {
    fn spanned<T>(&self, node: &Node<'_>, value: T) -> Spanned<T> {
        Spanned {
            value,
            file: self.index,
            location: location(node),
        }
    }

    fn spanned_string(&mut self, node: &Node<'_>, what: &str) -> Option<Spanned<String>> {
        self.y.string(node, what).map(|s| self.spanned(node, s))
    }

    /// A list of strings with their positions: the entries that are strings
    /// (the others are reported).
    fn string_list(&mut self, node: &Node<'_>, what: &str) -> Option<Vec<Spanned<String>>> {
        let list = self.y.string_list(node, what, false)?;
        Some(
            list.items
                .into_iter()
                .map(|(value, location)| Spanned {
                    value,
                    file: self.index,
                    location,
                })
                .collect(),
        )
    }

    fn error(&self, node: &Node<'_>, code: Code, message: impl Into<String>) -> Diagnostic {
        self.y.error(node, code, message)
    }

    fn push(&mut self, d: Diagnostic) {
        self.y.push(d);
    }

    fn document(
        &mut self,
        doc: &Node<'_>,
        levels: &mut Vec<LevelsDef>,
        signals: &mut Vec<SignalDef>,
        rules: &mut Vec<RuleDef>,
    ) {
        const KEYS: &[&str] = &[
            "apiVersion",
            "kind",
            "name",
            "description",
            "levels",
            "signals",
            "rules",
            "mode",
        ];
        let Some(entries) = self.y.mapping(doc, "a policy document", KEYS) else {
            return;
        };
        self.api_version(doc, get(&entries, "apiVersion"));
        let Some(kind_node) = get(&entries, "kind") else {
            let d = self
                .error(doc, Code::MissingKey, "document is missing `kind`")
                .help("use `kind: Levels` or `kind: Policy`");
            self.push(d);
            return;
        };
        let kind = self.y.string(kind_node, "`kind`");
        match kind.as_deref() {
            Some("Levels") => levels.push(self.levels_document(doc, kind_node, &entries)),
            Some("Policy") => self.policy_document(doc, &entries, signals, rules),
            Some(other) => {
                let d = self
                    .error(
                        kind_node,
                        Code::UnknownKind,
                        format!("unknown kind `{other}`"),
                    )
                    .maybe_help(did_you_mean(other, ["Levels", "Policy"]))
                    .help("use `kind: Levels` or `kind: Policy`");
                self.push(d);
            }
            None => {}
        }
    }

    fn api_version(&mut self, doc: &Node<'_>, node: Option<&Node<'_>>) {
        match node {
            Some(v) => {
                if let Some(s) = self.y.string(v, "`apiVersion`")
                    && s != API_VERSION
                {
                    let d = self
                        .error(
                            v,
                            Code::UnsupportedApiVersion,
                            format!("unsupported apiVersion `{s}`"),
                        )
                        .help(format!("use `apiVersion: {API_VERSION}`"));
                    self.push(d);
                }
            }
            None => {
                let d = self
                    .error(doc, Code::MissingKey, "document is missing `apiVersion`")
                    .help(format!("add `apiVersion: {API_VERSION}`"));
                self.push(d);
            }
        }
    }

    fn levels_document(
        &mut self,
        doc: &Node<'_>,
        kind_node: &Node<'_>,
        entries: &[(&str, &Node<'_>)],
    ) -> LevelsDef {
        for key in ["signals", "rules", "name"] {
            if let Some(n) = get(entries, key) {
                let d = self.error(
                    n,
                    Code::MisplacedKey,
                    format!("`{key}` belongs in a `kind: Policy` document"),
                );
                self.push(d);
            }
        }
        let mut out = Vec::new();
        if let Some(list) = self.y.required(entries, "levels", doc, "a Levels document") {
            self.levels(list, &mut out);
        }
        LevelsDef {
            levels: out,
            at: self.spanned(kind_node, ()),
        }
    }

    fn policy_document(
        &mut self,
        doc: &Node<'_>,
        entries: &[(&str, &Node<'_>)],
        signals: &mut Vec<SignalDef>,
        rules: &mut Vec<RuleDef>,
    ) {
        if let Some(n) = get(entries, "levels") {
            let d = self.error(
                n,
                Code::MisplacedKey,
                "`levels` belongs in the `kind: Levels` document",
            );
            self.push(d);
        }
        if let Some(n) = get(entries, "name") {
            self.y.string(n, "`name`");
        } else {
            let d = self.error(doc, Code::MissingKey, "policy is missing `name`");
            self.push(d);
        }
        if let Some(list) = get(entries, "signals") {
            self.each(list, "`signals`", |r, n| {
                if let Some(s) = r.signal(n) {
                    signals.push(s);
                }
            });
        }
        let policy_mode = get(entries, "mode").and_then(|n| self.mode(n));
        if policy_mode == Some(Mode::Shadow)
            && let Some(n) = get(entries, "signals")
        {
            let d = Diagnostic::warning(
                Code::ShadowSignals,
                "`mode: shadow` applies to the policy's rules; its signals count as usual",
            )
            .at(self.y.file, location(n))
            .help("move signals you do not want counted yet to their own policy, or remove them");
            self.push(d);
        }
        if let Some(list) = get(entries, "rules") {
            self.each(list, "`rules`", |r, n| {
                if let Some(mut rule) = r.rule(n) {
                    if rule.mode.is_none() {
                        rule.mode = policy_mode;
                    }
                    rules.push(rule);
                }
            });
        }
    }

    fn each<'n, 'i>(
        &mut self,
        node: &'n Node<'i>,
        what: &str,
        mut f: impl FnMut(&mut Self, &'n Node<'i>),
    ) {
        match &node.data {
            YamlData::Sequence(items) => {
                for item in items {
                    f(self, item);
                }
            }
            YamlData::Value(Scalar::Null) => {}
            _ => {
                let d = self.error(node, Code::WrongType, format!("{what} must be a list"));
                self.push(d);
            }
        }
    }

    fn levels(&mut self, node: &Node<'_>, out: &mut Vec<LevelDef>) {
        self.each(node, "`levels`", |r, item| {
            let Some(entries) =
                r.y.mapping(item, "a level", &["name", "acr", "description"])
            else {
                return;
            };
            let name =
                r.y.required(&entries, "name", item, "level")
                    .and_then(|n| r.spanned_string(n, "`name`"));
            let acr =
                r.y.required(&entries, "acr", item, "level")
                    .and_then(|n| r.string_list(n, "`acr`"));
            if let Some(d) = get(&entries, "description") {
                r.y.string(d, "`description`");
            }
            if let (Some(name), Some(acr)) = (name, acr) {
                out.push(LevelDef { name, acr });
            }
        });
    }

    fn id(
        &mut self,
        entries: &[(&str, &Node<'_>)],
        item: &Node<'_>,
        what: &str,
    ) -> Option<Spanned<String>> {
        let node = self.y.required(entries, "id", item, what)?;
        let id = self.y.string(node, "`id`")?;
        if !valid_id(&id) {
            let d = self.error(node, Code::InvalidId, format!("invalid id `{id}`")).help(
                "ids are letters, digits, `-`, `_`, `.` and `:`, starting with a letter or digit",
            );
            self.push(d);
            return None;
        }
        Some(self.spanned(node, id))
    }

    /// A signal. Its diagnostics name it once its id is known to be valid:
    /// the id is looked up before the keys are checked, so that a bad key
    /// written before `id` is reported with it.
    fn signal(&mut self, item: &Node<'_>) -> Option<SignalDef> {
        self.y.rule = peek_id(item);
        let signal = self.signal_fields(item);
        self.y.rule = None;
        signal
    }

    fn signal_fields(&mut self, item: &Node<'_>) -> Option<SignalDef> {
        let entries = self.y.mapping(
            item,
            "a signal",
            &["id", "when", "score", "description", "dynamic_regex"],
        )?;
        let id = self.id(&entries, item, "signal")?;
        let when = self
            .y
            .required(&entries, "when", item, "signal")
            .and_then(|n| self.spanned_string(n, "`when`"));
        let score = match self.y.required(&entries, "score", item, "signal") {
            Some(n) => match &n.data {
                YamlData::Value(Scalar::Integer(i)) if (-100..=100).contains(i) => Some(*i),
                _ => {
                    let d = self.error(
                        n,
                        Code::InvalidScore,
                        "`score` must be a whole number from -100 to 100",
                    );
                    self.push(d);
                    None
                }
            },
            None => None,
        };
        // For people reading the file: checked, not kept.
        if let Some(d) = get(&entries, "description") {
            self.y.string(d, "`description`");
        }
        let dynamic_regex = self.flag(&entries, "dynamic_regex");
        Some(SignalDef {
            id,
            dynamic_regex,
            valid: when.is_some() && score.is_some(),
            when,
            score: score.unwrap_or(0),
        })
    }

    /// A rule, named by its diagnostics as a signal is.
    fn rule(&mut self, item: &Node<'_>) -> Option<RuleDef> {
        self.y.rule = peek_id(item);
        let rule = self.rule_fields(item);
        self.y.rule = None;
        rule
    }

    fn rule_fields(&mut self, item: &Node<'_>) -> Option<RuleDef> {
        const KEYS: &[&str] = &[
            "id",
            "description",
            "actions",
            "when",
            "effect",
            "require",
            "message",
            "mode",
            "dynamic_regex",
        ];
        let entries = self.y.mapping(item, "a rule", KEYS)?;
        let id = self.id(&entries, item, "rule")?;
        let description =
            get(&entries, "description").and_then(|n| self.y.string(n, "`description`"));
        let message = get(&entries, "message").and_then(|n| self.y.string(n, "`message`"));
        let mode = get(&entries, "mode").and_then(|n| self.mode(n));
        let when = get(&entries, "when").and_then(|n| self.spanned_string(n, "`when`"));
        let actions = self
            .y
            .required(&entries, "actions", item, "rule")
            .and_then(|n| self.actions(n));
        let effect = self
            .y
            .required(&entries, "effect", item, "rule")
            .and_then(|n| self.effect(n));
        let require = self.require_of(item, effect, get(&entries, "require"));
        let valid = actions.is_some()
            && effect.is_some()
            && (effect != Some(Effect::Challenge) || require.is_some())
            && require.as_ref().is_none_or(|r| r.valid);
        let dynamic_regex = self.flag(&entries, "dynamic_regex");
        Some(RuleDef {
            id,
            dynamic_regex,
            description,
            actions: actions.unwrap_or_default(),
            when,
            effect: effect.unwrap_or(Effect::Deny),
            require,
            message,
            mode,
            valid,
        })
    }

    fn actions(&mut self, node: &Node<'_>) -> Option<Vec<Spanned<String>>> {
        let list = self.string_list(node, "`actions`")?;
        if list.is_empty() {
            let d = self
                .error(
                    node,
                    Code::EmptyActions,
                    "`actions` is empty: the rule would never match",
                )
                .help("list action names or globs such as `payments.*`, or `*` for every action");
            self.push(d);
            return None;
        }
        for a in &list {
            if let Some(problem) = crate::glob::check(&a.value) {
                let d = self.error(
                    node,
                    Code::InvalidActionPattern,
                    format!("invalid action pattern `{}`: {problem}", a.value),
                );
                self.push(d);
            }
        }
        Some(list)
    }

    fn effect(&mut self, node: &Node<'_>) -> Option<Effect> {
        let s = self.y.string(node, "`effect`")?;
        match s.as_str() {
            "challenge" => Some(Effect::Challenge),
            "deny" => Some(Effect::Deny),
            other => {
                let d = self
                    .error(
                        node,
                        Code::UnknownEffect,
                        format!("unknown effect `{other}`"),
                    )
                    .help("use `effect: challenge` or `effect: deny`");
                self.push(d);
                None
            }
        }
    }

    /// The rule's `require`, which challenge rules need and deny rules may
    /// not have.
    fn require_of(
        &mut self,
        item: &Node<'_>,
        effect: Option<Effect>,
        node: Option<&Node<'_>>,
    ) -> Option<RequireDef> {
        match (effect, node) {
            (Some(Effect::Challenge), Some(n)) => self.require(n),
            (Some(Effect::Challenge), None) => {
                let d = self
                    .error(
                        item,
                        Code::MissingKey,
                        "challenge rule is missing `require`",
                    )
                    .help("add e.g. `require: { level: aal2, max_age: 5m }`");
                self.push(d);
                None
            }
            (Some(Effect::Deny), Some(n)) => {
                let d = self
                    .error(n, Code::MisplacedKey, "a deny rule takes no `require`")
                    .help("remove `require`, or use `effect: challenge`");
                self.push(d);
                None
            }
            (None, _) | (Some(Effect::Deny), None) => None,
        }
    }

    /// An optional bool key (`dynamic_regex`): false when absent or not a
    /// bool (reported).
    fn flag(&mut self, entries: &[(&str, &Node<'_>)], key: &str) -> bool {
        match get(entries, key).map(|n| (n, &n.data)) {
            None => false,
            Some((_, YamlData::Value(Scalar::Boolean(b)))) => *b,
            Some((n, _)) => {
                let d = self.error(n, Code::WrongType, format!("`{key}` must be true or false"));
                self.push(d);
                false
            }
        }
    }

    fn mode(&mut self, node: &Node<'_>) -> Option<Mode> {
        let s = self.y.string(node, "`mode`")?;
        match s.as_str() {
            "enforce" => Some(Mode::Enforce),
            "shadow" => Some(Mode::Shadow),
            other => {
                let d = self
                    .error(node, Code::UnknownMode, format!("unknown mode `{other}`"))
                    .help("use `mode: enforce` (the default) or `mode: shadow` (report-only)");
                self.push(d);
                None
            }
        }
    }

    fn require(&mut self, node: &Node<'_>) -> Option<RequireDef> {
        let entries = self
            .y
            .mapping(node, "`require`", &["level", "methods", "max_age"])?;
        let mut req = RequireDef {
            valid: true,
            ..RequireDef::default()
        };
        let mut ok = true;
        for (key, v) in entries {
            match key {
                "level" => req.level = self.spanned_string(v, "`level`"),
                "methods" => match self.string_list(v, "`methods`") {
                    Some(list) => req.methods = list.into_iter().map(|s| s.value).collect(),
                    None => ok = false,
                },
                "max_age" => match self.max_age(v) {
                    Ok(d) => req.max_age = d,
                    Err(Invalid) => ok = false,
                },
                _ => {}
            }
        }
        if req.level.is_none() && req.methods.is_empty() && req.max_age.is_none() && ok {
            let d = self
                .error(node, Code::EmptyRequire, "`require` asks for nothing")
                .help("set at least one of `level`, `methods`, `max_age`");
            self.push(d);
            return None;
        }
        req.valid = ok;
        Some(req)
    }

    /// `max_age`: `Ok(None)` when it is not a string (reported, but the
    /// rest of `require` is still checked as if it were absent).
    fn max_age(&mut self, v: &Node<'_>) -> Result<Option<Duration>, Invalid> {
        let text = match &v.data {
            YamlData::Value(Scalar::String(s)) => s.to_string(),
            YamlData::Value(Scalar::Integer(i)) => {
                let d = self
                    .error(
                        v,
                        Code::InvalidDuration,
                        format!("`max_age` needs a unit: `{i}`"),
                    )
                    .help(format!("write `{i}s` for seconds, or use m, h, d"));
                self.push(d);
                return Err(Invalid);
            }
            _ => match self.y.string(v, "`max_age`") {
                Some(s) => s,
                None => return Ok(None),
            },
        };
        match parse_duration(&text) {
            Ok(d) => Ok(Some(d)),
            Err(e) => {
                let d = self
                    .error(
                        v,
                        Code::InvalidDuration,
                        format!("invalid duration `{text}`: {e}"),
                    )
                    .help("write durations like `90s`, `5m`, `1h30m` or `7d`");
                self.push(d);
                Err(Invalid)
            }
        }
    }
}

/// A value that was reported invalid.
struct Invalid;

/// Whether `id` is a valid signal or rule id.
fn valid_id(id: &str) -> bool {
    id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// The valid `id` of a signal or rule mapping, if it has one. Looked up
/// before the keys are checked, so that a bad key written before `id` is
/// reported with it.
fn peek_id(item: &Node<'_>) -> Option<String> {
    let YamlData::Mapping(map) = &item.data else {
        return None;
    };
    let id = map.iter().find_map(|(k, v)| match (&k.data, &v.data) {
        (YamlData::Value(Scalar::String(k)), YamlData::Value(Scalar::String(id)))
            if k.as_ref() == "id" =>
        {
            Some(id.to_string())
        }
        (YamlData::Value(Scalar::String(k)), YamlData::Value(Scalar::Integer(i)))
            if k.as_ref() == "id" =>
        {
            Some(i.to_string())
        }
        _ => None,
    })?;
    valid_id(&id).then_some(id)
}
