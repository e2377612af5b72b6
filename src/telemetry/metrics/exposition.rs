//! The exposition formats a scrape may ask for: Prometheus text 0.0.4, as
//! rendered, or OpenMetrics 1.0.

use std::fmt::Write as _;

/// The content type of the Prometheus text format 0.0.4.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics 1.0.
pub const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition `accept` (a request's `Accept` header) asks for: the
/// content type and `text` (a [`Metrics::render`] body with any metrics
/// appended to it) in that format. OpenMetrics 1.0 when the scraper accepts
/// `application/openmetrics-text` (Prometheus does by default), else text
/// 0.0.4 as it is.
pub fn exposition(accept: Option<&str>, text: String) -> (&'static str, String) {
    let wants_openmetrics = accept.is_some_and(|a| {
        a.split(',').any(|range| {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            // `q=0` is "not acceptable".
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && !params.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f64>().ok())
                        .is_some_and(|q| q <= 0.0)
                })
        })
    });
    if wants_openmetrics {
        (OPENMETRICS_FORMAT, openmetrics(&text))
    } else {
        (TEXT_FORMAT, text)
    }
}

/// Text format 0.0.4 as OpenMetrics 1.0: a counter's family is named
/// without `_total` (its samples keep it, or gain it), families named for a
/// unit (`_seconds`, `_bytes`) say so in `# UNIT`, and `# EOF` ends it.
fn openmetrics(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let family = |name: &'_ str| -> String {
        if counters.contains(name) {
            name.strip_suffix("_total").unwrap_or(name).to_owned()
        } else {
            name.to_owned()
        }
    };
    let mut out = String::with_capacity(text.len() + 1024);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let _ = writeln!(out, "# HELP {} {help}", family(name));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let name = family(name);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            if let Some(unit) = ["seconds", "bytes"]
                .into_iter()
                .find(|u| name.ends_with(&format!("_{u}")))
            {
                let _ = writeln!(out, "# UNIT {name} {unit}");
            }
        } else if line.is_empty() || line.starts_with('#') {
            // Comments other than HELP and TYPE have no place in OpenMetrics.
        } else {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let (name, rest) = line.split_at(end);
            if counters.contains(name) && !name.ends_with("_total") {
                let _ = writeln!(out, "{name}_total{rest}");
            } else {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out.push_str("# EOF\n");
    out
}
