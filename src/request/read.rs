//! A request read from JSON text (`stepup eval --context`, `replay` lines):
//! an error names the field at fault, with pbjson's terse messages said
//! plainly.
//!
//! The text is read once with `serde_json`; only when that fails is it read
//! again through `serde_path_to_error` for the field's path, so a replay of
//! a million good lines pays nothing for it.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

/// JSON that is not the value wanted.
#[derive(Debug)]
pub(crate) struct ReadError {
    /// The field at fault, as `network.asn` or `subject.roles[2]`; empty
    /// when the problem is not in a field (a syntax error, the top level).
    pub path: String,
    /// serde_json's error, with the line and column.
    pub error: serde_json::Error,
}

impl ReadError {
    /// The problem without serde_json's ` at line L column C`, in plain
    /// words, after the field's path.
    pub fn message(&self) -> String {
        let raw = self.error.to_string();
        let suffix = format!(
            " at line {} column {}",
            self.error.line(),
            self.error.column()
        );
        let bare = raw.strip_suffix(&suffix).unwrap_or(&raw);
        let plain = plain(bare);
        if self.path.is_empty() {
            plain.into_owned()
        } else {
            format!("`{}`: {plain}", self.path)
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Reads a `T` from `text`, all of it (nothing but whitespace after the
/// value).
pub(crate) fn from_json<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, ReadError> {
    let error = match serde_json::from_str(text) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    // A value of the wrong kind: read again, tracking the path this time
    // (it fails at the same place). Bad syntax has only a position.
    let path = if error.is_data() {
        let mut de = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Err(e) => e.path().to_string(),
            Ok(_) => String::new(),
        }
    } else {
        String::new()
    };
    // An unknown field is named by the message: the path is where it is.
    let path = if error.to_string().starts_with("unknown field") {
        path.rsplit_once('.')
            .map_or_else(String::new, |(parent, _)| parent.to_owned())
    } else {
        path
    };
    Err(ReadError {
        // `.` is the top level; `?` a place the tracker could not name.
        path: if path == "." || path == "?" {
            String::new()
        } else {
            path
        },
        error,
    })
}

/// pbjson's messages for a value of the wrong kind, said as what the field
/// takes; other messages as they are.
pub(crate) fn plain(message: &str) -> Cow<'_, str> {
    // An integer field (`int64`, `int32`) given a float, a number out of range or
    // a string that is not digits: pbjson tries a number, then a string,
    // and reports neither.
    if message.contains("did not match any variant of untagged enum") {
        return Cow::Borrowed(
            "expected an integer within the field's range (as a number or a string of digits)",
        );
    }
    // A free-form value (`attributes`) holds numbers as doubles: pbjson
    // refuses integers it cannot hold exactly rather than round them.
    if message.contains("out of range integral type conversion attempted") {
        return Cow::Borrowed(
            "an integer beyond ±2^53 cannot be held exactly as a number: send it as a string \
             (or as a decimal, if rounding is acceptable)",
        );
    }
    Cow::Borrowed(message)
}

#[cfg(test)]
mod tests;
