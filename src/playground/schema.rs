//! `GET /api/v1/schema`: the fields of `DecideRequest`, read from the
//! protobuf descriptor set embedded in the binary
//! ([`crate::proto::FILE_DESCRIPTOR_SET`]), so the page's field completion
//! and checks follow the proto the server decodes with.
//!
//! Each field is `{name, proto, type, repeated?, ...}`: `name` its proto3
//! JSON name (lowerCamelCase), `proto` its name in the proto (also
//! accepted in JSON), and `type` one of
//!
//! - `string`, `number`, `bool`, `bytes` (base64 text);
//! - `enum`, with `enum` (its full name) and `values` (the names);
//! - `timestamp` (RFC 3339 text), `duration` (`"300s"`), `value` (any
//!   JSON), `struct` (a JSON object), `list` (a JSON array), `any` (a JSON
//!   object with `@type`): the well-known types, as proto3 JSON writes them;
//! - `message`, with `message` (its full name) and `fields` (the same,
//!   recursively; a message already being described is given without
//!   `fields` and with `recursive: true`);
//! - `map`, with `key` (the key's type) and `value` (the value's type,
//!   described like a field without `name`).
//!
//! `repeated: true` marks a list of the type.

use std::collections::HashMap;

use pbjson_types::field_descriptor_proto::{Label, Type};
use pbjson_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use serde_json::{Map, Value, json};

/// The message the request editor holds.
pub const REQUEST_MESSAGE: &str = "stepup.v1.DecideRequest";

/// The schema of [`REQUEST_MESSAGE`] from the embedded descriptor set;
/// an error names what the descriptor set lacks.
pub fn request_schema() -> Result<Value, String> {
    schema_of(crate::proto::FILE_DESCRIPTOR_SET, REQUEST_MESSAGE)
}

/// The schema of the message `name` (a full name without the leading dot)
/// in the encoded descriptor set `encoded`.
pub fn schema_of(encoded: &[u8], name: &str) -> Result<Value, String> {
    let set = <FileDescriptorSet as prost::Message>::decode(encoded)
        .map_err(|e| format!("cannot decode the embedded protobuf descriptor set: {e}"))?;
    let index = Index::of(&set);
    let full = format!(".{name}");
    let message = index
        .messages
        .get(full.as_str())
        .ok_or_else(|| format!("the embedded descriptor set has no message `{name}`"))?;
    let mut path = vec![full.clone()];
    let fields = index.fields(message, &mut path)?;
    Ok(json!({ "message": name, "fields": fields }))
}

/// The messages and enums of a descriptor set by full name (`.pkg.Name`).
struct Index<'a> {
    messages: HashMap<String, &'a DescriptorProto>,
    enums: HashMap<String, &'a EnumDescriptorProto>,
}

impl<'a> Index<'a> {
    fn of(set: &'a FileDescriptorSet) -> Self {
        let mut index = Index {
            messages: HashMap::new(),
            enums: HashMap::new(),
        };
        for file in &set.file {
            let scope = match file.package() {
                "" => String::new(),
                p => format!(".{p}"),
            };
            for e in &file.enum_type {
                index.enums.insert(format!("{scope}.{}", e.name()), e);
            }
            for m in &file.message_type {
                index.add(&scope, m);
            }
        }
        index
    }

    fn add(&mut self, scope: &str, message: &'a DescriptorProto) {
        let full = format!("{scope}.{}", message.name());
        for e in &message.enum_type {
            self.enums.insert(format!("{full}.{}", e.name()), e);
        }
        for nested in &message.nested_type {
            self.add(&full, nested);
        }
        self.messages.insert(full, message);
    }

