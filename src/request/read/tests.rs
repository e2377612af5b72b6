//! Errors name the field and say what it takes.

use super::*;
use crate::proto::v1::DecideRequest;

fn error(text: &str) -> ReadError {
    from_json::<DecideRequest>(text).unwrap_err()
}

#[test]
fn reads_a_request() {
    let r: DecideRequest = from_json(
        r#"{"action": "a.b", "network": {"asn": 3320}, "attributes": {"n": 9007199254740991}}"#,
    )
    .unwrap();
    assert_eq!(r.network.unwrap().asn, 3320);
    assert_eq!(r.action, "a.b");
    // An int64 is a string in proto3 JSON (as the decision log writes it).
    let r: DecideRequest = from_json(r#"{"action": "a.b", "network": {"asn": "3320"}}"#).unwrap();
    assert_eq!(r.network.unwrap().asn, 3320);
}

#[test]
fn an_integer_out_of_a_fields_range_names_the_field() {
    for asn in ["99999999999999999999", "9223372036854775808", "3.5"] {
        let e = error(&format!(
            r#"{{"action": "a.b", "network": {{"asn": {asn}}}}}"#
        ));
        assert_eq!(e.path, "network.asn", "{asn}");
        assert_eq!(
            e.message(),
            "`network.asn`: expected an integer within the field's range (as a number or a \
             string of digits)",
            "{asn}"
        );
    }
    let e = error(r#"{"action": "a.b", "network": {"asn": "x"}}"#);
    assert_eq!(e.message(), "`network.asn`: invalid digit found in string");
}

#[test]
fn an_integer_too_large_for_a_free_form_number_names_the_field() {
    let e =
        error(r#"{"action": "a.b", "resource": {"attributes": {"amount": 18446744073709551615}}}"#);
    assert_eq!(e.path, "resource.attributes.amount");
    assert!(
        e.message()
            .starts_with("`resource.attributes.amount`: an integer beyond ±2^53"),
        "{e}"
    );
    // A position for the caret, from serde_json.
    assert_eq!((e.error.line(), e.error.column()), (1, 76));
    let e = error(r#"{"action": "a.b", "attributes": {"l": [1, -9007199254740993]}}"#);
    assert_eq!(e.path, "attributes.l[1]");
    // Beyond u64 serde_json reads a float, which is held as it is.
    let r: DecideRequest =
        from_json(r#"{"action": "a.b", "attributes": {"n": 99999999999999999999}}"#).unwrap();
    assert!(r.attributes.contains_key("n"));
}

#[test]
fn other_errors_keep_their_words() {
    let e = error(r#"{"action": "a.b", "network": {"x": 1}}"#);
    assert_eq!(e.path, "network", "where the unknown field is");
    assert!(
        e.message()
            .starts_with("`network`: unknown field `x`, expected one of `ip`"),
        "{e}"
    );
    let e = error(r#"{"action": "a.b", "devce": {}}"#);
    assert!(e.message().starts_with("unknown field `devce`"), "{e}");
    let e = error("{\"action\": ");
    assert_eq!(e.path, "");
    assert!(e.message().starts_with("EOF while parsing"), "{e}");
    let e = error(r#"{"action": "a.b"} x"#);
    assert!(e.message().starts_with("trailing characters"), "{e}");
}
