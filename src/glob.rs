//! Action patterns (`payments.refund`, `payments.*`, `*`) and the index that
//! finds the rules an action can match without looking at the others.

use std::collections::HashMap;

/// Why `pattern` is not a valid action pattern, if it is not.
pub fn check(pattern: &str) -> Option<&'static str> {
    if pattern.is_empty() {
        return Some("empty pattern");
    }
    if pattern.chars().any(char::is_whitespace) {
        return Some("patterns contain no whitespace");
    }
    if pattern.contains("**") {
        return Some("`**` is not supported: `*` already matches across dots");
    }
    None
}

/// Whether `action` matches `pattern`, where `*` matches any run of
/// characters (dots included). Allocates nothing. The index matches rules'
/// patterns split once at load instead ([`ActionIndex`]).
pub fn matches(pattern: &str, action: &str) -> bool {
    let Some((first, tail)) = pattern.split_once('*') else {
        return pattern == action; // no `*`: exact match
    };
    let (middle, last) = match tail.rsplit_once('*') {
        Some((middle, last)) => (Some(middle), last),
        None => (None, tail),
    };
    matches_split(
        first,
        middle.into_iter().flat_map(|m| m.split('*')),
        last,
        action,
    )
}

/// Whether `action` is `first`, then each of `middle` in order (anything
/// before each), then anything, ending with `last`.
fn matches_split<'p>(
    first: &str,
    middle: impl IntoIterator<Item = &'p str>,
    last: &str,
    action: &str,
) -> bool {
    let Some(mut rest) = action.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or(""),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A pattern with a `*`, split at its stars once, at load, so that matching
/// it on every decision is a prefix check, a search per middle part and a
/// suffix check (the same answer as [`matches`]).
#[derive(Debug)]
struct Glob {
    first: Box<str>,
    middle: Box<[Box<str>]>,
    last: Box<str>,
}

impl Glob {
    /// `pattern` split at its stars; `None` without one.
    fn new(pattern: &str) -> Option<Self> {
        let (first, tail) = pattern.split_once('*')?;
        let (middle, last) = match tail.rsplit_once('*') {
            Some((middle, last)) => (middle.split('*').map(Box::from).collect(), last),
            None => (Box::default(), tail),
        };
        Some(Self {
            first: first.into(),
            middle,
            last: last.into(),
        })
    }

    fn matches(&self, action: &str) -> bool {
        matches_split(
            &self.first,
            self.middle.iter().map(|p| &**p),
            &self.last,
            action,
        )
    }
}

/// Finds the rules whose `actions` can match an action: exact names by hash
/// lookup, patterns by a scan of the (few) patterns. The names are fixed at
/// load (requests only look up), so a seeded foldhash serves instead of
/// SipHash.
#[derive(Debug, Default)]
pub struct ActionIndex {
    exact: HashMap<String, Vec<usize>, foldhash::fast::RandomState>,
    patterns: Vec<(Glob, usize)>,
}

impl ActionIndex {
    /// Indexes rule `rule` under each of its action patterns.
    pub fn insert(&mut self, pattern: &str, rule: usize) {
        match Glob::new(pattern) {
            Some(glob) => self.patterns.push((glob, rule)),
            None => self.exact.entry(pattern.to_owned()).or_default().push(rule),
        }
    }

    /// The rules that match `action`, in ascending order, into `out`.
    pub fn lookup(&self, action: &str, out: &mut Vec<usize>) {
        out.clear();
        if let Some(rules) = self.exact.get(action) {
            out.extend_from_slice(rules);
        }
        for (glob, rule) in &self.patterns {
            if glob.matches(action) {
                out.push(*rule);
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_across_dots() {
        assert!(matches("payments.*", "payments.refund"));
        assert!(matches("payments.*", "payments.transfer.create"));
        assert!(!matches("payments.*", "payments"));
        assert!(!matches("payments.*", "paymentsx.refund"));
        assert!(matches("*", "anything"));
        assert!(matches("account.*.change", "account.email.change"));
        assert!(!matches("account.*.change", "account.email.delete"));
        assert!(matches("payments.refund", "payments.refund"));
        assert!(!matches("payments.refund", "payments.refunds"));
        assert!(matches("*.delete", "env.delete"));
        assert!(!matches("a*a", "a"));
    }

    #[test]
    fn a_split_pattern_matches_as_the_pattern() {
        let patterns =
            "* **x a* *a a*a a*b*c *.delete payments.* account.*.change a**b *b* x*y* *x*y ab*ba";
        let actions = "a aa aba abc a.b.c axbyc payments payments.refund account.email.change \
                       account.change env.delete xy yx abba b xay axy ab.ba";
        let actions: Vec<&str> = std::iter::once("")
            .chain(actions.split_whitespace())
            .collect();
        for p in patterns.split_whitespace() {
            let glob = Glob::new(p).unwrap_or_else(|| panic!("{p} has a star"));
            for &a in &actions {
                assert_eq!(glob.matches(a), matches(p, a), "{p} {a}");
            }
        }
        assert!(Glob::new("payments.refund").is_none());
    }

    #[test]
    fn index_returns_sorted_unique_rules() {
        let mut index = ActionIndex::default();
        index.insert("payments.refund", 2);
        index.insert("payments.*", 0);
        index.insert("payments.refund", 0);
        index.insert("admin.*", 1);
        let mut out = Vec::new();
        index.lookup("payments.refund", &mut out);
        assert_eq!(out, [0, 2]);
        index.lookup("admin.grant", &mut out);
        assert_eq!(out, [1]);
        index.lookup("other", &mut out);
        assert!(out.is_empty());
    }
}
