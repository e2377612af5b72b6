//! Reading policy files: every `*.yaml`/`*.yml` under a directory, each
//! document checked key by key (unknown keys, wrong types, missing fields)
//! with its position kept, so that every problem is reported at once with
//! file, line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::diag::{Diagnostic, Location, Report, SourceFile, did_you_mean};
use crate::duration::parse_duration;

/// The `apiVersion` every document must carry.
pub const API_VERSION: &str = "stepup/v1";

/// A string from a policy file and where it was written.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Index of the file in [`Sources`].
    pub file: usize,
    /// Where the value starts.
    pub location: Location,
}

/// The files a policy set was read from, kept for diagnostics.
#[derive(Debug, Default)]
pub struct Sources {
    /// In the order read (sorted by path).
    pub files: Vec<SourceFile>,
}

impl Sources {
    /// A diagnostic placed at `spanned`.
    pub fn error_at<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> Diagnostic {
        self.place(Diagnostic::error(message), spanned.file, spanned.location)
    }

    /// Places `diagnostic` at `location` in file number `file`.
    pub fn place(&self, diagnostic: Diagnostic, file: usize, location: Location) -> Diagnostic {
        match self.files.get(file) {
            Some(f) => diagnostic.at(f, location),
            None => diagnostic,
        }
    }
}

/// One level of the assurance ladder.
#[derive(Debug)]
pub struct LevelDef {
    /// Its name, e.g. `aal2`.
    pub name: Spanned<String>,
    /// The acr values that count as this level.
    pub acr: Vec<Spanned<String>>,
}

/// A `kind: Levels` document.
#[derive(Debug)]
pub struct LevelsDef {
    /// Weakest first.
    pub levels: Vec<LevelDef>,
    /// Where the document's `kind` is, for "more than one" errors.
    pub at: Spanned<()>,
}

/// A risk signal.
#[derive(Debug)]
pub struct SignalDef {
    /// Unique id.
    pub id: Spanned<String>,
    /// CEL condition (absent only when the definition has errors).
    pub when: Option<Spanned<String>>,
    /// Score added when `when` is true (may be negative).
    pub score: i64,
    /// False when the definition had errors (already reported): it is still
    /// checked further, so that one pass reports everything, but not used.
    pub valid: bool,
    /// For people.
    pub description: Option<String>,
}

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Step up first.
    Challenge,
    /// Refuse.
    Deny,
}

impl Effect {
    /// The wire form.
    pub fn to_proto(self) -> crate::proto::v1::Effect {
        match self {
            Effect::Challenge => crate::proto::v1::Effect::Challenge,
            Effect::Deny => crate::proto::v1::Effect::Deny,
        }
    }
}

/// Whether a rule's effect counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The rule decides.
    Enforce,
    /// The rule is evaluated and its would-be effect reported, but it does not
    /// change the outcome (report-only, to roll out a new rule safely).
    Shadow,
}

/// A challenge rule's requirement.
#[derive(Debug, Default)]
pub struct RequireDef {
    /// Level name.
    pub level: Option<Spanned<String>>,
    /// Acceptable amr values.
    pub methods: Vec<String>,
    /// Freshness.
    pub max_age: Option<Duration>,
    /// False when a field had errors (already reported).
    pub valid: bool,
}

/// A rule.
#[derive(Debug)]
pub struct RuleDef {
    /// Unique id.
    pub id: Spanned<String>,
    /// For people.
    pub description: Option<String>,
    /// Action names or globs.
    pub actions: Vec<Spanned<String>>,
    /// Optional CEL condition.
    pub when: Option<Spanned<String>>,
    /// Challenge or deny.
    pub effect: Effect,
    /// For challenge rules.
    pub require: Option<RequireDef>,
    /// For the end user.
    pub message: Option<String>,
    /// `enforce` or `shadow` (report-only); `None` means the policy's mode,
    /// else enforce.
    pub mode: Option<Mode>,
    /// False when the definition had errors (already reported): it is still
    /// checked further, so that one pass reports everything, but not used.
    pub valid: bool,
}

