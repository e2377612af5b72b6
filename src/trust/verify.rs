//! Verifying a signed token (a compact JWS whose payload is a JSON claims
//! set): what is expected of it ([`Expect`]), what a verified token gives
//! ([`Verified`]), and every way it can fail ([`TokenError`], with a stable
//! short code per check).

use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

/// The largest token accepted.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The `typ` of a Security Event Token (RFC 8417).
pub const SECEVENT_TYP: &str = "secevent+jwt";

/// What a token must be, beyond a good signature from a trusted issuer.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Accepted `aud` values; empty: the issuer's configured `audiences`.
    pub audiences: Vec<String>,
    /// Whether `exp` must be present (ID and access tokens: yes; SETs
    /// usually have none).
    pub require_exp: bool,
    /// The `typ` header the token must have (compared without case and
    /// without an `application/` prefix, RFC 7515 section 4.1.9). `None`:
    /// any `typ` but `secevent+jwt`, so an event can never pass for another
    /// kind of token (RFC 8725 section 3.11).
    pub typ: Option<String>,
}

impl Expect {
    /// Step-up evidence (an ID token or access token): the issuer's
    /// audiences, `exp` required, not a SET.
    pub fn evidence() -> Self {
        Self {
            audiences: Vec::new(),
            require_exp: true,
            typ: None,
        }
    }

    /// A Security Event Token for `audiences` (empty: the issuer's):
    /// `typ` `secevent+jwt`, `exp` optional.
    pub fn security_event(audiences: Vec<String>) -> Self {
        Self {
            audiences,
            require_exp: false,
            typ: Some(SECEVENT_TYP.to_owned()),
        }
    }
}

/// A token whose signature and claims were checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The issuer (`iss`), as configured.
    pub issuer: Arc<str>,
    /// The subject id: the issuer's `subject_claim` (default `sub`), when
    /// present as a string.
    pub subject: Option<String>,
    /// The `kid` of the key that verified the signature, if the header had
    /// one.
    pub kid: Option<String>,
    /// The signature algorithm.
    pub algorithm: Algorithm,
    /// The `typ` header, if any.
    pub typ: Option<String>,
    /// All claims of the payload.
    pub claims: Map<String, Value>,
}

