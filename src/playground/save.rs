//! Saving, only when the playground runs with `--write`: "save as test
//! case" appends a scenario and its expected outcome to a `*_test.yaml`
//! suite inside the policy directory; "save file" writes one edited policy
//! file or suite when the result is valid. Fails closed: a name that is not a
//! relative `*_test.yaml`/`*_test.yml` path, that climbs out (`..`), is
//! hidden, or whose file or directory is a symlink leading outside the
//! directory is refused, and the new text is checked (a suite read back, a
//! policy set compiled) before anything is written.

use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

use super::api::{ApiError, State};
use crate::policy::PolicySet;
use crate::policy::diag::{Report, SourceFile};
use crate::suite::parse::{self, Names};

/// `name` as a path relative to the policy directory: plain components
/// only (no root, no `..` or `.`, no hidden names, no backslash).
pub fn relative_path(name: &str) -> Result<PathBuf, ApiError> {
    let refuse = |why: &str| ApiError::Forbidden(format!("file name `{name}` {why}"));
    if name.is_empty() || name.contains('\\') || name.contains('\0') {
        return Err(refuse("is not a relative path with `/` separators"));
    }
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) if !part.to_string_lossy().starts_with('.') => out.push(part),
            Component::Normal(_) => return Err(refuse("names a hidden file or directory")),
            _ => return Err(refuse("must stay inside the policy directory")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(refuse("is empty"));
    }
    Ok(out)
}

/// Whether `name` is a test suite's (`*_test.yaml`, `*_test.yml`).
pub fn is_test_name(name: &str) -> bool {
    name.ends_with("_test.yaml") || name.ends_with("_test.yml")
}

/// Whether `name` is a policy file's (`*.yaml`, `*.yml`, not a suite).
pub fn is_policy_name(name: &str) -> bool {
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !is_test_name(name)
}

/// Where the suite `name` is written ([`target`]).
fn test_target(state: &State, name: &str) -> Result<PathBuf, ApiError> {
    if !is_test_name(name) {
        return Err(ApiError::Forbidden(format!(
            "`{name}` is not a test suite: only `*_test.yaml` files are saved"
        )));
    }
    target(state, name)
}

/// Where `name` is written: inside the canonical directory, not through a
/// symlink, an existing regular file or a new one.
fn target(state: &State, name: &str) -> Result<PathBuf, ApiError> {
    let rel = relative_path(name)?;
    let path = state.root.join(&rel);
    let parent = path.parent().unwrap_or(&state.root);
    let real_parent = parent.canonicalize().map_err(|e| {
        ApiError::BadRequest(format!("the directory of `{name}` cannot be used: {e}"))
    })?;
    if !real_parent.starts_with(&state.root) {
        return Err(ApiError::Forbidden(format!(
            "`{name}` leads outside the policy directory"
        )));
    }
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => Err(ApiError::Forbidden(format!(
            "`{name}` is a symlink: not written"
        ))),
        Ok(m) if !m.is_file() => Err(ApiError::Forbidden(format!(
            "`{name}` is not a regular file"
        ))),
        _ => Ok(path),
    }
}

/// The YAML of one case entry, its values in JSON (flow) form.
fn case_yaml(case: &Value) -> Result<String, ApiError> {
    let mut out = String::new();
    let mut first = true;
    for key in ["name", "now", "request", "history", "expect"] {
        let Some(v) = case.get(key).filter(|v| !v.is_null()) else {
            if key == "name" || key == "request" || key == "expect" {
                return Err(ApiError::BadRequest(format!("`case` is missing `{key}`")));
            }
            continue;
        };
        let text = serde_json::to_string(v).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        out.push_str(if first { "  - " } else { "    " });
        out.push_str(&format!("{key}: {text}\n"));
        first = false;
    }
    Ok(out)
}

fn count_cases(path: &Path, text: &str, names: &Names<'_>) -> Option<usize> {
    let file = SourceFile {
        path: path.to_owned(),
        text: text.to_owned(),
    };
    let mut report = Report::default();
    let suites = parse::read_file(&file, names, &mut report);
    (!report.has_errors()).then(|| suites.iter().map(|s| s.cases.len()).sum())
}

