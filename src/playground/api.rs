//! The playground's JSON API, over the edited files a client sends:
//!
//! - `GET /api/v1/files`: the set on disk (`files`, name → text), the
//!   presets of its `*_test.yaml` cases and of `--requests`, and whether
//!   saving is allowed (`write`).
//! - `GET /api/v1/schema`: the fields of `DecideRequest` by their JSON
//!   names, with their types, from the embedded proto descriptor
//!   ([`super::schema`]).
//! - `POST /api/v1/evaluate` with `{files, request, now, history}`: the
//!   diagnostics of the edited set (those of `stepup check`: code, message,
//!   file, line, column, help) and, when it is valid and a request is given,
//!   the decision (`decision`: the `DecideResponse` JSON with its explain
//!   trace; `risk`: the score by signal; `levels`; `costs`: each
//!   condition's worst-case cost and the limit). `history` is a case's
//!   `history` of `stepup test` (`[{ago, request | stepup | signal}]`).
//! - `POST /api/v1/test` with `{files}`: the suites' results as `stepup test
//!   --format json` prints them, with coverage.
//! - `POST /api/v1/save-test` and `POST /api/v1/save-file`
//!   ([`super::save`]), only with `--write`.
//!
//! Every evaluation compiles the edited set afresh with the limits `serve`
//! uses; nothing is written or cached between calls.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{Options, StartError};
use crate::policy::diag::{Diagnostic, Report, SourceFile};
use crate::policy::{PolicySet, load::policy_files};
use crate::suite::{self, Case, Prior, parse::Names};

/// The most presets a `--requests` file contributes.
const MAX_REQUEST_PRESETS: usize = 200;

/// What every call reads: the options and the presets read at start.
#[derive(Debug)]
pub struct State {
    pub(super) options: Options,
    /// The directory, canonical (the root every saved path must stay in).
    pub(super) root: PathBuf,
    request_presets: Vec<Value>,
}

/// Why an API call is refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not what the endpoint reads (400).
    #[error("{0}")]
    BadRequest(String),
    /// Not allowed: saving without `--write`, or a path outside the
    /// directory (403).
    #[error("{0}")]
    Forbidden(String),
    /// Reading or writing a file failed (500).
    #[error("{0}")]
    Io(String),
}

impl State {
    /// The state for `options`: the directory checked, the `--requests`
    /// presets read.
    pub fn new(options: Options) -> Result<Self, StartError> {
        let root = options
            .dir
            .canonicalize()
            .map_err(|source| StartError::Dir {
                dir: options.dir.clone(),
                source,
            })?;
        let request_presets = match &options.requests {
            Some(file) => read_request_presets(file).map_err(|source| StartError::Requests {
                file: file.clone(),
                source,
            })?,
            None => Vec::new(),
        };
        Ok(Self {
            options,
            root,
            request_presets,
        })
    }
}

/// The presets of a replay log: each line's request (a bare
/// `DecideRequest` or a decision-log line's `request`), unchecked until
/// evaluated.
fn read_request_presets(file: &Path) -> std::io::Result<Vec<Value>> {
    let text = std::fs::read_to_string(file)?;
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let v: Value = serde_json::from_str(line).ok()?;
            // A decision-log line's clock, unless the request has its own.
            let now = v.get("time").filter(|t| t.is_string()).cloned();
            let request = match v.get("request") {
                Some(r) if r.is_object() => r.clone(),
                _ => v,
            };
            Some(json!({
                "name": format!("{}:{}", file.display(), i + 1),
                "request": request,
                "now": now,
            }))
        })
        .take(MAX_REQUEST_PRESETS)
        .collect())
}

/// `GET /api/v1/files`.
pub fn files(state: &State) -> Result<Value, ApiError> {
    let dir = &state.options.dir;
    let mut files = Map::new();
    let listed = policy_files(dir)
        .map_err(|d| ApiError::Io(d.message))?
        .into_iter()
        .chain(suite::suite_files(dir).map_err(|e| {
            ApiError::Io(format!(
                "cannot read test suites in `{}`: {e}",
                dir.display()
            ))
        })?);
    for path in listed {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ApiError::Io(format!("cannot read `{}`: {e}", path.display())))?;
        files.insert(relative(dir, &path), Value::String(text));
    }
    let presets = presets_of(state, &files);
    Ok(json!({
        "dir": dir.display().to_string(),
        "write": state.options.write,
        "files": files,
        "presets": presets,
        "requests": state.request_presets,
    }))
}

/// The cases of the suites in `files` as scenarios, when the set and its
/// suites are valid.
fn presets_of(state: &State, files: &Map<String, Value>) -> Vec<Value> {
    let Ok((policies, tests)) = sources(state, files) else {
        return Vec::new();
    };
    let Ok((set, _)) = load(state, policies) else {
        return Vec::new();
    };
    let Ok((suites, _)) = suite::load_sources(&tests, &set) else {
        return Vec::new();
    };
    presets_from(&state.options.dir, &suites)
}

