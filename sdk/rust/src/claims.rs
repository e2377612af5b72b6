//! The session of a request from the claims of a token the application's
//! own authentication layer has already verified: `sub`, `sid`, `acr`,
//! `amr`, `auth_time` (OpenID Connect). Nothing here verifies a token: put
//! the verified claims in the request extensions (as a
//! [`serde_json::Value`] or a [`StepUpClaims`]) and read them back here.

use serde::Deserialize;

use crate::proto::Session;

/// The claims stepup reads from a verified token. Fields missing from the
/// token, or of the wrong type, are `None` or empty: a session known less
/// well meets fewer requirements (fail closed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StepUpClaims {
    /// The subject (`sub`).
    #[serde(default)]
    pub sub: Option<String>,
    /// The session id (`sid`).
    #[serde(default)]
    pub sid: Option<String>,
    /// The Authentication Context Class Reference (`acr`).
    #[serde(default)]
    pub acr: Option<String>,
    /// The authentication methods (`amr`, RFC 8176).
    #[serde(default)]
    pub amr: Vec<String>,
    /// When the user last authenticated (`auth_time`, seconds since the
    /// epoch).
    #[serde(default)]
    pub auth_time: Option<i64>,
}

impl StepUpClaims {
    /// The claims of a JSON claims set. Lenient per claim: a claim of the
    /// wrong type is left out, not an error (the others still count).
    /// `amr` may be an array of strings or one string; `auth_time` an
    /// integer or a number (the fraction dropped).
    pub fn from_value(claims: &serde_json::Value) -> Self {
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let amr = match claims.get("amr") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let auth_time = claims.get("auth_time").and_then(|v| {
            v.as_i64()
                // Whole seconds of a float timestamp; `as` saturates.
                .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        });
        Self {
            sub: text("sub"),
            sid: text("sid"),
            acr: text("acr"),
            amr,
            auth_time,
        }
    }

    /// The claims in the extensions of `request`: a [`StepUpClaims`], else
    /// read from a [`serde_json::Value`]; `None` when there is neither (the
    /// request is not authenticated).
    pub fn from_request<B>(request: &http::Request<B>) -> Option<Self> {
        let extensions = request.extensions();
        if let Some(claims) = extensions.get::<StepUpClaims>() {
            return Some(claims.clone());
        }
        extensions.get::<serde_json::Value>().map(Self::from_value)
    }

    /// The session these claims describe (`sid`, `acr`, `amr`,
    /// `auth_time`).
    pub fn session(&self) -> Session {
        Session {
            id: self.sid.clone().unwrap_or_default(),
            acr: self.acr.clone().unwrap_or_default(),
            amr: self.amr.clone(),
            auth_time: self
                .auth_time
                .map(|seconds| pbjson_types::Timestamp { seconds, nanos: 0 }),
        }
    }
}

/// The session of a verified JSON claims set (see
/// [`StepUpClaims::from_value`]).
pub fn session_from_claims(claims: &serde_json::Value) -> Session {
    StepUpClaims::from_value(claims).session()
}