impl Verified {
    /// The string claim `name`.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Why a token was not believed. Each variant is one failed check; its
/// [`code`](TokenError::code) is stable. Messages never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS with a JSON header and payload.
    #[error("not a signed JWT: {detail}")]
    Malformed {
        /// What is wrong.
        detail: String,
    },
    /// `alg` is not one the issuer accepts (`none` and HMAC never are).
    #[error("algorithm `{alg}` is not accepted (accepted: {accepted})")]
    AlgorithmNotAllowed {
        /// The token's `alg`.
        alg: String,
        /// The accepted algorithms.
        accepted: String,
    },
    /// The header has a `crit` parameter: no extension is understood.
    #[error("the header's `crit` names extensions this verifier does not understand")]
    CriticalHeader,
    /// The `typ` header is not the expected one.
    #[error("`typ` is {found}, expected {expected}")]
    Type {
        /// The `typ` found (or `none`).
        found: String,
        /// What was expected.
        expected: String,
    },
    /// The `iss` claim names no trusted issuer.
    #[error("issuer `{issuer}` is not trusted (`[[trust.issuers]]`)")]
    UnknownIssuer {
        /// The `iss` claim (shortened).
        issuer: String,
    },
    /// A required claim is missing.
    #[error("the `{claim}` claim is missing")]
    MissingClaim {
        /// The claim.
        claim: String,
    },
    /// A claim has the wrong JSON type.
    #[error("the `{claim}` claim is not {expected}")]
    InvalidClaim {
        /// The claim.
        claim: String,
        /// What it should be, e.g. `a number`.
        expected: &'static str,
    },
    /// No key of the issuer has the token's `kid`, even after a refetch.
    #[error("no key of issuer `{issuer}` has kid `{kid}`")]
    UnknownKey {
        /// The issuer.
        issuer: String,
        /// The token's `kid` (shortened), or `(none)`.
        kid: String,
    },
    /// The key named by `kid` is not of a type for `alg` (e.g. an RSA key
    /// for `ES256`), or the key set pins it to another algorithm.
    #[error("key `{kid}` does not verify `{alg}`")]
    KeyMismatch {
        /// The key id.
        kid: String,
        /// The token's algorithm.
        alg: String,
    },
    /// The issuer's keys could not be loaded: the token cannot be checked.
    #[error("the keys of issuer `{issuer}` are unavailable: {reason}")]
    KeysUnavailable {
        /// The issuer.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// `aud` names none of the accepted audiences.
    #[error("`aud` names none of the accepted audiences ({accepted})")]
    Audience {
        /// The accepted audiences.
        accepted: String,
    },
    /// `exp` is past (beyond the clock skew).
    #[error("expired (`exp` is {seconds} s ago)")]
    Expired {
        /// How long ago, in seconds.
        seconds: i64,
    },
    /// `nbf` is in the future (beyond the clock skew).
    #[error("not valid yet (`nbf` is {seconds} s ahead)")]
    NotYetValid {
        /// How far ahead, in seconds.
        seconds: i64,
    },
    /// `iat` is in the future (beyond the clock skew).
    #[error("issued in the future (`iat` is {seconds} s ahead)")]
    IssuedInFuture {
        /// How far ahead, in seconds.
        seconds: i64,
    },
}

impl TokenError {
    /// The stable short code of the failed check.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::AlgorithmNotAllowed { .. } => "alg_not_allowed",
            Self::CriticalHeader => "crit_unsupported",
            Self::Type { .. } => "typ_mismatch",
            Self::UnknownIssuer { .. } => "unknown_issuer",
            Self::MissingClaim { .. } => "missing_claim",
            Self::InvalidClaim { .. } => "invalid_claim",
            Self::UnknownKey { .. } => "unknown_kid",
            Self::KeyMismatch { .. } => "key_mismatch",
            Self::KeysUnavailable { .. } => "keys_unavailable",
            Self::BadSignature => "bad_signature",
            Self::Audience { .. } => "aud_mismatch",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::IssuedInFuture { .. } => "iat_future",
        }
    }

    /// The error as told to the one who sent the token: the failed check,
    /// without what only the configuration knows (the accepted audiences,
    /// where the keys come from and why they could not be loaded), which
    /// the full message (for the log) names.
    pub fn public_message(&self) -> String {
        match self {
            Self::Audience { .. } => "`aud` names none of the accepted audiences".to_owned(),
            Self::KeysUnavailable { issuer, .. } => {
                format!("the keys of issuer `{issuer}` are unavailable; retry later")
            }
            Self::UnknownIssuer { issuer } => format!("issuer `{issuer}` is not trusted"),
            other => other.to_string(),
        }
    }

    /// Whether the token is at fault (else the verifier could not check
    /// it: [`TokenError::KeysUnavailable`]).
    pub fn is_token_fault(&self) -> bool {
        !matches!(self, Self::KeysUnavailable { .. })
    }
}

fn malformed(detail: impl Into<String>) -> TokenError {
    TokenError::Malformed {
        detail: detail.into(),
    }
}

/// At most 100 characters of a value taken from a token, for a message.
pub(crate) fn shorten(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}...", s.get(..i).unwrap_or_default()),
        None => s.to_owned(),
    }
}

/// A token split and decoded, nothing verified yet.
pub(crate) struct Parts<'a> {
    /// `header.payload`, the signed bytes.
    pub signed: &'a str,
    /// The signature, base64url.
    pub signature: &'a str,
    /// The header's `alg`.
    pub alg: String,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The header's `typ`.
    pub typ: Option<String>,
    /// Whether the header has `crit`.
    pub crit: bool,
    /// The claims.
    pub claims: Map<String, Value>,
}