/// Every case of `suites` as a scenario: its merged request, clock,
/// history and expected outcome.
fn presets_from(dir: &Path, suites: &[suite::Suite]) -> Vec<Value> {
    suites
        .iter()
        .flat_map(|s| s.cases.iter().map(move |c| (s, c)))
        .map(|(s, c)| {
            json!({
                "name": suite::full_name(c),
                "file": relative(dir, &s.file),
                "line": c.line,
                "now": c.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "request": serde_json::to_value(&c.request).unwrap_or(Value::Null),
                "history": history_json(c),
                "expect": c.expect.outcome,
            })
        })
        .collect()
}

/// A case's resolved history, written back as a `history` list.
fn history_json(case: &Case) -> Value {
    let ago = |at: &DateTime<Utc>| {
        let d = (case.now - *at).to_std().unwrap_or_default();
        crate::duration::format_duration(d)
    };
    Value::Array(
        case.history
            .iter()
            .map(|p| match p {
                Prior::Decide { request, at } => json!({
                    "ago": ago(at),
                    "request": serde_json::to_value(&**request).unwrap_or(Value::Null),
                }),
                Prior::StepUp { at, success } => json!({
                    "ago": ago(at),
                    "stepup": if *success { "passed" } else { "failed" },
                }),
                Prior::Signal { at, name, about } => {
                    let mut v = json!({ "ago": ago(at), "signal": name });
                    if let (Some(about), Some(m)) = (about, v.as_object_mut()) {
                        m.insert(
                            "request".into(),
                            serde_json::to_value(&**about).unwrap_or(Value::Null),
                        );
                    }
                    v
                }
            })
            .collect(),
    )
}

/// `name`, relative to `dir`, with `/` between components.
fn relative(dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The edited files of a body's `files`: policy files and test suites,
/// under the directory; a name that is not a relative `.yaml`/`.yml` path
/// inside it is refused.
fn sources(
    state: &State,
    files: &Map<String, Value>,
) -> Result<(Vec<SourceFile>, Vec<SourceFile>), ApiError> {
    let mut policies = Vec::new();
    let mut tests = Vec::new();
    let mut names: Vec<&String> = files.keys().collect();
    names.sort();
    for name in names {
        let rel = super::save::relative_path(name)?;
        if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            return Err(ApiError::BadRequest(format!(
                "`files`: `{name}` is not a policy file (*.yaml, *.yml)"
            )));
        }
        let Some(text) = files.get(name).and_then(Value::as_str) else {
            return Err(ApiError::BadRequest(format!(
                "`files`: the text of `{name}` must be a string"
            )));
        };
        let file = SourceFile {
            path: state.options.dir.join(rel),
            text: text.to_owned(),
        };
        if super::save::is_test_name(name) {
            tests.push(file);
        } else {
            policies.push(file);
        }
    }
    Ok((policies, tests))
}

fn load(state: &State, policies: Vec<SourceFile>) -> Result<(PolicySet, Report), Report> {
    let o = &state.options;
    PolicySet::load_sources(&o.dir, policies, &o.lists, o.limits)
}

/// A diagnostic as the page reads it: `file` relative to the directory.
fn diagnostic_json(dir: &Path, d: &Diagnostic) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    if let (Some(file), Some(m)) = (&d.file, v.as_object_mut()) {
        m.insert("file".into(), Value::String(relative(dir, file)));
    }
    v
}

fn body_files(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.get("files").and_then(Value::as_object).ok_or_else(|| {
        ApiError::BadRequest("`files` must be an object of file name to text".to_owned())
    })
}