/// Everything read from a policy directory, before compilation.
#[derive(Debug, Default)]
pub struct Definitions {
    /// The files.
    pub sources: Sources,
    /// Every `Levels` document (exactly one is valid).
    pub levels: Vec<LevelsDef>,
    /// Signals in file order.
    pub signals: Vec<SignalDef>,
    /// Rules in file order.
    pub rules: Vec<RuleDef>,
}

/// Lists the policy files under `dir`, sorted, skipping hidden entries
/// (Kubernetes ConfigMap mounts keep old copies under `..data` siblings) and
/// test suites (`*_test.yaml`).
pub fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, Box<Diagnostic>> {
    let mut out = Vec::new();
    walk(dir, &mut out).map_err(|e| {
        Box::new(
            Diagnostic::error(format!(
                "cannot read policy directory `{}`: {e}",
                dir.display()
            ))
            .help("pass a directory of *.yaml policy files with --policies"),
        )
    })?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        // Follows symlinks: ConfigMap files are links into `..data`.
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            walk(&path, out)?;
        } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
            && !name.ends_with("_test.yaml")
            && !name.ends_with("_test.yml")
        {
            out.push(path);
        }
    }
    Ok(())
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
        report.push(
            Diagnostic::error(format!("no policy files in `{}`", dir.display()))
                .help("policy files end in .yaml or .yml"),
        );
    }
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                defs.sources.files.push(SourceFile { path, text });
            }
            Err(e) => report
                .push(Diagnostic::error(format!("cannot read policy file: {e}")).in_file(&path)),
        }
    }
    for index in 0..defs.sources.files.len() {
        read_file(&mut defs, index, report);
    }
    defs
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
    let docs = match MarkedYaml::load_from_str(&file.text) {
        Ok(docs) => docs,
        Err(e) => {
            let m = e.marker();
            report.push(Diagnostic::error(format!("invalid YAML: {}", e.info())).at(
                file,
                Location {
                    line: m.line(),
                    column: m.col() + 1,
                    len: 1,
                },
            ));
            return;
        }
    };
    let mut reader = Reader {
        file,
        index,
        report,
    };
    let mut levels = Vec::new();
    let mut signals = Vec::new();
    let mut rules = Vec::new();
    for doc in &docs {
        if matches!(doc.data, YamlData::Value(Scalar::Null)) {
            continue; // an empty document, e.g. after a trailing `---`
        }
        reader.document(doc, &mut levels, &mut signals, &mut rules);
    }
    defs.levels.extend(levels);
    defs.signals.extend(signals);
    defs.rules.extend(rules);
}

struct Reader<'a> {
    file: &'a SourceFile,
    index: usize,
    report: &'a mut Report,
}

type Node<'i> = MarkedYaml<'i>;

fn location(node: &Node<'_>) -> Location {
    let start = node.span.start;
    let len = if node.span.end.line() == start.line() {
        node.span.end.col().saturating_sub(start.col())
    } else {
        1
    };
    Location {
        line: start.line(),
        column: start.col() + 1,
        len: len.max(1),
    }
}