    /// The fields of `message`; `path` holds the messages being described
    /// (the last is `message`), to stop at a recursive one.
    fn fields(
        &self,
        message: &DescriptorProto,
        path: &mut Vec<String>,
    ) -> Result<Vec<Value>, String> {
        message
            .field
            .iter()
            .map(|f| {
                let mut v = match self.map_entry(f) {
                    Some(entry) => self.map(entry, path)?,
                    None => self.type_of(f, path)?,
                };
                let Some(m) = v.as_object_mut() else {
                    return Err(format!("field `{}`: not an object", f.name()));
                };
                let mut out = Map::new();
                out.insert("name".into(), Value::String(json_name(f)));
                out.insert("proto".into(), Value::String(f.name().to_owned()));
                out.append(m);
                if f.label() == Label::Repeated && self.map_entry(f).is_none() {
                    out.insert("repeated".into(), Value::Bool(true));
                }
                Ok(Value::Object(out))
            })
            .collect()
    }

    /// The map entry message of `field`, if `field` is a map.
    fn map_entry(&self, field: &FieldDescriptorProto) -> Option<&'a DescriptorProto> {
        if field.label() != Label::Repeated || field.r#type() != Type::Message {
            return None;
        }
        self.messages
            .get(field.type_name())
            .copied()
            .filter(|m| m.options.as_ref().and_then(|o| o.map_entry) == Some(true))
    }

    /// A map field's type: its entry's `key` and `value` fields.
    fn map(&self, entry: &DescriptorProto, path: &mut Vec<String>) -> Result<Value, String> {
        let part = |name: &str| {
            entry
                .field
                .iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| format!("map entry `{}` has no `{name}` field", entry.name()))
        };
        let key = self.type_of(part("key")?, path)?;
        let value = self.type_of(part("value")?, path)?;
        let key = key.get("type").cloned().unwrap_or(Value::Null);
        Ok(json!({ "type": "map", "key": key, "value": value }))
    }

    /// The type of a field that is not a map, without its name or label.
    fn type_of(
        &self,
        field: &FieldDescriptorProto,
        path: &mut Vec<String>,
    ) -> Result<Value, String> {
        let scalar = |t: &str| Ok(json!({ "type": t }));
        match field.r#type() {
            Type::String => scalar("string"),
            Type::Bool => scalar("bool"),
            Type::Bytes => scalar("bytes"),
            Type::Double
            | Type::Float
            | Type::Int32
            | Type::Int64
            | Type::Uint32
            | Type::Uint64
            | Type::Sint32
            | Type::Sint64
            | Type::Fixed32
            | Type::Fixed64
            | Type::Sfixed32
            | Type::Sfixed64 => scalar("number"),
            Type::Enum => {
                let name = field.type_name();
                let e = self.enums.get(name).ok_or_else(|| {
                    format!(
                        "field `{}`: no enum `{name}` in the descriptor set",
                        field.name()
                    )
                })?;
                let values: Vec<&str> = e.value.iter().map(|v| v.name()).collect();
                Ok(
                    json!({ "type": "enum", "enum": name.trim_start_matches('.'), "values": values }),
                )
            }
            Type::Message | Type::Group => self.message_type(field, path),
        }
    }

    fn message_type(
        &self,
        field: &FieldDescriptorProto,
        path: &mut Vec<String>,
    ) -> Result<Value, String> {
        let name = field.type_name();
        let known = match name {
            ".google.protobuf.Timestamp" => Some("timestamp"),
            ".google.protobuf.Duration" => Some("duration"),
            ".google.protobuf.Value" => Some("value"),
            ".google.protobuf.Struct" => Some("struct"),
            ".google.protobuf.ListValue" => Some("list"),
            ".google.protobuf.Any" => Some("any"),
            ".google.protobuf.FieldMask" | ".google.protobuf.StringValue" => Some("string"),
            ".google.protobuf.BytesValue" => Some("bytes"),
            ".google.protobuf.BoolValue" => Some("bool"),
            ".google.protobuf.DoubleValue"
            | ".google.protobuf.FloatValue"
            | ".google.protobuf.Int32Value"
            | ".google.protobuf.Int64Value"
            | ".google.protobuf.UInt32Value"
            | ".google.protobuf.UInt64Value" => Some("number"),
            _ => None,
        };
        if let Some(t) = known {
            return Ok(json!({ "type": t }));
        }
        let short = name.trim_start_matches('.');
        if path.iter().any(|p| p == name) {
            return Ok(json!({ "type": "message", "message": short, "recursive": true }));
        }
        let message = self.messages.get(name).ok_or_else(|| {
            format!(
                "field `{}`: no message `{name}` in the descriptor set",
                field.name()
            )
        })?;
        path.push(name.to_owned());
        let fields = self.fields(message, path);
        path.pop();
        Ok(json!({ "type": "message", "message": short, "fields": fields? }))
    }
}