/// `POST /api/v1/evaluate`.
pub fn evaluate(state: &State, body: &Value) -> Result<Value, ApiError> {
    let (policies, tests) = sources(state, body_files(body)?)?;
    let dir = &state.options.dir;
    let (set, report) = match load(state, policies) {
        Ok((set, report)) => (Some(Arc::new(set)), report),
        Err(report) => (None, report),
    };
    let mut diagnostics: Vec<Value> = report
        .diagnostics
        .iter()
        .map(|d| diagnostic_json(dir, d))
        .collect();
    let Some(set) = set else {
        return Ok(json!({ "valid": false, "diagnostics": diagnostics, "decision": null }));
    };
    let suites = match suite::load_sources(&tests, &set) {
        Ok((_, r)) | Err(r) => r,
    };
    diagnostics.extend(suites.diagnostics.iter().map(|d| diagnostic_json(dir, d)));
    let levels: Vec<Value> = set
        .levels
        .iter()
        .map(|l| json!({ "name": &*l.name, "acr": l.acr.iter().map(|a| &**a).collect::<Vec<_>>() }))
        .collect();
    let mut costs = set.cost_report().json();
    for c in costs
        .get_mut("conditions")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(m) = c.as_object_mut()
            && let Some(file) = m.get("file").and_then(Value::as_str)
        {
            let rel = relative(dir, Path::new(file));
            m.insert("file".into(), Value::String(rel));
        }
    }
    let mut out = json!({
        "valid": true,
        "revision": &*set.revision,
        "costs": costs,
        "diagnostics": diagnostics,
        "levels": levels,
        "decision": null,
    });
    let Some(request) = body.get("request").filter(|r| !r.is_null()) else {
        return Ok(out);
    };
    let decided = match scenario(&set, request, body.get("now"), body.get("history")) {
        Ok(case) => decision_json(&set, &case),
        Err(problems) => json!({ "scenario": problems }),
    };
    if let Some(m) = out.as_object_mut() {
        for (k, v) in decided.as_object().into_iter().flatten() {
            m.insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}

/// The scenario as a one-case suite, read by the suite reader: the request,
/// clock and history mean exactly what they mean in a `*_test.yaml` case.
/// Its problems are returned as `{message, help}`.
fn scenario(
    set: &PolicySet,
    request: &Value,
    now: Option<&Value>,
    history: Option<&Value>,
) -> Result<Case, Vec<Value>> {
    let now = match now.and_then(Value::as_str) {
        Some(n) => n.to_owned(),
        None => Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let mut case =
        json!({ "name": "scenario", "request": request, "expect": { "outcome": "allow" } });
    if let (Some(h), Some(m)) = (history.filter(|h| !h.is_null()), case.as_object_mut()) {
        m.insert("history".into(), h.clone());
    }
    let doc = json!({ "name": "scenario", "now": now, "cases": [case] });
    let file = SourceFile {
        path: PathBuf::from("scenario"),
        text: serde_json::to_string_pretty(&doc).unwrap_or_default(),
    };
    let mut report = Report::default();
    let names = Names::of(set);
    let suites = suite::parse::read_file(&file, &names, &mut report);
    let errors: Vec<Value> = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::policy::Severity::Error)
        .map(|d| json!({ "code": d.code, "message": d.message, "help": d.help }))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    suites
        .into_iter()
        .flat_map(|s| s.cases)
        .next()
        .ok_or_else(|| vec![json!({ "message": "the scenario holds no request" })])
}

/// The decision of `case`: the `DecideResponse` JSON with its trace, and
/// the risk score broken down by signal.
fn decision_json(set: &Arc<PolicySet>, case: &Case) -> Value {
    let start = std::time::Instant::now();
    let decision = suite::decide_case(set, case);
    let elapsed = start.elapsed();
    let response = crate::server::convert::response(&decision);
    let fired = &decision.assessment.signals;
    let risk: Vec<Value> = set
        .signals
        .iter()
        .map(|s| json!({ "signal": &*s.id, "score": s.score, "fired": fired.contains(&s.id) }))
        .collect();
    json!({
        "decision": serde_json::to_value(&response).unwrap_or(Value::Null),
        "risk": risk,
        "now": case.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "elapsed_us": u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
    })
}

/// `POST /api/v1/test`.
pub fn test(state: &State, body: &Value) -> Result<Value, ApiError> {
    let (policies, tests) = sources(state, body_files(body)?)?;
    let dir = &state.options.dir;
    let diags = |r: &Report| -> Vec<Value> {
        r.diagnostics
            .iter()
            .map(|d| diagnostic_json(dir, d))
            .collect()
    };
    let set = match load(state, policies) {
        Ok((set, _)) => Arc::new(set),
        Err(r) => return Ok(json!({ "valid": false, "diagnostics": diags(&r) })),
    };
    let suites = match suite::load_sources(&tests, &set) {
        Ok((suites, _)) => suites,
        Err(r) => return Ok(json!({ "valid": false, "diagnostics": diags(&r) })),
    };
    let report = suite::run(&set, &suites, None);
    let mut out = suite::json_report(&report);
    if let Some(cases) = out.get_mut("cases").and_then(Value::as_array_mut) {
        for c in cases {
            if let Some(m) = c.as_object_mut()
                && let Some(file) = m.get("file").and_then(Value::as_str)
            {
                let rel = relative(dir, Path::new(file));
                m.insert("file".into(), Value::String(rel));
            }
        }
    }
    if let Some(m) = out.as_object_mut() {
        m.insert("valid".into(), Value::Bool(true));
        m.insert("presets".into(), Value::Array(presets_from(dir, &suites)));
    }
    Ok(out)
}
