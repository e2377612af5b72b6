//! The rules an action can match, found without looking at the others: exact
//! names by hash lookup ([`crate::glob::ActionIndex`]), and patterns by the
//! literal text before their first `*` up to its last dot (`svc12.` for
//! `svc12.*` and `svc12.up*`), so an action tries only the patterns of its
//! own prefixes, however many other services a set has.

use std::collections::HashMap;

use crate::glob;

/// Rules by action pattern; see the module docs. Built at load, read by
/// every decision (foldhash, as the exact names).
#[derive(Debug, Default)]
pub struct ActionIndex {
    /// Names without a `*`.
    exact: glob::ActionIndex,
    /// Patterns whose literal start has no dot (`*`, `*.delete`, `pay*`):
    /// tried on every action.
    anywhere: Vec<(Pattern, usize)>,
    /// The other patterns, by their literal start up to and including its
    /// last dot.
    by_prefix: HashMap<Box<str>, Vec<(Pattern, usize)>, foldhash::fast::RandomState>,
    /// The longest key of `by_prefix`: longer prefixes of an action are not
    /// looked up, so an action's many dots cost nothing more.
    longest: usize,
}

/// A pattern with a `*`.
#[derive(Debug)]
enum Pattern {
    /// Text then one `*` at the end (`payments.*`, `*`), the usual form:
    /// a prefix check, without splitting the pattern on every decision.
    Prefix(Box<str>),
    /// Any other ([`glob::matches`]).
    Glob(Box<str>),
}

impl Pattern {
    fn matches(&self, action: &str) -> bool {
        match self {
            Self::Prefix(prefix) => action.starts_with(&**prefix),
            Self::Glob(pattern) => glob::matches(pattern, action),
        }
    }
}

impl ActionIndex {
    /// Indexes `rule` under the action name or pattern `pattern`.
    pub fn insert(&mut self, pattern: &str, rule: usize) {
        let Some((literal, rest)) = pattern.split_once('*') else {
            self.exact.insert(pattern, rule);
            return;
        };
        let entry = if rest.is_empty() {
            (Pattern::Prefix(Box::from(literal)), rule)
        } else {
            (Pattern::Glob(Box::from(pattern)), rule)
        };
        match literal.rfind('.').and_then(|dot| literal.get(..=dot)) {
            Some(prefix) => {
                self.longest = self.longest.max(prefix.len());
                self.by_prefix
                    .entry(Box::from(prefix))
                    .or_default()
                    .push(entry);
            }
            None => self.anywhere.push(entry),
        }
    }

    /// The rules that match `action`, in ascending order, into `out`.
    pub fn lookup(&self, action: &str, out: &mut Vec<usize>) {
        self.exact.lookup(action, out);
        let exact = out.len();
        let mut try_all = |patterns: &[(Pattern, usize)]| {
            for (pattern, rule) in patterns {
                if pattern.matches(action) {
                    out.push(*rule);
                }
            }
        };
        try_all(&self.anywhere);
        if !self.by_prefix.is_empty() {
            let dots = action.bytes().enumerate().take(self.longest);
            for (dot, _) in dots.filter(|&(_, b)| b == b'.') {
                if let Some(patterns) = action.get(..=dot).and_then(|p| self.by_prefix.get(p)) {
                    try_all(patterns);
                }
            }
        }
        if out.len() > exact {
            out.sort_unstable();
            out.dedup();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(index: &ActionIndex, action: &str) -> Vec<usize> {
        let mut out = vec![99];
        index.lookup(action, &mut out);
        out
    }

    #[test]
    fn returns_sorted_unique_rules() {
        let mut index = ActionIndex::default();
        index.insert("payments.refund", 2);
        index.insert("payments.*", 0);
        index.insert("payments.refund", 0);
        index.insert("admin.*", 1);
        assert_eq!(lookup(&index, "payments.refund"), [0, 2]);
        assert_eq!(lookup(&index, "admin.grant"), [1]);
        assert!(lookup(&index, "other").is_empty());
    }

    /// The index finds exactly the patterns that match, wherever their
    /// stars and dots are.
    #[test]
    fn agrees_with_matching_every_pattern() {
        let patterns = [
            "*",
            "*.delete",
            "pay*",
            "payments.*",
            "payments.re*",
            "payments.*.x",
            "a.b.*",
            "a.b*.c",
            "a.*.c.*",
            "a.b.c.d",
            "a.",
            "a.*",
            "*a*",
            ".*",
            "a.b.",
            "a*.b*",
        ];
        let actions = [
            "",
            ".",
            "a",
            "a.",
            "a.b",
            "a.b.c",
            "a.b.c.d",
            "a.bx.c",
            "a.x.c.y",
            "payments",
            "payments.",
            "payments.refund",
            "payments.y.x",
            "paymentsx",
            "env.delete",
            "x.y.z.delete",
            "b",
        ];
        let mut index = ActionIndex::default();
        for (rule, p) in patterns.iter().enumerate() {
            index.insert(p, rule);
        }
        for action in actions {
            let expected: Vec<usize> = (0..patterns.len())
                .filter(|&r| glob::matches(patterns[r], action))
                .collect();
            assert_eq!(lookup(&index, action), expected, "{action}");
        }
    }
}
