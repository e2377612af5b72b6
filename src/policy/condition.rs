//! One condition compiled: the CEL program, its schema check, and every
//! problem placed at its column in the policy file, however the YAML scalar
//! holding it was written.

use std::sync::Arc;

use super::Condition;
use super::defs::{Sources, Spanned};
use super::diag::{Code, Diagnostic, Location, Report};
use super::schema::{self, Scope, Underline};
use crate::lists::Lists;

/// Compiles and schema-checks one expression, reporting problems at their
/// column in the policy file.
pub(super) fn condition(
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
                            Diagnostic::error(Code::CelSyntax, format!("invalid CEL: {}", e.msg)),
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
                        .place(Diagnostic::error(e.code, e.message), when.file, loc)
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
