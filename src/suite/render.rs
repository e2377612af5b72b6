//! Test results for people (PASS/FAIL lines, expected and actual side by
//! side, the failing decision explained), for scripts (JSON) and for CI
//! systems (JUnit XML).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{CaseResult, Check, RunReport, full_name};
use crate::engine::TraceKind;

/// The report as text: a line per case, details under each failure, the
/// coverage when asked for, and the `N passed, M failed` summary line.
pub fn text(report: &RunReport<'_>, coverage: bool) -> String {
    let mut out = String::new();
    for r in &report.results {
        let status = if r.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "{status} {}", full_name(r.case));
        if !r.passed() {
            failure(&mut out, r);
        }
    }
    if coverage {
        out.push('\n');
        coverage_text(&mut out, report);
    }
    if !report.results.is_empty() || coverage {
        out.push('\n');
    }
    out.push_str(&report.summary());
    out
}

fn coverage_text(out: &mut String, report: &RunReport<'_>) {
    let c = &report.coverage;
    let rules = c.unmatched_rules();
    let signals = c.unfired_signals();
    let _ = writeln!(
        out,
        "coverage: {} of {} rules matched, {} of {} signals fired",
        c.rules.len() - rules.len(),
        c.rules.len(),
        c.signals.len() - signals.len(),
        c.signals.len()
    );
    if !rules.is_empty() {
        let _ = writeln!(out, "  rules no case matched: {}", rules.join(", "));
    }
    if !signals.is_empty() {
        let _ = writeln!(out, "  signals no case fired: {}", signals.join(", "));
    }
}

/// The details of a failed case: where it is, expected and actual side by
/// side (mismatches marked `✗`), and the decision's trace.
fn failure(out: &mut String, r: &CaseResult<'_>) {
    let _ = writeln!(out, "  --> {}:{}", r.file.display(), r.case.line);
    let rows: Vec<(&str, Vec<String>, Vec<String>, bool)> = r
        .checks
        .iter()
        .map(|c: &Check| (c.field, cell(&c.expected), cell(&c.actual), c.ok))
        .collect();
    let field_w = rows
        .iter()
        .map(|r| r.0.len())
        .chain(["field".len()])
        .max()
        .unwrap_or(5);
    let expected_w = rows
        .iter()
        .flat_map(|r| r.1.iter().map(|l| l.chars().count()))
        .chain(["expected".len()])
        .max()
        .unwrap_or(8);
    let _ = writeln!(
        out,
        "    {:field_w$}  {:expected_w$}  actual",
        "field", "expected"
    );
    for (field, expected, actual, ok) in rows {
        let mark = if ok { ' ' } else { '✗' };
        let lines = expected.len().max(actual.len());
        for i in 0..lines {
            let e = expected.get(i).map_or("", String::as_str);
            let a = actual.get(i).map_or("", String::as_str);
            let (m, f) = if i == 0 { (mark, field) } else { (' ', "") };
            let line = format!("  {m} {f:field_w$}  {e:expected_w$}  {a}");
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    if !r.actual.errors.is_empty() {
        for e in &r.actual.errors {
            let _ = writeln!(out, "  error in `{}`: {}", e.id, e.message);
        }
    }
    let _ = writeln!(out, "  trace:");
    let id_w = r
        .trace
        .iter()
        .map(|t| t.id.chars().count())
        .max()
        .unwrap_or(0);
    for t in &r.trace {
        let state = match (t.kind, t.fired) {
            (TraceKind::Signal, true) => "fired",
            (_, true) => "matched",
            _ => "-",
        };
        let _ = writeln!(
            out,
            "    {:6} {:id_w$}  {state:7}  {}",
            t.kind.as_str(),
            t.id,
            t.detail
        );
    }
    if !r.not_considered.is_empty() {
        let _ = writeln!(
            out,
            "    not considered (action `{}` matches none of their actions): {}",
            r.case.request.action,
            r.not_considered.join(", ")
        );
    }
}

/// A value as the lines of a table cell.
fn cell(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) if items.iter().any(Value::is_object) => {
            items.iter().map(requirement).collect()
        }
        Value::Object(m) if m.contains_key("min") => vec![format!(
            "{} to {}",
            m.get("min").map_or_else(String::new, scalar),
            m.get("max").map_or_else(String::new, scalar)
        )],
        other => vec![scalar(other)],
    }
}