fn json_part(part: &str, what: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(malformed(format!("the {what} is not a JSON object"))),
    }
}

/// Splits and decodes `token`.
pub(crate) fn parts(token: &str) -> Result<Parts<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
    }
    let (signed, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| malformed("not three dot-separated parts"))?;
    let (header, payload) = signed
        .split_once('.')
        .ok_or_else(|| malformed("not three dot-separated parts"))?;
    if payload.contains('.') {
        return Err(malformed(
            "more than three dot-separated parts (an encrypted JWT is not accepted)",
        ));
    }
    let header = json_part(header, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.clone(),
        _ => return Err(malformed("the header has no `alg`")),
    };
    let text = |name: &str| -> Result<Option<String>, TokenError> {
        match header.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(malformed(format!("the header's `{name}` is not a string"))),
        }
    };
    let kid = text("kid")?;
    let typ = text("typ")?;
    let crit = header.contains_key("crit");
    let claims = json_part(payload, "payload")?;
    Ok(Parts {
        signed,
        signature,
        alg,
        kid,
        typ,
        crit,
        claims,
    })
}

/// `typ` normalised for comparison: lower case, no `application/`.
fn normal_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// Checks the `typ` header against `expect`.
pub(crate) fn check_typ(typ: Option<&str>, expect: &Expect) -> Result<(), TokenError> {
    let found = typ.map(normal_typ);
    match &expect.typ {
        Some(want) => {
            if found.as_deref() == Some(normal_typ(want).as_str()) {
                Ok(())
            } else {
                Err(TokenError::Type {
                    found: typ.map_or("absent".to_owned(), |t| format!("`{}`", shorten(t))),
                    expected: format!("`{want}`"),
                })
            }
        }
        None if found.as_deref() == Some(SECEVENT_TYP) => Err(TokenError::Type {
            found: format!("`{SECEVENT_TYP}`"),
            expected: "a token that is not a security event".to_owned(),
        }),
        None => Ok(()),
    }
}

/// A numeric date claim (seconds since the epoch), if present.
fn date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        // Fractions of a second are dropped (RFC 7519 allows them).
        Some(Value::Number(n)) => match n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)) {
            Some(v) => Ok(Some(v)),
            None => Err(TokenError::InvalidClaim {
                claim: name.to_owned(),
                expected: "a number of seconds",
            }),
        },
        Some(_) => Err(TokenError::InvalidClaim {
            claim: name.to_owned(),
            expected: "a number of seconds",
        }),
    }
}

/// Checks `aud` against `accepted`, and `exp`, `nbf`, `iat` against `now`
/// (seconds) with `skew` seconds of slack.
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    accepted: &[String],
    require_exp: bool,
    now: i64,
    skew: i64,
) -> Result<(), TokenError> {
    let names_accepted = |aud: &str| accepted.iter().any(|a| a == aud);
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => names_accepted(a),
        Some(Value::Array(list)) => list.iter().any(|v| v.as_str().is_some_and(names_accepted)),
        None => false,
        Some(_) => {
            return Err(TokenError::InvalidClaim {
                claim: "aud".to_owned(),
                expected: "a string or an array of strings",
            });
        }
    };
    if !aud_ok {
        let list: Vec<String> = accepted.iter().map(|a| format!("`{a}`")).collect();
        return Err(TokenError::Audience {
            accepted: list.join(", "),
        });
    }
    match date(claims, "exp")? {
        Some(exp) if now > exp.saturating_add(skew) => {
            return Err(TokenError::Expired {
                seconds: now.saturating_sub(exp),
            });
        }
        None if require_exp => {
            return Err(TokenError::MissingClaim {
                claim: "exp".to_owned(),
            });
        }
        _ => {}
    }
    if let Some(nbf) = date(claims, "nbf")?
        && nbf > now.saturating_add(skew)
    {
        return Err(TokenError::NotYetValid {
            seconds: nbf.saturating_sub(now),
        });
    }
    if let Some(iat) = date(claims, "iat")?
        && iat > now.saturating_add(skew)
    {
        return Err(TokenError::IssuedInFuture {
            seconds: iat.saturating_sub(now),
        });
    }
    Ok(())
}