impl Reader<'_> {
    fn error(&mut self, node: &Node<'_>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message).at(self.file, location(node))
    }

    fn push(&mut self, d: Diagnostic) {
        self.report.push(d);
    }

    fn spanned<T>(&self, node: &Node<'_>, value: T) -> Spanned<T> {
        Spanned {
            value,
            file: self.index,
            location: location(node),
        }
    }

    /// The entries of a mapping, checking every key against `allowed`.
    fn mapping<'n, 'i>(
        &mut self,
        node: &'n Node<'i>,
        what: &str,
        allowed: &[&str],
        rule: Option<&str>,
    ) -> Option<Vec<(&'n str, &'n Node<'i>)>> {
        let YamlData::Mapping(map) = &node.data else {
            let d = self.error(node, format!("{what} must be a mapping"));
            self.push(with_rule(d, rule));
            return None;
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let YamlData::Value(Scalar::String(key)) = &k.data else {
                let d = self.error(k, format!("keys of {what} must be strings"));
                self.push(with_rule(d, rule));
                continue;
            };
            if !allowed.contains(&key.as_ref()) {
                let d = self
                    .error(k, format!("unknown key `{key}` in {what}"))
                    .maybe_help(did_you_mean(key, allowed.iter().copied()).or_else(|| {
                        Some(format!(
                            "the keys of {what} are {}",
                            allowed
                                .iter()
                                .map(|a| format!("`{a}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    }));
                self.push(with_rule(d, rule));
                continue;
            }
            out.push((key.as_ref(), v));
        }
        Some(out)
    }

    fn string(&mut self, node: &Node<'_>, what: &str, rule: Option<&str>) -> Option<String> {
        match &node.data {
            YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
            // Plain numbers and booleans where a string is expected are
            // accepted as written (e.g. `name: 2fa`).
            YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
            _ => {
                let d = self.error(node, format!("{what} must be a string"));
                self.push(with_rule(d, rule));
                None
            }
        }
    }

    fn string_list(
        &mut self,
        node: &Node<'_>,
        what: &str,
        rule: Option<&str>,
    ) -> Option<Vec<Spanned<String>>> {
        let YamlData::Sequence(items) = &node.data else {
            let d = self
                .error(node, format!("{what} must be a list of strings"))
                .help(format!("write {what} as `[a, b]`"));
            self.push(with_rule(d, rule));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(s) = self.string(item, &format!("each entry of {what}"), rule) {
                out.push(self.spanned(item, s));
            }
        }
        Some(out)
    }

    fn required<'n, 'i>(
        &mut self,
        entries: &[(&str, &'n Node<'i>)],
        key: &str,
        parent: &Node<'_>,
        what: &str,
        rule: Option<&str>,
    ) -> Option<&'n Node<'i>> {
        let found = entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        if found.is_none() {
            let d = self.error(parent, format!("{what} is missing `{key}`"));
            self.push(with_rule(d, rule));
        }
        found
    }

    fn document(
        &mut self,
        doc: &Node<'_>,
        levels: &mut Vec<LevelsDef>,
        signals: &mut Vec<SignalDef>,
        rules: &mut Vec<RuleDef>,
    ) {
        let Some(entries) = self.mapping(
            doc,
            "a policy document",
            &[
                "apiVersion",
                "kind",
                "name",
                "description",
                "levels",
                "signals",
                "rules",
                "mode",
            ],
            None,
        ) else {
            return;
        };
        let get = |k: &str| entries.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        match get("apiVersion") {
            Some(v) => {
                if let Some(s) = self.string(v, "`apiVersion`", None)
                    && s != API_VERSION
                {
                    let d = self
                        .error(v, format!("unsupported apiVersion `{s}`"))
                        .help(format!("use `apiVersion: {API_VERSION}`"));
                    self.push(d);
                }
            }
            None => {
                let d = self
                    .error(doc, "document is missing `apiVersion`")
                    .help(format!("add `apiVersion: {API_VERSION}`"));
                self.push(d);
            }
        }
        let Some(kind_node) = get("kind") else {
            let d = self
                .error(doc, "document is missing `kind`")
                .help("use `kind: Levels` or `kind: Policy`");
            self.push(d);
            return;
        };
        let kind = self.string(kind_node, "`kind`", None);
        match kind.as_deref() {
            Some("Levels") => {
                for key in ["signals", "rules", "name"] {
                    if let Some(n) = get(key) {
                        let d =
                            self.error(n, format!("`{key}` belongs in a `kind: Policy` document"));
                        self.push(d);
                    }
                }
                let mut out = Vec::new();
                if let Some(list) =
                    self.required(&entries, "levels", doc, "a Levels document", None)
                {
                    self.levels(list, &mut out);
                }
                levels.push(LevelsDef {
                    levels: out,
                    at: self.spanned(kind_node, ()),
                });
            }
            Some("Policy") => {
                if let Some(n) = get("levels") {
                    let d = self.error(n, "`levels` belongs in the `kind: Levels` document");
                    self.push(d);
                }
                if let Some(n) = get("name") {
                    self.string(n, "`name`", None);
                } else {
                    let d = self.error(doc, "policy is missing `name`");
                    self.push(d);
                }
                if let Some(list) = get("signals") {
                    self.each(list, "`signals`", |r, n| {
                        if let Some(s) = r.signal(n) {
                            signals.push(s);
                        }
                    });
                }
                let policy_mode = get("mode").and_then(|n| self.mode(n, None));
                if policy_mode == Some(Mode::Shadow)
                    && let Some(n) = get("signals")
                {
                    let d = Diagnostic::warning("`mode: shadow` applies to the policy's rules; its signals count as usual")
                        .at(self.file, location(n))
                        .help("move signals you do not want counted yet to their own policy, or remove them");
                    self.push(d);
                }
                if let Some(list) = get("rules") {
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
            Some(other) => {
                let d = self
                    .error(kind_node, format!("unknown kind `{other}`"))
                    .maybe_help(did_you_mean(other, ["Levels", "Policy"]))
                    .help("use `kind: Levels` or `kind: Policy`");
                self.push(d);
            }
            None => {}
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
                let d = self.error(node, format!("{what} must be a list"));
                self.push(d);
            }
        }
    }

    fn levels(&mut self, node: &Node<'_>, out: &mut Vec<LevelDef>) {
        self.each(node, "`levels`", |r, item| {
            let Some(entries) = r.mapping(item, "a level", &["name", "acr", "description"], None)
            else {
                return;
            };
            let name = r
                .required(&entries, "name", item, "level", None)
                .and_then(|n| r.string(n, "`name`", None).map(|s| r.spanned(n, s)));
            let acr = r
                .required(&entries, "acr", item, "level", None)
                .and_then(|n| r.string_list(n, "`acr`", None));
            if let Some(d) = entries.iter().find(|(k, _)| *k == "description") {
                r.string(d.1, "`description`", None);
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
        let node = self.required(entries, "id", item, what, None)?;
        let id = self.string(node, "`id`", None)?;
        if !valid_id(&id) {
            let d = self.error(node, format!("invalid id `{id}`")).help(
                "ids are letters, digits, `-`, `_`, `.` and `:`, starting with a letter or digit",
            );
            self.push(d);
            return None;
        }
        Some(self.spanned(node, id))
    }

    fn signal(&mut self, item: &Node<'_>) -> Option<SignalDef> {
        let named = peek_id(item);
        let entries = self.mapping(
            item,
            "a signal",
            &["id", "when", "score", "description"],
            named.as_deref(),
        )?;
        let id = self.id(&entries, item, "signal")?;
        let rule = Some(id.value.as_str());
        let when = self
            .required(&entries, "when", item, "signal", rule)
            .and_then(|n| self.string(n, "`when`", rule).map(|s| self.spanned(n, s)));
        let score = match self.required(&entries, "score", item, "signal", rule) {
            Some(n) => match &n.data {
                YamlData::Value(Scalar::Integer(i)) if (-100..=100).contains(i) => Some(*i),
                _ => {
                    let d = self
                        .error(n, "`score` must be a whole number from -100 to 100")
                        .rule(&id.value);
                    self.push(d);
                    None
                }
            },
            None => None,
        };
        let description = entries
            .iter()
            .find(|(k, _)| *k == "description")
            .and_then(|(_, n)| self.string(n, "`description`", rule));
        Some(SignalDef {
            id,
            valid: when.is_some() && score.is_some(),
            when,
            score: score.unwrap_or(0),
            description,
        })
    }

    fn rule(&mut self, item: &Node<'_>) -> Option<RuleDef> {
        let named = peek_id(item);
        let entries = self.mapping(
            item,
            "a rule",
            &[
                "id",
                "description",
                "actions",
                "when",
                "effect",
                "require",
                "message",
                "mode",
            ],
            named.as_deref(),
        )?;
        let id = self.id(&entries, item, "rule")?;
        let rule_id = id.value.clone();
        let rule = Some(rule_id.as_str());
        let get = |k: &str| entries.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let description = get("description").and_then(|n| self.string(n, "`description`", rule));
        let message = get("message").and_then(|n| self.string(n, "`message`", rule));
        let mode = get("mode").and_then(|n| self.mode(n, rule));
        let when =
            get("when").and_then(|n| self.string(n, "`when`", rule).map(|s| self.spanned(n, s)));
        let actions = self
            .required(&entries, "actions", item, "rule", rule)
            .and_then(|n| {
                let list = self.string_list(n, "`actions`", rule)?;
                if list.is_empty() {
                    let d = self
                        .error(n, "`actions` is empty: the rule would never match")
                        .rule(&rule_id)
                        .help("list action names or globs such as `payments.*`, or `*` for every action");
                    self.push(d);
                    return None;
                }
                for a in &list {
                    if let Some(problem) = crate::glob::check(&a.value) {
                        let d = self.error(n, format!("invalid action pattern `{}`: {problem}", a.value));
                        self.push(d.rule(&rule_id));
                    }
                }
                Some(list)
            });
        let effect_node = self.required(&entries, "effect", item, "rule", rule);
        let effect = effect_node.and_then(|n| {
            let s = self.string(n, "`effect`", rule)?;
            match s.as_str() {
                "challenge" => Some(Effect::Challenge),
                "deny" => Some(Effect::Deny),
                other => {
                    let d = self
                        .error(n, format!("unknown effect `{other}`"))
                        .rule(&rule_id)
                        .help("use `effect: challenge` or `effect: deny`");
                    self.push(d);
                    None
                }
            }
        });
        let require = match (effect, get("require")) {
            (Some(Effect::Challenge), Some(n)) => self.require(n, &rule_id),
            (Some(Effect::Challenge), None) => {
                let d = self
                    .error(item, "challenge rule is missing `require`")
                    .rule(&rule_id)
                    .help("add e.g. `require: { level: aal2, max_age: 5m }`");
                self.push(d);
                None
            }
            (Some(Effect::Deny), Some(n)) => {
                let d = self
                    .error(n, "a deny rule takes no `require`")
                    .rule(&rule_id)
                    .help("remove `require`, or use `effect: challenge`");
                self.push(d);
                None
            }
            (None, _) => None,
            (Some(Effect::Deny), None) => None,
        };
        let valid = actions.is_some()
            && effect.is_some()
            && (effect != Some(Effect::Challenge) || require.is_some())
            && require.as_ref().is_none_or(|r| r.valid);
        Some(RuleDef {
            id,
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

    fn mode(&mut self, node: &Node<'_>, rule: Option<&str>) -> Option<Mode> {
        let s = self.string(node, "`mode`", rule)?;
        match s.as_str() {
            "enforce" => Some(Mode::Enforce),
            "shadow" => Some(Mode::Shadow),
            other => {
                let d = self
                    .error(node, format!("unknown mode `{other}`"))
                    .help("use `mode: enforce` (the default) or `mode: shadow` (report-only)");
                self.push(with_rule(d, rule));
                None
            }
        }
    }

    fn require(&mut self, node: &Node<'_>, rule_id: &str) -> Option<RequireDef> {
        let rule = Some(rule_id);
        let entries = self.mapping(node, "`require`", &["level", "methods", "max_age"], rule)?;
        let mut req = RequireDef {
            valid: true,
            ..RequireDef::default()
        };
        let mut ok = true;
        for (key, v) in entries {
            match key {
                "level" => req.level = self.string(v, "`level`", rule).map(|s| self.spanned(v, s)),
                "methods" => match self.string_list(v, "`methods`", rule) {
                    Some(list) => req.methods = list.into_iter().map(|s| s.value).collect(),
                    None => ok = false,
                },
                "max_age" => {
                    let text = match &v.data {
                        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
                        YamlData::Value(Scalar::Integer(i)) => {
                            let d = self
                                .error(v, format!("`max_age` needs a unit: `{i}`"))
                                .rule(rule_id)
                                .help(format!("write `{i}s` for seconds, or use m, h, d"));
                            self.push(d);
                            ok = false;
                            None
                        }
                        _ => self.string(v, "`max_age`", rule),
                    };
                    if let Some(text) = text {
                        match parse_duration(&text) {
                            Ok(d) => req.max_age = Some(d),
                            Err(e) => {
                                let d = self
                                    .error(v, format!("invalid duration `{text}`: {e}"))
                                    .rule(rule_id)
                                    .help("write durations like `90s`, `5m`, `1h30m` or `7d`");
                                self.push(d);
                                ok = false;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if req.level.is_none() && req.methods.is_empty() && req.max_age.is_none() && ok {
            let d = self
                .error(node, "`require` asks for nothing")
                .rule(rule_id)
                .help("set at least one of `level`, `methods`, `max_age`");
            self.push(d);
            return None;
        }
        req.valid = ok;
        Some(req)
    }
}

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

fn with_rule(d: Diagnostic, rule: Option<&str>) -> Diagnostic {
    match rule {
        Some(r) => d.rule(r),
        None => d,
    }
}