fn requirement(v: &Value) -> String {
    let get = |k: &str| v.get(k).filter(|x| !x.is_null());
    let mut parts = Vec::new();
    if let Some(level) = get("level") {
        parts.push(format!("level {}", scalar(level)));
    }
    if let Some(methods) = get("methods").filter(|m| m.as_array().is_some_and(|a| !a.is_empty())) {
        parts.push(format!("methods {}", scalar(methods)));
    }
    if let Some(max_age) = get("max_age") {
        parts.push(format!("max_age {}", scalar(max_age)));
    }
    match get("rule") {
        Some(rule) if parts.is_empty() => scalar(rule),
        Some(rule) => format!("{}: {}", scalar(rule), parts.join(", ")),
        None => parts.join(", "),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// The report as JSON: `passed`, `failed`, `cases` (each with its checks,
/// and for a failure the decision and its trace), `coverage`.
pub fn json_report(report: &RunReport<'_>) -> Value {
    let cases: Vec<Value> = report
        .results
        .iter()
        .map(|r| {
            let mut v = json!({
                "suite": r.case.suite,
                "case": r.case.name,
                "file": r.file.display().to_string(),
                "line": r.case.line,
                "passed": r.passed(),
                "checks": r.checks,
            });
            if !r.passed()
                && let Some(m) = v.as_object_mut()
            {
                m.insert("actual".into(), json!(r.actual));
                m.insert("trace".into(), json!(r.trace));
            }
            v
        })
        .collect();
    let c = &report.coverage;
    json!({
        "revision": report.revision,
        "passed": report.passed(),
        "failed": report.failed(),
        "cases": cases,
        "coverage": {
            "rules": c.rules,
            "signals": c.signals,
            "unmatched_rules": c.unmatched_rules(),
            "unfired_signals": c.unfired_signals(),
        },
    })
}

/// The report as JUnit XML: a `<testsuite>` per suite with cases run, a
/// `<testcase>` per case, a `<failure>` with the mismatches and the trace.
pub fn junit(report: &RunReport<'_>) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total = report
        .results
        .iter()
        .map(|r| r.elapsed)
        .sum::<std::time::Duration>()
        .as_secs_f64();
    let _ = writeln!(
        out,
        "<testsuites name=\"stepup test\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{total:.6}\">",
        report.results.len(),
        report.failed()
    );
    let mut i = 0;
    while let Some(first) = report.results.get(i) {
        let group: Vec<&CaseResult<'_>> = report
            .results
            .get(i..)
            .unwrap_or(&[])
            .iter()
            .take_while(|r| r.case.suite == first.case.suite && r.file == first.file)
            .collect();
        i += group.len().max(1);
        let failures = group.iter().filter(|r| !r.passed()).count();
        let time = group
            .iter()
            .map(|r| r.elapsed)
            .sum::<std::time::Duration>()
            .as_secs_f64();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{time:.6}\" file=\"{}\">",
            escape(&first.case.suite),
            group.len(),
            escape(&first.file.display().to_string())
        );
        for r in group {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.6}\"",
                escape(&r.case.name),
                escape(&r.case.suite),
                escape(&r.file.display().to_string()),
                r.case.line,
                r.elapsed.as_secs_f64()
            );
            if r.passed() {
                out.push_str("/>\n");
                continue;
            }
            let message: Vec<String> = r
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| {
                    format!(
                        "{}: expected {}, got {}",
                        c.field,
                        cell(&c.expected).join("; "),
                        cell(&c.actual).join("; ")
                    )
                })
                .collect();
            let mut details = String::new();
            failure(&mut details, r);
            let _ = write!(
                out,
                ">\n      <failure message=\"{}\" type=\"mismatch\">{}</failure>\n    </testcase>\n",
                escape(&message.join("; ")),
                escape(&details)
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Escapes text for XML attributes and content, dropping the characters
/// XML 1.0 cannot carry.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_xml() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
    }

    #[test]
    fn cells() {
        assert_eq!(cell(&json!(["a", "b"])), vec!["[a, b]"]);
        assert_eq!(cell(&json!({"min": 10, "max": 40})), vec!["10 to 40"]);
        assert_eq!(
            cell(&json!([{"rule": "r", "level": "aal2", "methods": ["otp"], "max_age": "5m"}])),
            vec!["r: level aal2, methods [otp], max_age 5m"]
        );
        assert_eq!(cell(&json!([])), vec!["[]"]);
    }
}
