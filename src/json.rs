//! A compact JSON writer for decision-log lines: a [`serde::Serializer`]
//! producing the same JSON as `serde_json::to_writer` for the types we log
//! (the proto3 JSON of `DecideRequest` and `DecideResponse`, via their pbjson
//! `Serialize` impls, and `serde_json::Value`), but cheaper where a line's
//! cost goes: strings. `serde_json` inspects a string byte by byte; this
//! writer checks eight bytes at a time for anything JSON must escape and
//! copies clean runs whole (`docs/src/operations/performance.md` has the
//! measurement).
//!
//! Why not a `serde_json::ser::Formatter`: the escaping loop is not part of
//! the formatter; only what happens around it is.

use std::fmt::Display;

use serde::ser::{self, Serialize};

/// Why a value could not be written (only custom errors of a `Serialize`
/// impl, or a map key that is not a string).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Appends the JSON of `value` to `out`. On error, `out` may hold a partial
/// line: callers clear it.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(&mut Writer { out })
}

/// The serializer. Compound values write their separators themselves.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

/// The eight integer methods of a `Serializer`, each `$body(self, v)`.
macro_rules! integers {
    (|$w:ident, $v:ident| $body:expr) => {
        integers!(@ $w $v $body; serialize_i8 i8, serialize_i16 i16, serialize_i32 i32,
            serialize_i64 i64, serialize_u8 u8, serialize_u16 u16, serialize_u32 u32,
            serialize_u64 u64);
    };
    (@ $w:ident $v:ident $body:expr; $($name:ident $ty:ty),*) => {
        $(fn $name(self, $v: $ty) -> Result<(), Error> {
            let $w = self;
            $body
        })*
    };
}

/// A byte with each of the eight lanes set to `b`.
const fn lanes(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// Whether any of the eight bytes of `w` is a control character (< 0x20), a
/// quote or a backslash: the bytes JSON strings must escape. Exact: the
/// `haszero`/`hasless` tests below never report a byte that is not there
/// (bytes >= 0x80, UTF-8 continuation and lead bytes, never match).
#[inline]
fn needs_escape(w: u64) -> bool {
    const HIGH: u64 = lanes(0x80);
    let control = w.wrapping_sub(lanes(0x20)) & !w & HIGH;
    let q = w ^ lanes(b'"');
    let quote = q.wrapping_sub(lanes(1)) & !q & HIGH;
    let b = w ^ lanes(b'\\');
    let backslash = b.wrapping_sub(lanes(1)) & !b & HIGH;
    (control | quote | backslash) != 0
}

/// Writes `s` as a JSON string, escaping as `serde_json` does: `\"`, `\\`,
/// the short escapes for `\b \f \n \r \t`, `\u00XX` for other control
/// characters; everything else (non-ASCII included) as is.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most strings are clean: one check, one copy.
    if is_clean(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut clean = 0; // bytes[..clean] are written
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or([0; 8]));
        if needs_escape(word) {
            for (i, &byte) in chunk.iter().enumerate() {
                if let Some(esc) = escape(byte) {
                    out.extend_from_slice(bytes.get(clean..at + i).unwrap_or_default());
                    push_escape(out, byte, esc);
                    clean = at + i + 1;
                }
            }
        }
        at += 8;
    }
    for (i, &byte) in chunks.remainder().iter().enumerate() {
        if let Some(esc) = escape(byte) {
            out.extend_from_slice(bytes.get(clean..at + i).unwrap_or_default());
            push_escape(out, byte, esc);
            clean = at + i + 1;
        }
    }
    out.extend_from_slice(bytes.get(clean..).unwrap_or_default());
    out.push(b'"');
}

/// Whether `bytes` holds nothing JSON must escape: eight bytes at a time
/// (the last word overlapping the one before it), a byte at a time below
/// eight.
#[inline]
fn is_clean(bytes: &[u8]) -> bool {
    // A word that cannot be read (never: the chunks are eight bytes) counts
    // as dirty, which only costs the slow path.
    let word = |c: &[u8]| u64::from_le_bytes(<[u8; 8]>::try_from(c).unwrap_or([0; 8]));
    if bytes.len() < 8 {
        return !bytes.iter().any(|&b| escape(b).is_some());
    }
    let mut chunks = bytes.chunks_exact(8);
    if chunks.any(|c| needs_escape(word(c))) {
        return false;
    }
    chunks.remainder().is_empty()
        || !needs_escape(word(bytes.get(bytes.len() - 8..).unwrap_or_default()))
}

/// `"name":`, a field's key as [`Obj`] writes it, made at compile time (one
/// copy per key instead of four pushes and copies).
macro_rules! key {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}
pub(crate) use key;

