//! `matches(text, pattern)`, CEL's regex test, with the patterns written in
//! the policies compiled once, when the set loads, instead of on every call
//! (the `cel` crate's own `matches` compiles its pattern per call: a
//! request-supplied `(?:\w{30}){30}` cost ~116 ms per decision).
//!
//! A pattern that is not in the set's table comes from the request, which
//! only a condition with `dynamic_regex: true` may do (checked at load): it
//! is compiled per call under [`DYNAMIC_SIZE_LIMIT`], and one that needs
//! more fails the condition (closed) instead of running long.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::types::CelString;
use regex::{Regex, RegexBuilder};

/// The function's name, as written in conditions.
pub const MATCHES: &str = "matches";

/// The largest compiled form (bytes) of a pattern written in a policy: the
/// `regex` crate's own default.
pub const LITERAL_SIZE_LIMIT: usize = 10 << 20;

/// The largest compiled form (bytes) of a pattern taken from the request,
/// compiled at run time: enough for any plain pattern of a few hundred
/// characters, and a bound on the time compiling and matching it take.
pub const DYNAMIC_SIZE_LIMIT: usize = 64 << 10;

/// The patterns written in a policy set's conditions, compiled.
#[derive(Debug, Default)]
pub struct Regexes(HashMap<Box<str>, Regex, foldhash::fast::RandomState>);

impl Regexes {
    /// Adds `pattern`, compiled as `regex`.
    pub fn insert(&mut self, pattern: &str, regex: Regex) {
        self.0.insert(pattern.into(), regex);
    }

    /// The compiled `pattern`, if a condition of the set writes it.
    pub fn get(&self, pattern: &str) -> Option<&Regex> {
        self.0.get(pattern)
    }
}

/// A pattern written in a policy, compiled, with the size of its automaton
/// (NFA states: what matching it costs per input byte, at worst), or why
/// it is not a valid regex (one line).
pub fn compile_literal(pattern: &str) -> Result<(Regex, usize), String> {
    let regex = RegexBuilder::new(pattern)
        .size_limit(LITERAL_SIZE_LIMIT)
        .build()
        .map_err(|e| one_line(&e))?;
    let states = regex_automata::nfa::thompson::NFA::compiler()
        .configure(
            regex_automata::nfa::thompson::Config::new().nfa_size_limit(Some(LITERAL_SIZE_LIMIT)),
        )
        .build(pattern)
        .map(|nfa| nfa.states().len())
        .map_err(|e| e.to_string())?;
    Ok((regex, states))
}

/// A pattern from the request, compiled under [`DYNAMIC_SIZE_LIMIT`].
pub fn compile_dynamic(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(DYNAMIC_SIZE_LIMIT)
        .dfa_size_limit(DYNAMIC_SIZE_LIMIT)
        .build()
        .map_err(|e| one_line(&e))
}

/// The `regex` crate's message on one line: its last line says what is
/// wrong (the lines before repeat the pattern with a caret).
fn one_line(e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => {
            format!("the compiled pattern would exceed {limit} bytes")
        }
        other => {
            let text = other.to_string();
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            last.unwrap_or(&text)
                .trim()
                .trim_start_matches("error: ")
                .to_owned()
        }
    }
}

/// Declares `matches` (as a function and as a method of strings) in `ctx`,
/// answering from `regexes` for the patterns they hold.
pub fn add_matches(ctx: &mut cel::Context<'_, '_>, regexes: &Arc<Regexes>) {
    let regexes = Arc::clone(regexes);
    let f = move |ftx: &cel::FunctionContext<'_, '_>| matches(&regexes, ftx);
    if let Err(e) = ctx.add_function(MATCHES, f) {
        // Only if the environment declared `matches` itself (the `cel`
        // crate's `regex` feature).
        tracing::error!("cannot register `{MATCHES}`: {e}");
    }
}

/// `text.matches(pattern)` or `matches(text, pattern)`: whether the regex
/// matches anywhere in the text (RE2 semantics, as in CEL).
fn matches(
    regexes: &Regexes,
    ftx: &cel::FunctionContext<'_, '_>,
) -> Result<bool, cel::ExecutionError> {
    let (text, pattern) = match (&ftx.this, ftx.args.as_slice()) {
        (Some(text), [pattern]) | (None, [text, pattern]) => (text, pattern),
        _ => return Err(ftx.error("takes a string and a pattern")),
    };
    let (Some(text), Some(pattern)) = (
        text.downcast_ref::<CelString>(),
        pattern.downcast_ref::<CelString>(),
    ) else {
        return Err(ftx.error("both arguments must be strings"));
    };
    if let Some(regex) = regexes.get(pattern.inner()) {
        return Ok(regex.is_match(text.inner()));
    }
    let regex = compile_dynamic(pattern.inner())
        .map_err(|e| ftx.error(format!("invalid pattern from the request: {e}")))?;
    Ok(regex.is_match(text.inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_patterns_report_their_size_and_errors_on_one_line() {
        let (re, states) = compile_literal("^(ios|android)$").unwrap();
        assert!(re.is_match("ios"));
        assert!(states > 0);
        let (_, big) = compile_literal(r"\w{10}").unwrap();
        assert!(big > 100 * states, "{big} vs {states}");
        assert_eq!(
            compile_literal(r"(?:\w{30}){30}").unwrap_err(),
            "the compiled pattern would exceed 10485760 bytes"
        );
        assert_eq!(compile_literal("(foo").unwrap_err(), "unclosed group");
    }

    #[test]
    fn dynamic_patterns_are_size_limited() {
        assert!(compile_dynamic("^a+$").is_ok());
        let e = compile_dynamic(r"(?:\w{30}){30}").unwrap_err();
        assert!(e.starts_with("the compiled pattern would exceed"), "{e}");
    }
}
