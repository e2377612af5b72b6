//! One condition compiled: the CEL program, its schema check, its
//! worst-case cost, and every problem placed at its column in the policy
//! file, however the YAML scalar holding it was written.

use std::collections::HashMap;
use std::sync::Arc;

use super::Condition;
use super::cost::{self, CostLimits};
use super::defs::{Sources, Spanned};
use super::diag::{Code, Diagnostic, Location, Report};
use super::schema::{self, Scope, Underline};
use crate::lists::Lists;

/// What every condition of a set is compiled against.
pub(super) struct Setting<'a> {
    /// The functions' environment.
    pub env: &'a Arc<cel::Env>,
    /// The files, for diagnostics.
    pub sources: &'a Sources,
    /// The IP lists `ip_in` may name.
    pub lists: &'a Arc<Lists>,
    /// The cost limit and the sizes the estimate depends on.
    pub limits: CostLimits,
    /// Signals in the set (the length of `risk.signals`).
    pub signals: u64,
}

/// One condition to compile: its text, whose it is, and its owner's opt-in
/// to regex patterns from the request.
pub(super) struct Source<'a> {
    /// The expression and where it is written.
    pub when: &'a Spanned<String>,
    /// The signal or rule id.
    pub id: &'a str,
    /// A signal's or a rule's.
    pub scope: Scope,
    /// `dynamic_regex: true`.
    pub dynamic_regex: bool,
}

/// Compiles, schema-checks and costs one expression, reporting problems at
/// their column in the policy file.
pub(super) fn condition(
    set: &Setting<'_>,
    src: &Source<'_>,
    report: &mut Report,
) -> Option<(Condition, schema::Reads)> {
    let (sources, when, id) = (set.sources, src.when, src.id);
    if let Err(e) = crate::expr::limits::check(&when.value) {
        let loc = locate(sources, when, e.offset, 1);
        report.push(
            sources
                .place(
                    Diagnostic::error(Code::DepthLimit, e.message),
                    when.file,
                    loc,
                )
                .rule(id)
                .help(e.help),
        );
        return None;
    }
    let program = match set.env.compile(&when.value) {
        Ok(p) => p,
        Err(errors) => {
            for e in syntax_errors(errors) {
                // `pos` is (1-based line, 1-based column) in the expression.
                let line = usize::try_from(e.pos.0).unwrap_or(1).max(1);
                let col = usize::try_from(e.pos.1).unwrap_or(1).saturating_sub(1);
                let offset = char_offset_of(&when.value, line, col);
                let loc = locate_error(sources, when, offset);
                report.push(
                    sources
                        .place(
                            Diagnostic::error(
                                Code::CelSyntax,
                                format!("invalid CEL: {}", clean_message(&e.msg)),
                            ),
                            when.file,
                            loc,
                        )
                        .rule(id),
                );
            }
            return None;
        }
    };
    let depth = crate::expr::limits::depth(program.expression());
    if depth > crate::expr::limits::MAX_DEPTH {
        report.push(
            sources
                .place(
                    Diagnostic::error(
                        Code::DepthLimit,
                        format!(
                            "the condition's expression is {depth} levels deep, more than {}",
                            crate::expr::limits::MAX_DEPTH
                        ),
                    ),
                    when.file,
                    when.location,
                )
                .rule(id)
                .help(
                    "an operator chain nests one level per link: split it into signals or \
                     rules, or move long alternatives into a list (`x in [...]`)",
                ),
        );
        return None;
    }
    let ip_lists: Vec<&str> = set.lists.names().collect();
    match schema::check_in(program.expression(), src.scope, &ip_lists, Some(set.env)) {
        Ok(mut reads) => {
            let cost = check_cost(set, src, &program, &reads, report)?;
            Some((
                Condition {
                    source: Arc::from(when.value.as_str()),
                    fast: crate::expr::fast::Fast::compile(
                        program.expression(),
                        set.env,
                        set.lists,
                    ),
                    program,
                    volatile: false,
                    reads_risk: reads.risk,
                    time_zones: std::mem::take(&mut reads.time_zones).into(),
                    cost,
                },
                reads,
            ))
        }
        Err(errors) => {
            for e in errors {
                let loc = node_location(sources, when, &program, e.expr_id, &e.underline);
                report.push(
                    sources
                        .place(Diagnostic::error(e.code, e.message), when.file, loc)
                        .rule(id)
                        .maybe_help(e.help),
                );
            }
            None
        }
    }
}

