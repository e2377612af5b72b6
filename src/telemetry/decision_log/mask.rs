//! Masks of the logged request: fields hashed (keyed SHA-256) or dropped,
//! named by their policy (`snake_case`) or JSON (`camelCase`) paths.

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

/// `auth_time` -> `authTime`: the JSON form uses lowerCamelCase names.
pub(super) fn camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
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
            camel(seg)
        };
        cur = obj.get_mut(&key)?;
    }
    let obj = cur.as_object_mut()?;
    let key = if obj.contains_key(last) {
        last.clone()
    } else {
        camel(last)
    };
    obj.contains_key(&key).then_some((obj, key))
}

impl Masks {
    pub(super) fn is_empty(&self) -> bool {
        self.hash.is_empty() && self.drop.is_empty()
    }

    pub(super) fn apply(&self, request: &mut serde_json::Value) {
        for path in &self.drop {
            if let Some((obj, key)) = locate(request, path) {
                obj.remove(&key);
            }
        }
        for path in &self.hash {
            if let Some((obj, key)) = locate(request, path)
                && let Some(v) = obj.get_mut(&key)
            {
                let text = match &*v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let mut h = Sha256::new();
                h.update(&self.key);
                h.update([0]);
                h.update(text.as_bytes());
                let digest = h.finalize();
                let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
                *v = serde_json::Value::String(format!("hash:{hex}"));
            }
        }
    }
}
