//! The load-time check of `matches()`: a pattern written in the condition
//! is compiled now (an invalid one is an error at its caret) and kept for
//! the set; a pattern taken from the request is noted, for the condition to
//! refuse unless its author opted in (`dynamic_regex: true`).

use cel::common::ast::{CallExpr, Expr, LiteralValue};

use super::{SchemaError, Underline, Walker};
use crate::expr::matches::{MATCHES, compile_literal};
use crate::policy::diag::Code;

/// A `matches()` pattern written in a condition, compiled at load.
#[derive(Clone, Debug)]
pub struct LiteralRegex {
    /// The pattern as written.
    pub pattern: String,
    /// The pattern compiled.
    pub regex: regex::Regex,
    /// States of its automaton: what matching costs per input byte, at
    /// worst.
    pub states: usize,
    /// The pattern's node.
    pub expr_id: u64,
}

impl Walker {
    /// Checks `text.matches(pattern)` or `matches(text, pattern)`.
    pub(super) fn matches(&mut self, id: u64, call: &CallExpr) {
        let (text, pattern) = match (&call.target, call.args.as_slice()) {
            (Some(text), [pattern]) => (&**text, pattern),
            (None, [text, pattern]) => (text, pattern),
            _ => {
                if let Some(target) = &call.target {
                    self.walk(target);
                }
                for arg in &call.args {
                    self.walk(arg);
                }
                self.errors.push(SchemaError {
                    expr_id: id,
                    code: Code::InvalidCall,
                    message: format!("`{MATCHES}` takes a string and a pattern"),
                    underline: Underline::Node,
                    help: Some("write `text.matches(\"^[a-z]+$\")`".to_owned()),
                });
                return;
            }
        };
        self.walk(text);
        let Expr::Literal(LiteralValue::String(literal)) = &pattern.expr else {
            self.walk(pattern);
            // A select's node sits at its dot: underline its field.
            let underline = match &pattern.expr {
                Expr::Select(select) => Underline::Field(select.field.clone()),
                _ => Underline::Node,
            };
            self.reads.dynamic_regexes.push((pattern.id, underline));
            return;
        };
        let literal = literal.inner();
        match compile_literal(literal) {
            Ok((regex, states)) => self.reads.regexes.push(LiteralRegex {
                pattern: literal.to_owned(),
                regex,
                states,
                expr_id: pattern.id,
            }),
            Err(problem) => self.errors.push(SchemaError {
                expr_id: pattern.id,
                code: Code::InvalidRegex,
                message: format!("invalid regex: {problem}"),
                underline: Underline::Node,
                help: Some(
                    "patterns are RE2 syntax, as in CEL: escape a backslash twice in a quoted YAML string (`\"\\\\d+\"`), or use single quotes"
                        .to_owned(),
                ),
            }),
        }
    }
}