/// `POST /api/v1/save-test` with `{file, case: {name, now, request,
/// history, expect}}`: the case appended to the file's last suite, or in a
/// new suite document when it cannot be (or to a new file).
pub fn save_test(state: &State, body: &Value) -> Result<Value, ApiError> {
    if !state.options.write {
        return Err(ApiError::Forbidden(
            "saving is off: start the playground with `--write` to save test cases".to_owned(),
        ));
    }
    let name = body
        .get("file")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("`file` must name a `*_test.yaml` file".to_owned()))?;
    let path = test_target(state, name)?;
    let case = body
        .get("case")
        .filter(|c| c.is_object())
        .ok_or_else(|| ApiError::BadRequest("`case` must be an object".to_owned()))?;
    let entry = case_yaml(case)?;
    let set = load_disk(state)?;
    let names = Names::of(&set);
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ApiError::Io(format!("cannot read `{name}`: {e}"))),
    };
    let stem = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .trim_end_matches(".yaml")
        .trim_end_matches(".yml")
        .trim_end_matches("_test");
    let text = if old.trim().is_empty() {
        format!("name: {}\ncases:\n{entry}", json!(stem))
    } else {
        let before = count_cases(&path, &old, &names).unwrap_or(0);
        let base = if old.ends_with('\n') {
            old.clone()
        } else {
            format!("{old}\n")
        };
        let appended = format!("{base}{entry}");
        if count_cases(&path, &appended, &names) == Some(before + 1) {
            appended
        } else {
            let suite = json!(format!("{stem} (playground, {})", before + 1));
            format!("{base}---\nname: {suite}\ncases:\n{entry}")
        }
    };
    if count_cases(&path, &text, &names).is_none() {
        return Err(ApiError::BadRequest(format!(
            "the case does not read as a test case of `{name}`: check its request and expect"
        )));
    }
    replace(&path, name, &text)?;
    Ok(json!({ "saved": name, "text": text }))
}

/// Writes `text` to a temporary file beside `path` and renames it over
/// `path`: a crash leaves the old text or the new, never half of it (and a
/// watching `serve` never reads a partial file).
fn replace(path: &Path, name: &str, text: &str) -> Result<(), ApiError> {
    let tmp = path.with_file_name(format!(
        ".{}.playground.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| ApiError::Io(format!("cannot write `{name}`: {e}")))
}

fn load_disk(state: &State) -> Result<PolicySet, ApiError> {
    let o = &state.options;
    PolicySet::load_limited(&o.dir, &o.lists, o.limits, None)
        .map(|(set, _)| set)
        .map_err(|r| {
            ApiError::BadRequest(format!(
                "the policy set on disk is invalid ({} errors): save the policies first",
                r.error_count()
            ))
        })
}

/// `POST /api/v1/save-file` with `{file, text}`: one policy file or suite
/// written, only when the result is valid: the set on disk with this file
/// replaced compiles (a watching `serve` would take it), or the suite reads
/// against the set on disk.
pub fn save_file(state: &State, body: &Value) -> Result<Value, ApiError> {
    if !state.options.write {
        return Err(ApiError::Forbidden(
            "saving is off: start the playground with `--write` to save files".to_owned(),
        ));
    }
    let name = body
        .get("file")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("`file` must name a policy file".to_owned()))?;
    let text = body
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("`text` must be the file's text".to_owned()))?;
    if !is_policy_name(name) && !is_test_name(name) {
        return Err(ApiError::Forbidden(format!(
            "`{name}` is not a policy file or test suite (*.yaml, *.yml)"
        )));
    }
    let path = target(state, name)?;
    if is_test_name(name) {
        let set = load_disk(state)?;
        if count_cases(&path, text, &Names::of(&set)).is_none() {
            return Err(ApiError::BadRequest(format!(
                "not saved: `{name}` does not read as a test suite of the set on disk"
            )));
        }
    } else {
        check_policy(state, &path, name, text)?;
    }
    replace(&path, name, text)?;
    Ok(json!({ "saved": name }))
}

/// Whether the set on disk with `path` holding `text` compiles.
fn check_policy(state: &State, path: &Path, name: &str, text: &str) -> Result<(), ApiError> {
    let o = &state.options;
    let mut files = Vec::new();
    let listed = crate::policy::load::policy_files(&o.dir).map_err(|d| ApiError::Io(d.message))?;
    for p in listed {
        if p.canonicalize().is_ok_and(|c| c == path) {
            continue;
        }
        let t = std::fs::read_to_string(&p)
            .map_err(|e| ApiError::Io(format!("cannot read `{}`: {e}", p.display())))?;
        files.push(SourceFile { path: p, text: t });
    }
    files.push(SourceFile {
        path: o.dir.join(relative_path(name)?),
        text: text.to_owned(),
    });
    match PolicySet::load_sources(&o.dir, files, &o.lists, o.limits) {
        Ok(_) => Ok(()),
        Err(r) => Err(ApiError::BadRequest(format!(
            "not saved: the set would be invalid ({} errors): fix the problems first",
            r.error_count()
        ))),
    }
}
