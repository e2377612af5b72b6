//! Masks of the logged request: fields hashed (keyed SHA-256) or dropped,
//! named by their policy (`snake_case`) or JSON (`camelCase`) paths.
//!
//! A masked field's value may also appear elsewhere in the line: in an
//! error message or the explain trace (a CEL error that quotes the value),
//! or in another request field. [`Masks::apply`] therefore returns a
//! [`Scrub`]: every text of a masked value, which is then replaced
//! wherever it stands as a whole word in the line's strings and keys (by
//! its hash, or `[dropped]`).

use crate::proto::json_name;
use sha2::{Digest, Sha256};

/// The paths to hash and to drop, and the hash key.
pub(super) struct Masks {
    pub(super) hash: Vec<Vec<String>>,
    pub(super) drop: Vec<Vec<String>>,
    pub(super) key: Vec<u8>,
}

/// Nothing masked.
pub(super) const NO_MASKS: Masks = Masks {
    hash: Vec::new(),
    drop: Vec::new(),
    key: Vec::new(),
};

/// A dotted path's segments.
pub(super) fn split(path: &str) -> Vec<String> {
    path.split('.').map(str::to_owned).collect()
}

/// The value at `path` (field names as in policies or in JSON), for editing.
pub(super) fn locate<'v>(
    root: &'v mut serde_json::Value,
    path: &[String],
) -> Option<(&'v mut serde_json::Map<String, serde_json::Value>, String)> {
    let (last, parents) = path.split_last()?;
    let mut cur = root;
    for seg in parents {
        let obj = cur.as_object_mut()?;
        let key = if obj.contains_key(seg) {
            seg.clone()
        } else {
            json_name(seg)
        };
        cur = obj.get_mut(&key)?;
    }
    let obj = cur.as_object_mut()?;
    let key = if obj.contains_key(last) {
        last.clone()
    } else {
        json_name(last)
    };
    obj.contains_key(&key).then_some((obj, key))
}

/// What a dropped value's text becomes elsewhere in the line.
pub(super) const DROPPED: &str = "[dropped]";

impl Masks {
    pub(super) fn is_empty(&self) -> bool {
        self.hash.is_empty() && self.drop.is_empty()
    }

    /// `hash:` and the first 16 bytes of the keyed SHA-256 of `text`, in hex.
    fn hash(&self, text: &str) -> String {
        let mut h = Sha256::new();
        h.update(&self.key);
        h.update([0]);
        h.update(text.as_bytes());
        let digest = h.finalize();
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("hash:{hex}")
    }

    /// Masks `request`; returns the masked texts, to scrub from the rest of
    /// the line.
    pub(super) fn apply(&self, request: &mut serde_json::Value) -> Scrub {
        let mut scrub = Scrub::default();
        for path in &self.drop {
            if let Some((obj, key)) = locate(request, path)
                && let Some(v) = obj.remove(&key)
            {
                leaves(&v, &mut |t| scrub.add(t, DROPPED.to_owned()));
            }
        }
        for path in &self.hash {
            if let Some((obj, key)) = locate(request, path)
                && let Some(v) = obj.get_mut(&key)
            {
                leaves(v, &mut |t| scrub.add(t, self.hash(t)));
                let text = match &*v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                *v = serde_json::Value::String(self.hash(&text));
            }
        }
        scrub.order();
        scrub
    }
}

/// Calls `f` with the text of every string and number in `v`.
fn leaves(v: &serde_json::Value, f: &mut impl FnMut(&str)) {
    use serde_json::Value;
    match v {
        Value::String(s) => f(s),
        Value::Number(n) => f(&n.to_string()),
        Value::Array(items) => items.iter().for_each(|i| leaves(i, f)),
        Value::Object(fields) => fields.values().for_each(|i| leaves(i, f)),
        Value::Bool(_) | Value::Null => {}
    }
}

/// The texts of masked values, and what each becomes elsewhere in the line.
#[derive(Default)]
pub(super) struct Scrub {
    /// Longest first: a value that contains another is replaced whole.
    texts: Vec<(String, String)>,
}

impl Scrub {
    fn add(&mut self, text: &str, with: String) {
        if !text.is_empty() && !self.texts.iter().any(|(t, _)| t == text) {
            self.texts.push((text.to_owned(), with));
        }
    }

    fn order(&mut self) {
        self.texts
            .sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));
    }

    /// Whether there is nothing to replace.
    pub(super) fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Replaces every masked text in `v`'s strings and object keys.
    pub(super) fn apply(&self, v: &mut serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::String(s) => {
                if let Some(t) = self.text(s) {
                    *s = t;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.apply(i)),
            Value::Object(fields) => {
                let renamed: Vec<(String, String)> = fields
                    .keys()
                    .filter_map(|k| Some((k.clone(), self.text(k)?)))
                    .collect();
                for (old, new) in renamed {
                    if let Some(value) = fields.remove(&old) {
                        fields.insert(new, value);
                    }
                }
                fields.values_mut().for_each(|i| self.apply(i));
            }
            Value::Number(_) | Value::Bool(_) | Value::Null => {}
        }
    }

    /// `text` with the masked texts replaced, or `None` when none occurs.
    fn text(&self, text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for (raw, with) in &self.texts {
            let current = out.as_deref().unwrap_or(text);
            if let Some(t) = replace_words(current, raw, with) {
                out = Some(t);
            }
        }
        out
    }
}

/// A character that continues a word: a masked text is replaced only where
/// it is not part of a longer word (`de` in `device` stays).
fn word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with each whole-word occurrence of `raw` replaced by `with`, or
/// `None` when there is none.
fn replace_words(text: &str, raw: &str, with: &str) -> Option<String> {
    let mut out = String::new();
    let mut last = 0;
    for (at, _) in text.match_indices(raw) {
        let end = at + raw.len();
        if at < last {
            continue;
        }
        let before = text.get(..at).and_then(|t| t.chars().next_back());
        let after = text.get(end..).and_then(|t| t.chars().next());
        if before.is_some_and(word) || after.is_some_and(word) {
            continue;
        }
        out.push_str(text.get(last..at).unwrap_or_default());
        out.push_str(with);
        last = end;
    }
    if last == 0 && out.is_empty() {
        return None;
    }
    out.push_str(text.get(last..).unwrap_or_default());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_words_only() {
        assert_eq!(
            replace_words("`de` in device, de.", "de", "X").as_deref(),
            Some("`X` in device, X.")
        );
        assert_eq!(replace_words("device", "de", "X"), None);
        assert_eq!(
            replace_words("alice@example.com", "alice", "X").as_deref(),
            Some("X@example.com")
        );
        assert_eq!(replace_words("alice", "alice", "X").as_deref(), Some("X"));
        assert_eq!(replace_words("", "a", "X"), None);
    }

    #[test]
    fn scrubs_strings_and_keys_longest_first() {
        let mut scrub = Scrub::default();
        scrub.add("u-1", "h1".to_owned());
        scrub.add("u-1@x.org", "h2".to_owned());
        scrub.order();
        let mut v = serde_json::json!({
            "message": "no such key: `u-1@x.org` for u-1",
            "u-1": [1, "u-1"],
            "other": "u-10",
        });
        scrub.apply(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "message": "no such key: `h2` for h1",
                "h1": [1, "h1"],
                "other": "u-10",
            })
        );
    }
}
