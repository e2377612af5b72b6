//! What a condition's text may hold before it reaches the CEL parser.
//!
//! The parser, the checks that walk the parsed expression and the
//! interpreter all recurse: once per bracket level, and once per link of an
//! operator chain (`1 + 1 + … + 1` parses to a tree as deep as the chain is
//! long). A few thousand links overflow a 2 MiB thread stack, which aborts
//! the process, and a policy reload must never take the sidecar down. So
//! the text is scanned first, in one pass and without allocating, and a
//! condition past either bound is refused with the place where it crossed.
//!
//! The bounds are far above what a policy needs (the example policies nest
//! 3 deep and use 12 operators at most) and below what overflows a thread
//! of [`STACK_BYTES`]: every thread that compiles or evaluates conditions
//! (the CLI's command thread, the server's runtime workers and its blocking
//! pool) is started with that stack, and the tests in this module compile
//! and evaluate conditions at the bounds on such a thread in debug builds,
//! whose frames are the largest.

/// The stack of every thread that compiles or evaluates conditions. The
/// usual default (2 MiB for spawned threads, `ulimit -s` for the main one)
/// is not something to rely on; the pages are only touched as deep as a
/// condition goes.
pub const STACK_BYTES: usize = 8 << 20;

/// Brackets (`(`, `[`, `{`) open at once.
pub(crate) const MAX_NESTING: usize = 32;

/// Operators, member selections and index brackets in one condition.
pub(crate) const MAX_OPERATORS: usize = 512;

/// Levels of the parsed expression: what the checks and the interpreter
/// recurse through. Operator chains (`a + b + c`, `x.y.z`, `l[0][1]`)
/// nest one level per link; `&&` and `||` chains come out balanced.
pub(crate) const MAX_DEPTH: usize = 100;

/// A condition's text that is past a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exceeded {
    /// The char offset in the condition where the bound was crossed.
    pub offset: usize,
    /// What was crossed, for the diagnostic.
    pub message: String,
    /// How to stay within it.
    pub help: &'static str,
}

/// Scans a condition's text for brackets nested deeper than
/// [`MAX_NESTING`] and for more than [`MAX_OPERATORS`] operators, skipping
/// string literals and comments.
pub(crate) fn check(text: &str) -> Result<(), Exceeded> {
    let mut depth = 0usize;
    let mut operators = 0usize;
    let mut word = Word::None;
    let mut chars = text.chars().enumerate().peekable();
    while let Some((at, c)) = chars.next() {
        // An identifier or number ends at the first char that cannot extend
        // it; the keyword `in` is an operator.
        let extends = c.is_alphanumeric() || c == '_' || (c == '.' && word == Word::Number);
        let before = word;
        if !extends {
            if word == Word::In {
                operators += 1;
            }
            word = Word::None;
        }
        match c {
            '"' | '\'' => {
                // `r"…"`: the prefix was read as an identifier.
                skip_string(&mut chars, c, before == Word::RawPrefix);
                word = Word::None;
            }
            '/' if chars.peek().is_some_and(|&(_, n)| n == '/') => {
                for (_, n) in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Exceeded {
                        offset: at,
                        message: format!(
                            "the condition nests brackets more than {MAX_NESTING} deep"
                        ),
                        help: "split it into signals or rules that each read a part",
                    });
                }
                if c == '[' {
                    operators += 1;
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '.' if word == Word::None => operators += 1,
            '+' | '-' | '*' | '/' | '%' | '?' | '<' | '>' | '!' => operators += 1,
            // `==`, `&&` and `||` are one operator written with two chars.
            '=' | '&' | '|' => {
                if chars.peek().is_some_and(|&(_, n)| n == c) {
                    chars.next();
                }
                operators += 1;
            }
            _ if extends => word = word.then(c),
            _ => {}
        }
        if operators > MAX_OPERATORS {
            return Err(Exceeded {
                offset: at,
                message: format!("the condition has more than {MAX_OPERATORS} operators"),
                help: "split it into signals or rules, or move long alternatives into a \
                       list (`x in [...]`)",
            });
        }
    }
    Ok(())
}

/// How many levels deep the parsed expression goes (a literal is 1),
/// walked without recursion.
pub(crate) fn depth(expr: &cel::IdedExpr) -> usize {
    use cel::common::ast::{EntryExpr, Expr};
    let mut deepest = 0;
    let mut stack = vec![(expr, 1usize)];
    while let Some((e, level)) = stack.pop() {
        deepest = deepest.max(level);
        let next = level + 1;
        match &e.expr {
            Expr::Call(call) => {
                stack.extend(call.target.iter().map(|t| (&**t, next)));
                stack.extend(call.args.iter().map(|a| (a, next)));
            }
            Expr::Comprehension(c) => stack.extend(
                [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ]
                .map(|x| (x, next)),
            ),
            Expr::List(list) => stack.extend(list.elements.iter().map(|x| (x, next))),
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(m) = &entry.expr {
                        stack.extend([(&m.key, next), (&m.value, next)]);
                    }
                }
            }
            Expr::Struct(st) => {
                for entry in &st.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        stack.push((&f.value, next));
                    }
                }
            }
            Expr::Select(select) => stack.push((&select.operand, next)),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    deepest
}

/// The identifier or number being read, as far as the scan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    None,
    Number,
    /// `r` or `R`: a raw string if a quote follows.
    RawPrefix,
    /// `i`, then `in`.
    I,
    In,
    Other,
}

impl Word {
    /// The word after reading `c`, which extends it.
    fn then(self, c: char) -> Self {
        match (self, c) {
            (Word::None, '0'..='9') => Word::Number,
            (Word::None, 'r' | 'R') => Word::RawPrefix,
            (Word::None, 'i') => Word::I,
            (Word::I, 'n') => Word::In,
            (Word::Number, _) => Word::Number,
            _ => Word::Other,
        }
    }
}

/// Skips a string literal whose opening `quote` was just read: `'…'`,
/// `"…"`, or tripled; backslash escapes unless `raw`.
fn skip_string(
    chars: &mut std::iter::Peekable<impl Iterator<Item = (usize, char)>>,
    quote: char,
    raw: bool,
) {
    // Two more quotes right away: a triple-quoted string, or an empty one.
    let triple = if chars.peek().is_some_and(|&(_, c)| c == quote) {
        chars.next();
        if chars.peek().is_some_and(|&(_, c)| c == quote) {
            chars.next();
            true
        } else {
            return; // `''`: empty
        }
    } else {
        false
    };
    let mut run = 0;
    while let Some((_, c)) = chars.next() {
        if c == '\\' && !raw {
            chars.next();
            run = 0;
            continue;
        }
        if c == quote {
            run += 1;
            if !triple || run == 3 {
                return;
            }
        } else {
            run = 0;
        }
    }
}

#[cfg(test)]
mod tests;
