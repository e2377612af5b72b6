//! Subjects of Security Event Tokens: Subject Identifiers (RFC 9493:
//! `iss_sub`, `email`, `opaque`, `account`, `phone_number`, `did`, `uri`,
//! `aliases`) and the complex subjects of the Shared Signals Framework
//! (`user`, `session`, `device`, `tenant`, ... members), and the
//! [`Selector`]s that say where a request's identifiers are in them.

use serde_json::{Map, Value};

/// The formats of RFC 9493 and SSF 1.0, with the fields each one has.
const FORMATS: &[(&str, &[&str])] = &[
    ("account", &["uri"]),
    ("email", &["email"]),
    ("iss_sub", &["iss", "sub"]),
    ("opaque", &["id"]),
    ("phone_number", &["phone_number"]),
    ("did", &["url"]),
    ("uri", &["uri"]),
    ("jwt_id", &["iss", "jti"]),
    ("saml_assertion_id", &["issuer", "assertion_id"]),
];

/// Where one identifier is in an event's subject: the field of an
/// identifier of one format (`iss_sub.sub`), in a member of a complex
/// subject (`user:iss_sub.sub`; the default member depends on what is
/// looked for: `user` for the subject id, `session`, `device`, `tenant`).
/// A simple subject is the `user` member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// The complex subject's member, when named.
    pub member: Option<String>,
    /// The identifier format.
    pub format: String,
    /// The field of that format.
    pub field: String,
}

/// Why a selector does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Not `format.field`.
    #[error(
        "expected `format.field` (e.g. `iss_sub.sub`), optionally after a member (`user:email.email`)"
    )]
    Shape,
    /// A format RFC 9493 and SSF do not define.
    #[error("unknown format `{0}` (known: {known})", known = known_formats())]
    Format(String),
    /// A field the format does not have.
    #[error("format `{format}` has no field `{field}` (it has {fields})")]
    Field {
        /// The format.
        format: String,
        /// The field asked for.
        field: String,
        /// The fields it has.
        fields: String,
    },
}

fn known_formats() -> String {
    let names: Vec<String> = FORMATS.iter().map(|(f, _)| format!("`{f}`")).collect();
    names.join(", ")
}

impl Selector {
    /// Parses `[member:]format.field`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let (member, rest) = match text.split_once(':') {
            Some((m, rest)) if !m.is_empty() => (Some(m.to_owned()), rest),
            Some(_) => return Err(SelectorError::Shape),
            None => (None, text),
        };
        let Some((format, field)) = rest.split_once('.') else {
            return Err(SelectorError::Shape);
        };
        let Some((_, fields)) = FORMATS.iter().find(|(f, _)| *f == format) else {
            return Err(SelectorError::Format(format.to_owned()));
        };
        if !fields.contains(&field) {
            let names: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
            return Err(SelectorError::Field {
                format: format.to_owned(),
                field: field.to_owned(),
                fields: names.join(", "),
            });
        }
        Ok(Self {
            member,
            format: format.to_owned(),
            field: field.to_owned(),
        })
    }

    /// The value this selector finds in `subject` (an event's `sub_id`),
    /// looking in `default_member` unless it names its own.
    pub fn find<'a>(
        &self,
        subject: &'a Map<String, Value>,
        default_member: &str,
    ) -> Option<&'a str> {
        self.find_in(subject, default_member).map(|(v, _)| v)
    }

    /// [`Selector::find`], with the Subject Identifier the value is in.
    fn find_in<'a>(
        &self,
        subject: &'a Map<String, Value>,
        default_member: &str,
    ) -> Option<(&'a str, &'a Map<String, Value>)> {
        let member = self.member.as_deref().unwrap_or(default_member);
        let id = if subject.get("format").and_then(Value::as_str) == Some("complex") {
            subject.get(member)?.as_object()?
        } else if member == "user" {
            subject
        } else {
            return None;
        };
        self.in_identifier(id)
    }

    /// The field in one Subject Identifier (or, for `aliases`, in the first
    /// of its identifiers of the selector's format), with that identifier.
    fn in_identifier<'a>(
        &self,
        id: &'a Map<String, Value>,
    ) -> Option<(&'a str, &'a Map<String, Value>)> {
        match id.get("format").and_then(Value::as_str)? {
            "aliases" => id
                .get("identifiers")?
                .as_array()?
                .iter()
                .filter_map(Value::as_object)
                .find_map(|i| self.in_identifier(i)),
            f if f == self.format => id
                .get(&self.field)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(|v| (v, id)),
            _ => None,
        }
    }
}