/// The condition's worst-case cost, or `None` when it is above the limit or
/// takes a regex pattern from the request without the opt-in (reported).
fn check_cost(
    set: &Setting<'_>,
    src: &Source<'_>,
    program: &cel::Program,
    reads: &schema::Reads,
    report: &mut Report,
) -> Option<u64> {
    let (sources, when) = (set.sources, src.when);
    let mut ok = true;
    if !src.dynamic_regex {
        for (id, underline) in &reads.dynamic_regexes {
            let loc = node_location(sources, when, program, *id, underline);
            report.push(
                sources
                    .place(
                        Diagnostic::error(
                            Code::DynamicRegex,
                            "the pattern of `matches` is not written in the policy: it would be compiled from the request on every call",
                        ),
                        when.file,
                        loc,
                    )
                    .rule(src.id)
                    .help("write the pattern as a string literal, or set `dynamic_regex: true` on this signal or rule to accept patterns from the request (costed, and compiled under a size limit)"),
            );
            ok = false;
        }
    }
    let regex_states: HashMap<u64, usize> = reads
        .regexes
        .iter()
        .map(|r| (r.expr_id, r.states))
        .collect();
    let inputs = cost::Inputs {
        scope: src.scope,
        history_events: set.limits.history_events,
        signals: set.signals,
        regex_states: &regex_states,
    };
    let estimate = cost::estimate(program.expression(), &inputs);
    let limit = set.limits.max_condition_cost;
    if estimate > limit {
        let first_line = when.value.lines().next().unwrap_or("").trim_end();
        // On the condition's start; a long one is not underlined whole.
        let len = first_line.chars().count().clamp(1, 40);
        let loc = locate(sources, when, 0, len);
        report.push(
            sources
                .place(
                    Diagnostic::error(
                        Code::CostLimit,
                        format!(
                            "the condition may cost up to {} units, above the limit of {}",
                            cost::units(estimate),
                            cost::units(limit)
                        ),
                    ),
                    when.file,
                    loc,
                )
                .rule(src.id)
                .help(
                    "a comprehension costs its range times its body: nested `all`/`exists` over request lists (64 entries each) multiply; narrow the ranges, or raise `[limits] max_condition_cost` (see `stepup check --costs`)",
                ),
        );
        ok = false;
    }
    ok.then_some(estimate)
}

/// Where node `expr_id` of the condition `when` is, underlining `underline`.
fn node_location(
    sources: &Sources,
    when: &Spanned<String>,
    program: &cel::Program,
    expr_id: u64,
    underline: &Underline,
) -> Location {
    let (start, stop) = program.source_info().offset_for(expr_id).unwrap_or((0, 0));
    let start = usize::try_from(start).unwrap_or(0);
    // `stop` is inclusive; a select's node sits at its dot.
    let (start, len) = match underline {
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
    locate(sources, when, start, len)
}

/// The parser's errors worth showing. Past its first error the parser
/// recovers and may report what the recovery left behind (an incomplete
/// context of the grammar, named by its internal type); an error that stops
/// the parse (its nesting limit) is the only one that means anything then.
fn syntax_errors(errors: cel::ParseErrors) -> Vec<cel::ParseError> {
    let mut errors = errors.errors;
    if let Some(stop) = errors
        .iter()
        .position(|e| e.msg.contains("Recursion limit"))
    {
        let first = errors.swap_remove(stop);
        return vec![first];
    }
    if errors.iter().any(|e| !is_recovery_artifact(&e.msg)) {
        errors.retain(|e| !is_recovery_artifact(&e.msg));
    } else {
        // Nothing else to show: the artifact is the only sign of the error.
        errors.truncate(1);
    }
    errors
}

/// A message about the parse tree's internals, not about the text.
fn is_recovery_artifact(msg: &str) -> bool {
    msg.contains("Context") && (msg.starts_with("No `") || msg.starts_with("Incomplete `"))
}

/// The parser's message without the Rust `Debug` form it wraps some errors
/// in (`Syntax error: OtherError(ParseError { …, msg: "…", … })`).
fn clean_message(msg: &str) -> std::borrow::Cow<'_, str> {
    const FIELD: &str = "msg: \"";
    if let Some(start) = msg.find("OtherError(").and_then(|_| msg.find(FIELD)) {
        let rest = &msg[start + FIELD.len()..];
        if let Some(end) = rest.find('"') {
            return std::borrow::Cow::Owned(format!("syntax error: {}", &rest[..end]));
        }
    }
    std::borrow::Cow::Borrowed(msg)
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
    for line_no in first_line..=sources.line_count(when.file) {
        let Some(src) = sources.line(when.file, line_no) else {
            break;
        };
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