/// The field's proto3 JSON name: the descriptor's `json_name`, else the
/// name in lowerCamelCase as protoc derives it.
fn json_name(field: &FieldDescriptorProto) -> String {
    if let Some(n) = field.json_name.as_deref().filter(|n| !n.is_empty()) {
        return n.to_owned();
    }
    crate::proto::json_name(field.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbjson_types::{FileDescriptorProto, MessageOptions};

    fn field(
        name: &str,
        number: i32,
        label: Label,
        t: Type,
        type_name: &str,
    ) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(label as i32),
            r#type: Some(t as i32),
            type_name: (!type_name.is_empty()).then(|| type_name.into()),
            ..Default::default()
        }
    }

    fn encode(messages: Vec<DescriptorProto>) -> Vec<u8> {
        let set = FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("t.proto".into()),
                package: Some("t".into()),
                message_type: messages,
                ..Default::default()
            }],
        };
        prost::Message::encode_to_vec(&set)
    }

    #[test]
    fn a_recursive_message_is_described_once() {
        let node = DescriptorProto {
            name: Some("Node".into()),
            field: vec![
                field("child_node", 1, Label::Optional, Type::Message, ".t.Node"),
                field("tags", 2, Label::Repeated, Type::String, ""),
            ],
            ..Default::default()
        };
        let v = schema_of(&encode(vec![node]), "t.Node").unwrap();
        let child = &v["fields"][0];
        assert_eq!(child["name"], "childNode", "json_name derived: {v}");
        assert_eq!(child["proto"], "child_node");
        assert_eq!(child["recursive"], true, "{v}");
        assert!(child.get("fields").is_none(), "{v}");
        assert_eq!(v["fields"][1]["repeated"], true);
    }

    #[test]
    fn a_map_of_messages_and_a_missing_type_are_told_apart() {
        let entry = DescriptorProto {
            name: Some("ByIdEntry".into()),
            field: vec![
                field("key", 1, Label::Optional, Type::String, ""),
                field("value", 2, Label::Optional, Type::Message, ".t.Leaf"),
            ],
            options: Some(MessageOptions {
                map_entry: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let root = DescriptorProto {
            name: Some("Root".into()),
            field: vec![field(
                "by_id",
                1,
                Label::Repeated,
                Type::Message,
                ".t.Root.ByIdEntry",
            )],
            nested_type: vec![entry],
            ..Default::default()
        };
        let leaf = DescriptorProto {
            name: Some("Leaf".into()),
            field: vec![field("n", 1, Label::Optional, Type::Int64, "")],
            ..Default::default()
        };
        let v = schema_of(&encode(vec![root.clone(), leaf]), "t.Root").unwrap();
        let m = &v["fields"][0];
        assert_eq!(m["type"], "map", "{v}");
        assert!(m.get("repeated").is_none(), "a map is not a list: {v}");
        assert_eq!(m["key"], "string");
        assert_eq!(m["value"]["type"], "message");
        assert_eq!(m["value"]["fields"][0]["type"], "number");
        // Without `Leaf`, the schema names what is missing.
        let e = schema_of(&encode(vec![root]), "t.Root").unwrap_err();
        assert!(e.contains("no message `.t.Leaf`"), "{e}");
        let e = schema_of(&encode(vec![]), "t.Root").unwrap_err();
        assert!(e.contains("no message `t.Root`"), "{e}");
        assert!(schema_of(b"\xff\xff", "t.Root").is_err());
    }
}