/// The name of an accepted algorithm, as in a JWS header.
pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::PS256 => "PS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// The accepted algorithm named `name`, if it is one of `accepted`.
pub(crate) fn accepted_alg(name: &str, accepted: &[Algorithm]) -> Result<Algorithm, TokenError> {
    accepted
        .iter()
        .copied()
        .find(|a| alg_name(*a) == name)
        .ok_or_else(|| TokenError::AlgorithmNotAllowed {
            alg: shorten(name),
            accepted: accepted
                .iter()
                .map(|a| format!("`{}`", alg_name(*a)))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn claims_are_checked_with_skew() {
        let aud = vec!["stepup".to_owned()];
        let ok = claims(r#"{"aud": ["x", "stepup"], "exp": 1000, "nbf": 900, "iat": 900}"#);
        assert_eq!(check_claims(&ok, &aud, true, 950, 60), Ok(()));
        assert_eq!(check_claims(&ok, &aud, true, 1060, 60), Ok(()));
        let e = check_claims(&ok, &aud, true, 1061, 60).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            ("expired", "expired (`exp` is 61 s ago)")
        );
        let e = check_claims(&ok, &aud, true, 839, 60).unwrap_err();
        assert_eq!(e.code(), "not_yet_valid");
        let iat = claims(r#"{"aud": "stepup", "exp": 1000, "iat": 900}"#);
        let e = check_claims(&iat, &aud, true, 839, 60).unwrap_err();
        assert_eq!(e.code(), "iat_future");
        let other = claims(r#"{"aud": "other", "exp": 1000}"#);
        let e = check_claims(&other, &aud, true, 950, 60).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`aud` names none of the accepted audiences (`stepup`)"
        );
        let no_exp = claims(r#"{"aud": "stepup"}"#);
        assert_eq!(check_claims(&no_exp, &aud, false, 950, 60), Ok(()));
        let e = check_claims(&no_exp, &aud, true, 950, 60).unwrap_err();
        assert_eq!(e.to_string(), "the `exp` claim is missing");
        let bad = claims(r#"{"aud": "stepup", "exp": "soon"}"#);
        assert_eq!(
            check_claims(&bad, &aud, true, 950, 60).unwrap_err().code(),
            "invalid_claim"
        );
    }

    #[test]
    fn typ_rules() {
        let evidence = Expect::evidence();
        assert!(check_typ(None, &evidence).is_ok());
        assert!(check_typ(Some("JWT"), &evidence).is_ok());
        assert_eq!(
            check_typ(Some("application/secevent+jwt"), &evidence)
                .unwrap_err()
                .code(),
            "typ_mismatch"
        );
        let set = Expect::security_event(vec![]);
        assert!(check_typ(Some("secevent+jwt"), &set).is_ok());
        assert!(check_typ(Some("application/SECEVENT+JWT"), &set).is_ok());
        assert_eq!(
            check_typ(None, &set).unwrap_err().to_string(),
            "`typ` is absent, expected `secevent+jwt`"
        );
    }

    #[test]
    fn none_and_hmac_are_never_accepted() {
        let all = crate::trust::config::ALGORITHMS;
        for name in ["none", "HS256", "HS512", "RS512", "ES384"] {
            let e = accepted_alg(name, &all).unwrap_err();
            assert_eq!(e.code(), "alg_not_allowed", "{name}");
        }
        assert_eq!(accepted_alg("EdDSA", &all), Ok(Algorithm::EdDSA));
    }

    #[test]
    fn parts_rejects_shapes() {
        assert_eq!(parts("abc").err().unwrap().code(), "malformed");
        assert_eq!(parts("a.b.c.d.e").err().unwrap().code(), "malformed");
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(parts(&long).err().unwrap().code(), "malformed");
        assert_eq!(shorten(&"x".repeat(300)).len(), 103);
    }
}
