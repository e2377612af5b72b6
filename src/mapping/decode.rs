//! Decoding what arrives encoded: percent escapes in paths and queries, and
//! the base64url JWT payload a proxy forwards in a header.

use std::borrow::Cow;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// base64url with or without padding, and with any trailing bits: a proxy
/// that forwards the payload may pad it or not, and the payload was
/// verified before it was encoded, so leniency here admits nothing.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Decodes base64url (or standard base64), padding optional.
pub(super) fn base64url(s: &str) -> Option<Vec<u8>> {
    // Any amount of padding is accepted: padding carries no data.
    let s = s.trim_end_matches('=');
    // Standard base64 differs from base64url in two characters only: both
    // are accepted, as a proxy may write either.
    let s = if s.contains(['+', '/']) {
        Cow::Owned(s.replace('+', "-").replace('/', "_"))
    } else {
        Cow::Borrowed(s)
    };
    let mut bytes = s.as_bytes();
    // A final lone character holds no whole byte: it is ignored rather
    // than rejected (it must still be a base64 character).
    if bytes.len() % 4 == 1 {
        let (last, rest) = bytes.split_last()?;
        if !(last.is_ascii_alphanumeric() || *last == b'-' || *last == b'_') {
            return None;
        }
        bytes = rest;
    }
    BASE64URL.decode(bytes).ok()
}

/// Decodes `%XX` escapes (and `+` as a space in a query); `None` when an
/// escape is malformed or the result is not UTF-8.
pub(super) fn percent_decode(s: &str, plus_is_space: bool) -> Option<Cow<'_, str>> {
    // The WHATWG decoding keeps a malformed escape as text; a value the
    // upstream may read differently is refused instead.
    if !well_formed_escapes(s) {
        return None;
    }
    let s = if plus_is_space && s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    match s {
        Cow::Borrowed(s) => percent_encoding::percent_decode_str(s).decode_utf8().ok(),
        Cow::Owned(s) => percent_encoding::percent_decode_str(&s)
            .decode_utf8()
            .ok()
            .map(|d| Cow::Owned(d.into_owned())),
    }
}

/// Every `%` starts two hex digits.
fn well_formed_escapes(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}
