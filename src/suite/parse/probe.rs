//! Telling an unknown request field from other conversion problems by
//! structure, not by error text: a request value is deserialized again
//! through a deserializer whose error type keeps an unknown field as data
//! (the field, and the fields the message has, as the generated code lists
//! them).

use std::fmt;

use serde::Deserialize as _;
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
use serde_json::Value;

use crate::proto::v1::DecideRequest;

/// A field the request message does not have.
#[derive(Debug)]
pub(super) struct UnknownField {
    /// As written.
    pub(super) field: String,
    /// The message's fields, in both proto3 JSON spellings.
    pub(super) expected: &'static [&'static str],
}

/// The unknown field that stops `value` from converting to a request, if
/// that is what stops it.
pub(super) fn unknown_field(value: &Value) -> Option<UnknownField> {
    match DecideRequest::deserialize(Json(value)) {
        Err(Problem::UnknownField(u)) => Some(u),
        Ok(_) | Err(Problem::Other(_)) => None,
    }
}

#[derive(Debug)]
enum Problem {
    UnknownField(UnknownField),
    Other(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnknownField(u) => write!(f, "unknown field `{}`", u.field),
            Problem::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Problem {}

impl de::Error for Problem {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Problem::Other(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Problem::UnknownField(UnknownField {
            field: field.to_owned(),
            expected,
        })
    }
}

/// A JSON value as a deserializer with [`Problem`] errors; it reads values
/// as `serde_json::from_value` does.
#[derive(Clone, Copy)]
struct Json<'a>(&'a Value);

impl<'de> IntoDeserializer<'de, Problem> for Json<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for Json<'de> {
    type Error = Problem;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, Some(f)) => visitor.visit_f64(f),
                (None, None, None) => Err(de::Error::custom("unreadable number")),
            },
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(Json));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(map) => {
                let mut entries =
                    MapDeserializer::new(map.iter().map(|(k, v)| (k.as_str(), Json(v))));
                let value = visitor.visit_map(&mut entries)?;
                entries.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Problem> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_unknown_fields_by_structure() {
        let u = unknown_field(&json!({ "subject": { "idd": "a" } })).unwrap();
        assert_eq!(u.field, "idd");
        assert!(u.expected.contains(&"id"), "{:?}", u.expected);
        let u = unknown_field(&json!({ "devce": {} })).unwrap();
        assert_eq!(u.field, "devce");
        assert!(u.expected.contains(&"device"));
    }

    #[test]
    fn other_problems_are_not_unknown_fields() {
        assert!(unknown_field(&json!({ "device": { "trusted": "yes" } })).is_none());
        assert!(unknown_field(&json!({ "time": "yesterday" })).is_none());
        assert!(
            unknown_field(
                &json!({ "action": "a", "session": { "authTime": "2026-01-01T00:00:00Z" } })
            )
            .is_none()
        );
    }
}