/// The first value any of `selectors` finds.
pub fn first<'a>(
    selectors: &[Selector],
    subject: &'a Map<String, Value>,
    default_member: &str,
) -> Option<&'a str> {
    first_in(selectors, subject, default_member).map(|(v, _)| v)
}

/// [`first`], with the Subject Identifier the value is in (its `format`
/// and, for `iss_sub`, its `iss`).
pub fn first_in<'a>(
    selectors: &[Selector],
    subject: &'a Map<String, Value>,
    default_member: &str,
) -> Option<(&'a str, &'a Map<String, Value>)> {
    selectors
        .iter()
        .find_map(|s| s.find_in(subject, default_member))
}

/// Checks the shape of a subject (RFC 9493, SSF 1.0 complex subjects):
/// an object with a string `format`; a complex one's members are
/// identifiers with a `format` too. The message names what is wrong.
pub fn check(subject: &Value) -> Result<&Map<String, Value>, String> {
    let Some(obj) = subject.as_object() else {
        return Err("`sub_id` is not an object".to_owned());
    };
    match obj.get("format").and_then(Value::as_str) {
        None => Err("`sub_id` has no `format`".to_owned()),
        Some("complex") => {
            for (name, member) in obj.iter().filter(|(k, _)| *k != "format") {
                if member
                    .as_object()
                    .and_then(|m| m.get("format"))
                    .and_then(Value::as_str)
                    .is_none()
                {
                    return Err(format!(
                        "member `{name}` of the complex `sub_id` is not a subject identifier"
                    ));
                }
            }
            Ok(obj)
        }
        Some(_) => Ok(obj),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    #[test]
    fn parses_and_names_what_is_wrong() {
        assert_eq!(
            sel("user:email.email"),
            Selector {
                member: Some("user".into()),
                format: "email".into(),
                field: "email".into()
            }
        );
        assert_eq!(Selector::parse("iss_sub"), Err(SelectorError::Shape));
        assert_eq!(Selector::parse(":iss_sub.sub"), Err(SelectorError::Shape));
        assert_eq!(
            Selector::parse("mail.email").unwrap_err().to_string(),
            "unknown format `mail` (known: `account`, `email`, `iss_sub`, `opaque`, `phone_number`, `did`, `uri`, `jwt_id`, `saml_assertion_id`)"
        );
        assert_eq!(
            Selector::parse("iss_sub.id").unwrap_err().to_string(),
            "format `iss_sub` has no field `id` (it has `iss`, `sub`)"
        );
    }

    #[test]
    fn finds_in_simple_complex_and_alias_subjects() {
        let simple =
            serde_json::json!({"format": "iss_sub", "iss": "https://idp/", "sub": "alice"});
        let simple = check(&simple).unwrap();
        assert_eq!(sel("iss_sub.sub").find(simple, "user"), Some("alice"));
        assert_eq!(
            sel("iss_sub.iss").find(simple, "user"),
            Some("https://idp/")
        );
        assert_eq!(sel("email.email").find(simple, "user"), None);
        // A simple subject is the user: it names no session.
        assert_eq!(sel("iss_sub.sub").find(simple, "session"), None);

        let complex = serde_json::json!({
            "format": "complex",
            "user": {"format": "aliases", "identifiers": [
                {"format": "email", "email": "alice@example.com"},
                {"format": "iss_sub", "iss": "https://idp/", "sub": "alice"}
            ]},
            "session": {"format": "opaque", "id": "s-1"},
            "device": {"format": "iss_sub", "iss": "https://idp/", "sub": "d-1"},
            "tenant": {"format": "opaque", "id": "acme"}
        });
        let complex = check(&complex).unwrap();
        let subject = [sel("iss_sub.sub"), sel("email.email")];
        assert_eq!(first(&subject, complex, "user"), Some("alice"));
        assert_eq!(
            first(&subject[1..], complex, "user"),
            Some("alice@example.com")
        );
        assert_eq!(sel("opaque.id").find(complex, "session"), Some("s-1"));
        assert_eq!(sel("opaque.id").find(complex, "device"), None);
        assert_eq!(sel("iss_sub.sub").find(complex, "device"), Some("d-1"));
        assert_eq!(sel("opaque.id").find(complex, "tenant"), Some("acme"));
        assert_eq!(
            sel("user:iss_sub.iss").find(complex, "tenant"),
            Some("https://idp/")
        );
    }

    #[test]
    fn checks_the_shape() {
        assert!(check(&serde_json::json!("alice")).is_err());
        assert!(check(&serde_json::json!({"sub": "alice"})).is_err());
        assert_eq!(
            check(&serde_json::json!({"format": "complex", "user": "alice"})).unwrap_err(),
            "member `user` of the complex `sub_id` is not a subject identifier"
        );
    }
}