/// A JSON object written field by field straight into a buffer, without
/// serde: the decision log's hot path. Keys are made by [`key!`]: `'static`
/// names that need no escaping (checked in debug builds).
pub struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    /// Opens an object.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Writes `"key":` (after a comma unless first; `key` as [`key!`]
    /// makes it) and returns the buffer for the value, which the caller
    /// must write.
    pub fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(
            key.len() > 3
                && key.starts_with('"')
                && key.ends_with("\":")
                && !key[1..key.len() - 2].bytes().any(|b| escape(b).is_some()),
            "{key:?}"
        );
        let out = &mut *self.out;
        if !std::mem::take(&mut self.first) {
            out.push(b',');
        }
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// A string field.
    pub fn str(&mut self, key: &'static str, v: &str) {
        write_str(self.key(key), v);
    }

    /// A string field left out when empty (proto3 JSON omits defaults).
    pub fn text(&mut self, key: &'static str, v: &str) {
        if !v.is_empty() {
            self.str(key, v);
        }
    }

    /// A field whose value is already JSON.
    pub fn raw(&mut self, key: &'static str, json: &[u8]) {
        self.key(key).extend_from_slice(json);
    }

    /// A list of strings, left out when empty.
    pub fn strs<'s, I>(&mut self, key: &'static str, items: I)
    where
        I: IntoIterator<Item = &'s str>,
        I::IntoIter: ExactSizeIterator,
    {
        let items = items.into_iter();
        if items.len() > 0 {
            write_strs(self.key(key), items);
        }
    }

    /// Closes the object.
    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// Writes `["a","b"]`.
pub fn write_strs<'s>(out: &mut Vec<u8>, items: impl IntoIterator<Item = &'s str>) {
    out.push(b'[');
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, s);
    }
    out.push(b']');
}

/// Writes an integer.
pub fn write_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Writes a float as `serde_json` does (`null` when not finite).
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    // Whole numbers (amounts, counts) as ryu writes them (`2500.0`), without
    // its general algorithm; ryu switches to exponents from 1e16.
    if v.fract() == 0.0 && v.abs() < 1e15 && !(v == 0.0 && v.is_sign_negative()) {
        write_int(out, v as i64);
        out.extend_from_slice(b".0");
    } else if v.is_finite() {
        push_float(out, ryu::Buffer::new().format_finite(v));
    } else {
        out.extend_from_slice(b"null");
    }
}

/// The escape for a byte, if it needs one: the short form's letter, or `u`.
#[inline]
fn escape(byte: u8) -> Option<u8> {
    Some(match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        0x00..=0x1f => b'u',
        _ => return None,
    })
}

fn push_escape(out: &mut Vec<u8>, byte: u8, esc: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if esc == b'u' {
        out.extend_from_slice(b"\\u00");
        for nibble in [byte >> 4, byte & 0xf] {
            out.push(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'));
        }
    } else {
        out.push(b'\\');
        out.push(esc);
    }
}

impl Writer<'_> {
    fn int(&mut self, v: impl itoa::Integer) {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    fn float(&mut self, v: impl ryu::Float, finite: bool) {
        if finite {
            push_float(self.out, ryu::Buffer::new().format_finite(v));
        } else {
            // As serde_json: JSON has no NaN or infinity.
            self.out.extend_from_slice(b"null");
        }
    }
}

/// Appends ryu's shortest round-trip text, with serde_json's exponent sign
/// (`1e+300`, where ryu writes `1e300`).
fn push_float(out: &mut Vec<u8>, text: &str) {
    match text.split_once('e') {
        Some((mantissa, exp)) if !exp.starts_with('-') => {
            out.extend_from_slice(mantissa.as_bytes());
            out.extend_from_slice(b"e+");
            out.extend_from_slice(exp.as_bytes());
        }
        _ => out.extend_from_slice(text.as_bytes()),
    }
}

/// A JSON array or object being written: `first` tells whether a comma is
/// due before the next element.
pub struct Compound<'a, 'b> {
    w: &'a mut Writer<'b>,
    first: bool,
    close: u8,
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.w.out.push(b',');
        }
    }

    /// A struct field's name: a `&'static str` from a derive or generated
    /// code (a Rust field name or a proto3 JSON name), which never needs
    /// escaping; checked in debug builds.
    fn key(&mut self, key: &'static str) {
        debug_assert!(!key.bytes().any(|b| escape(b).is_some()), "{key:?}");
        self.comma();
        let out = &mut *self.w.out;
        out.reserve(key.len() + 3);
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
    }

    fn end(self) {
        self.w.out.push(self.close);
    }
}

