//! Who and what is believed when a call asks to change state: the trusted
//! token issuers with their keys ([`Trust::verify`] checks a signed token:
//! signature, `iss`, `aud`, `exp`, `nbf`, `iat`, `typ`) and the mTLS
//! identities allowed to report step-ups ([`Trust::is_reporter`]). Settings
//! come from `[trust]` ([`config`]); keys from a JWKS file or URL
//! ([`keys`]). Everything fails closed: an unknown issuer or key, a missing
//! key set, an algorithm outside RS256, PS256, ES256 and EdDSA (never
//! `none`, never HMAC) is a refusal.

pub mod config;
pub mod keys;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

pub use config::{FileIssuer, FileTrust, IssuerConfig, KeySource, TrustConfig};
pub use verify::{Expect, TokenError, Verified};

use keys::{KeyCache, Lookup};
use verify::shorten;

/// One trusted issuer and its cached keys.
struct Issuer {
    config: IssuerConfig,
    keys: KeyCache,
}

/// The trusted issuers and reporters. [`Trust::default`] trusts nobody.
pub struct Trust {
    issuers: Vec<Issuer>,
    reporters: Vec<Arc<str>>,
    skew: Duration,
}

impl Default for Trust {
    fn default() -> Self {
        Self::new(&TrustConfig::default())
    }
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<&str> = self.issuers.iter().map(|i| &*i.config.issuer).collect();
        f.debug_struct("Trust")
            .field("issuers", &issuers)
            .field("reporters", &self.reporters)
            .field("skew", &self.skew)
            .finish()
    }
}

impl Trust {
    /// The trust `config` describes. Key files are read now (one that
    /// cannot be read is logged and its issuer's tokens are refused until
    /// it can); key URLs are fetched on first use.
    pub fn new(config: &TrustConfig) -> Self {
        // The JWS backend: RustCrypto, chosen explicitly (as rustls is given
        // ring) rather than inferred from crate features. Installing twice is
        // harmless.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        Self {
            issuers: config
                .issuers
                .iter()
                .map(|c| Issuer {
                    config: c.clone(),
                    keys: KeyCache::new(c),
                })
                .collect(),
            reporters: config.reporters.clone(),
            skew: config.clock_skew,
        }
    }

    /// Whether nothing is trusted (no issuers, no reporters).
    pub fn is_off(&self) -> bool {
        self.issuers.is_empty() && self.reporters.is_empty()
    }

    /// Whether any issuer is configured.
    pub fn has_issuers(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// Whether `identity` (a verified mTLS client identity) is on
    /// `[trust] reporters`.
    pub fn is_reporter(&self, identity: &str) -> bool {
        self.reporters.iter().any(|r| **r == *identity)
    }

    /// The settings of the issuer `iss`, if trusted.
    pub fn issuer(&self, iss: &str) -> Option<&IssuerConfig> {
        self.find(iss).map(|i| &i.config)
    }

    fn find(&self, iss: &str) -> Option<&Issuer> {
        self.issuers.iter().find(|i| *i.config.issuer == *iss)
    }

    /// Verifies `token` as `expect` says, at the system clock.
    pub async fn verify(&self, token: &str, expect: &Expect) -> Result<Verified, TokenError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.verify_at(token, expect, now).await
    }

    /// Verifies `token` as `expect` says, at `now` (seconds since the
    /// epoch). The checks, in order: shape and size; `alg` among the
    /// accepted algorithms; no `crit`; `typ`; `iss` a trusted issuer (and
    /// `alg` one it accepts); the key by `kid` (refetched once on a miss)
    /// and of a type for `alg`; the signature; `aud`, `exp`, `nbf`, `iat`.
    pub async fn verify_at(
        &self,
        token: &str,
        expect: &Expect,
        now: i64,
    ) -> Result<Verified, TokenError> {
        let parts = verify::parts(token)?;
        // `none` and HMAC fail here, before any key is looked at.
        verify::accepted_alg(&parts.alg, &config::ALGORITHMS)?;
        if parts.crit {
            return Err(TokenError::CriticalHeader);
        }
        verify::check_typ(parts.typ.as_deref(), expect)?;
        let iss = match parts.claims.get("iss") {
            Some(serde_json::Value::String(s)) => s.as_str(),
            Some(_) => {
                return Err(TokenError::InvalidClaim {
                    claim: "iss".to_owned(),
                    expected: "a string",
                });
            }
            None => {
                return Err(TokenError::MissingClaim {
                    claim: "iss".to_owned(),
                });
            }
        };
        let issuer = self.find(iss).ok_or_else(|| TokenError::UnknownIssuer {
            issuer: shorten(iss),
        })?;
        let alg = verify::accepted_alg(&parts.alg, &issuer.config.algorithms)?;
        let kid = parts.kid.as_deref();
        let kid_text = || kid.map_or_else(|| "(none)".to_owned(), shorten);
        let key = match issuer.keys.lookup(kid, alg).await {
            Lookup::Found(k) => k,
            Lookup::Missing => {
                return Err(TokenError::UnknownKey {
                    issuer: issuer.config.issuer.to_string(),
                    kid: kid_text(),
                });
            }
            Lookup::Unavailable(reason) => {
                return Err(TokenError::KeysUnavailable {
                    issuer: issuer.config.issuer.to_string(),
                    reason,
                });
            }
        };
        if !key.kind.fits(alg) || key.alg.is_some_and(|a| a != alg) {
            return Err(TokenError::KeyMismatch {
                kid: kid_text(),
                alg: verify::alg_name(alg).to_owned(),
            });
        }
        let good =
            jsonwebtoken::crypto::verify(parts.signature, parts.signed.as_bytes(), &key.key, alg)
                .unwrap_or(false);
        if !good {
            return Err(TokenError::BadSignature);
        }
        let audiences = if expect.audiences.is_empty() {
            &issuer.config.audiences
        } else {
            &expect.audiences
        };
        let skew = i64::try_from(self.skew.as_secs()).unwrap_or(i64::MAX);
        verify::check_claims(&parts.claims, audiences, expect.require_exp, now, skew)?;
        let subject = parts
            .claims
            .get(&issuer.config.subject_claim)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        Ok(Verified {
            issuer: Arc::clone(&issuer.config.issuer),
            subject,
            kid: parts.kid.clone(),
            algorithm: alg,
            typ: parts.typ.clone(),
            claims: parts.claims,
        })
    }
}