impl<'a, 'b> ser::Serializer for &'a mut Writer<'b> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, 'b>;
    type SerializeTuple = Compound<'a, 'b>;
    type SerializeTupleStruct = Compound<'a, 'b>;
    type SerializeTupleVariant = Compound<'a, 'b>;
    type SerializeMap = Compound<'a, 'b>;
    type SerializeStruct = Compound<'a, 'b>;
    type SerializeStructVariant = Compound<'a, 'b>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    integers!(|w, v| {
        w.int(v);
        Ok(())
    });
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.float(v, v.is_finite());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.float(v, v.is_finite());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        // As serde_json: an array of numbers.
        let mut seq = ser::Serializer::serialize_seq(self, Some(v.len()))?;
        for b in v {
            ser::SerializeSeq::serialize_element(&mut seq, b)?;
        }
        ser::SerializeSeq::end(seq)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a, 'b>, Error> {
        self.out.push(b'[');
        Ok(Compound {
            w: self,
            first: true,
            close: b']',
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'b>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        // {"variant":[...]}: the closing brace is written by `end`.
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.extend_from_slice(b":[");
        Ok(Compound {
            w: self,
            first: true,
            close: b']',
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a, 'b>, Error> {
        self.out.push(b'{');
        Ok(Compound {
            w: self,
            first: true,
            close: b'}',
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a, 'b>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.extend_from_slice(b":{");
        Ok(Compound {
            w: self,
            first: true,
            close: b'}',
        })
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.w)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        self.w.out.extend_from_slice(b"]}");
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        key.serialize(KeyWriter(&mut *self.w))?;
        self.w.out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.w)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.key(key);
        value.serialize(&mut *self.w)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.w.out.extend_from_slice(b"}}");
        Ok(())
    }
}

/// Map keys: JSON keys are strings, so only strings (and, as serde_json
/// does, numbers and bools, quoted) are accepted.
struct KeyWriter<'a, 'b>(&'a mut Writer<'b>);

impl KeyWriter<'_, '_> {
    fn quoted(self, text: &str) -> Result<(), Error> {
        write_str(self.0.out, text);
        Ok(())
    }
}

fn key_must_be_a_string() -> Error {
    Error("a JSON object key must be a string".to_owned())
}

impl ser::Serializer for KeyWriter<'_, '_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = ser::Impossible<(), Error>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.quoted(v)
    }
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.quoted(if v { "true" } else { "false" })
    }
    integers!(|w, v| w.quoted(itoa::Buffer::new().format(v)));
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.quoted(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.quoted(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_f32(self, _v: f32) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_f64(self, _v: f64) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ours<T: Serialize + ?Sized>(v: &T) -> String {
        let mut out = Vec::new();
        write(&mut out, v).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_like_serde_json_at_every_position_of_a_chunk() {
        for special in [
            '"', '\\', '\n', '\r', '\t', '\u{8}', '\u{c}', '\0', '\u{1f}',
        ] {
            for at in 0..20 {
                let s: String = (0..20)
                    .map(|i| if i == at { special } else { 'a' })
                    .collect();
                assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
            }
        }
        for s in ["", "é", "naïve — ünïcödé ✓", "\u{7f}\u{80}", "a\"b\\c"] {
            assert_eq!(ours(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(s in any::<String>()) {
            prop_assert_eq!(ours(&s), serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn any_float_is_written_as_serde_json_writes_it(
            v in prop_oneof![any::<f64>(), (-1e16..1e16f64).prop_map(f64::trunc)]
        ) {
            let mut out = Vec::new();
            write_f64(&mut out, v);
            let want = if v.is_finite() { serde_json::to_string(&v).unwrap() } else { "null".into() };
            prop_assert_eq!(String::from_utf8(out).unwrap(), want);
        }

        #[test]
        fn any_json_value_is_written_as_serde_json_writes_it(v in json_value()) {
            prop_assert_eq!(ours(&v), serde_json::to_string(&v).unwrap());
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,24}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(".{0,10}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn a_request_round_trips_through_its_proto3_json() {
        let json = r#"{
          "action": "payments.refund",
          "subject": { "id": "u-\"1\"", "roles": ["a\nb"],
                       "attributes": { "tags": ["x", 1.5, true, null, {"k": "v"}] } },
          "session": { "acr": "urn:stepup:aal1", "amr": ["pwd"], "authTime": "2026-11-27T09:00:00Z" },
          "network": { "ip": "203.0.113.7", "asn": 3320 },
          "resource": { "attributes": { "amount": 2500.25 } },
          "time": "2026-11-27T12:00:00.123Z"
        }"#;
        let req: crate::proto::v1::DecideRequest = serde_json::from_str(json).unwrap();
        let text = ours(&req);
        assert_eq!(text, serde_json::to_string(&req).unwrap());
        let back: crate::proto::v1::DecideRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, req);
    }
}
