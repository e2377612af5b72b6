//! `[trust]`: who may change state. The file form ([`FileTrust`]) and the
//! checked settings ([`TrustConfig`]): the mTLS identities allowed to report
//! step-ups, the clock skew, and the trusted token issuers with their key
//! sources.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::duration::parse_duration;

/// The clock skew allowed on `exp`, `nbf` and `iat` unless configured.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The largest clock skew accepted: more would keep expired tokens usable.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// How long a fetched key set is used before it is fetched again.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(3600);
/// The least time between two fetches of a key set (a token with an unknown
/// `kid` fetches again, at most this often, so forged `kid`s cannot make the
/// sidecar hammer the identity provider).
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);

/// The least `jwks_min_refresh` a configuration may set.
pub const MIN_JWKS_MIN_REFRESH: Duration = Duration::from_secs(1);

/// The least `jwks_refresh` a configuration may set.
pub const MIN_JWKS_REFRESH: Duration = Duration::from_secs(60);

/// The signature algorithms a token may use: never `none`, never HMAC.
pub const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// `[trust]` as written in the config file.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTrust {
    /// mTLS client identities (URI SAN such as a SPIFFE ID, else DNS SAN,
    /// else subject CN) allowed to report step-ups without evidence.
    #[serde(default)]
    pub reporters: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (default `60s`, at most
    /// `5m`).
    pub clock_skew: Option<String>,
    /// `[[trust.issuers]]`: the token issuers whose signatures are believed.
    #[serde(default)]
    pub issuers: Vec<FileIssuer>,
}

/// One `[[trust.issuers]]` entry.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIssuer {
    /// The `iss` value, exactly as the issuer writes it (no `#`: it
    /// separates issuer and subject in `<iss>#<sub>`).
    pub issuer: String,
    /// Accepted `aud` values (a token must name at least one).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// A JWKS file (relative to the config file's directory).
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL (`https://`; `http://` only for a loopback host).
    pub jwks_url: Option<String>,
    /// PEM CA certificates that `jwks_url`'s server certificate must chain
    /// to, instead of the system's roots (an identity provider behind a
    /// private CA). Relative to the config file's directory.
    pub jwks_ca_file: Option<PathBuf>,
    /// The claim that holds the subject id (default `sub`).
    pub subject_claim: Option<String>,
    /// The tenant of this issuer's subjects: a step-up report with its
    /// evidence is for this tenant (with several issuers, one issuer's token
    /// then never elevates another tenant's user of the same id).
    pub tenant: Option<String>,
    /// Accepted signature algorithms, a subset of `RS256`, `PS256`,
    /// `ES256`, `EdDSA` (default: all four).
    pub algorithms: Option<Vec<String>>,
    /// How long a fetched key set is used (default `1h`, at least `1m`).
    pub jwks_refresh: Option<String>,
    /// The least time between two fetches (default `30s`, at least `1s`).
    pub jwks_min_refresh: Option<String>,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS file, re-read when it changes.
    File(PathBuf),
    /// A JWKS URL, fetched and cached.
    Url(String),
}

/// One trusted issuer, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerConfig {
    /// The `iss` value.
    pub issuer: Arc<str>,
    /// Accepted `aud` values (never empty).
    pub audiences: Vec<String>,
    /// Where the keys come from.
    pub keys: KeySource,
    /// For a URL: the PEM CA certificates its server certificate must chain
    /// to; `None`: the system's roots.
    pub jwks_ca_file: Option<PathBuf>,
    /// The claim that holds the subject id.
    pub subject_claim: String,
    /// The tenant of this issuer's subjects, if bound to one.
    pub tenant: Option<String>,
    /// Accepted signature algorithms (a non-empty subset of RS256, PS256,
    /// ES256, EdDSA).
    pub algorithms: Vec<Algorithm>,
    /// How long a fetched key set is used.
    pub jwks_refresh: Duration,
    /// The least time between two fetches.
    pub jwks_min_refresh: Duration,
}

impl IssuerConfig {
    /// An issuer with the defaults: claim `sub`, all algorithms, the
    /// default refresh intervals.
    pub fn new(issuer: &str, audiences: Vec<String>, keys: KeySource) -> Self {
        Self {
            issuer: Arc::from(issuer),
            audiences,
            keys,
            jwks_ca_file: None,
            subject_claim: "sub".to_owned(),
            tenant: None,
            algorithms: ALGORITHMS.to_vec(),
            jwks_refresh: DEFAULT_JWKS_REFRESH,
            jwks_min_refresh: DEFAULT_JWKS_MIN_REFRESH,
        }
    }
}

/// `[trust]`, checked. The default trusts nobody: step-up reports are off.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustConfig {
    /// mTLS identities allowed to report step-ups without evidence.
    pub reporters: Vec<Arc<str>>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub clock_skew: Duration,
    /// The trusted issuers.
    pub issuers: Vec<IssuerConfig>,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            reporters: Vec::new(),
            clock_skew: DEFAULT_CLOCK_SKEW,
            issuers: Vec::new(),
        }
    }
}

impl TrustConfig {
    /// Whether nothing is trusted (no reporters, no issuers): step-up
    /// reports are refused.
    pub fn is_off(&self) -> bool {
        self.reporters.is_empty() && self.issuers.is_empty()
    }

    /// Checks `file`; relative paths are resolved against `base` (the config
    /// file's directory). Each problem is pushed to `problems`, naming the
    /// key (`trust.issuers[0].jwks_url`).
    pub fn resolve(file: FileTrust, base: Option<&Path>, problems: &mut Vec<String>) -> Self {
        let mut reporters: Vec<Arc<str>> = Vec::new();
        for (i, r) in file.reporters.iter().enumerate() {
            if r.trim().is_empty() {
                problems.push(format!("trust.reporters[{i}]: empty identity"));
            } else {
                reporters.push(Arc::from(r.as_str()));
            }
        }
        let clock_skew = match file.clock_skew.as_deref() {
            None => DEFAULT_CLOCK_SKEW,
            Some(text) => match parse_duration(text) {
                Ok(d) if d <= MAX_CLOCK_SKEW => d,
                Ok(_) => {
                    problems.push(format!("trust.clock_skew `{text}`: more than 5m"));
                    DEFAULT_CLOCK_SKEW
                }
                Err(e) => {
                    problems.push(format!("trust.clock_skew `{text}`: {e}"));
                    DEFAULT_CLOCK_SKEW
                }
            },
        };
        let mut issuers: Vec<IssuerConfig> = Vec::new();
        for (i, f) in file.issuers.into_iter().enumerate() {
            let at = format!("trust.issuers[{i}]");
            if let Some(issuer) = issuer(f, &at, base, problems) {
                if issuers.iter().any(|o| o.issuer == issuer.issuer) {
                    problems.push(format!("{at}.issuer `{}`: listed twice", issuer.issuer));
                } else {
                    issuers.push(issuer);
                }
            }
        }
        Self {
            reporters,
            clock_skew,
            issuers,
        }
    }
}

/// One issuer, checked; `None` (with problems pushed) when unusable.
fn issuer(
    f: FileIssuer,
    at: &str,
    base: Option<&Path>,
    problems: &mut Vec<String>,
) -> Option<IssuerConfig> {
    let before = problems.len();
    if f.issuer.trim().is_empty() {
        problems.push(format!("{at}.issuer: required"));
    } else if f.issuer.contains('#') {
        // With several issuers a subject is `<iss>#<sub>` (here and in the
        // Envoy mapping): an issuer with `#` would make that split two ways.
        problems.push(format!(
            "{at}.issuer `{}`: contains `#`, which separates issuer and subject in `<iss>#<sub>`",
            f.issuer
        ));
    }
    if f.audiences.is_empty() || f.audiences.iter().any(|a| a.is_empty()) {
        problems.push(format!(
            "{at}.audiences: at least one non-empty audience is required (the client id the tokens are issued to)"
        ));
    }
    let resolve = |path: PathBuf| match base {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    };
    let ca = f.jwks_ca_file.map(resolve);
    if let Some(path) = &ca
        && let Err(e) = super::keys::read_roots(path)
    {
        problems.push(format!("{at}.jwks_ca_file: {e}"));
    }
    let keys = match (f.jwks_file, f.jwks_url) {
        (Some(path), None) => {
            let path = resolve(path);
            if ca.is_some() {
                problems.push(format!("{at}.jwks_ca_file: only with `jwks_url`"));
            }
            if let Err(e) = super::keys::read_file(&path) {
                problems.push(format!("{at}.jwks_file: {e}"));
            }
            Some(KeySource::File(path))
        }
        (None, Some(url)) => match check_url(&url) {
            Ok(()) => Some(KeySource::Url(url)),
            Err(e) => {
                problems.push(format!("{at}.jwks_url `{url}`: {e}"));
                None
            }
        },
        (Some(_), Some(_)) => {
            problems.push(format!(
                "{at}: set one of `jwks_file` and `jwks_url`, not both"
            ));
            None
        }
        (None, None) => {
            problems.push(format!(
                "{at}: one of `jwks_file` and `jwks_url` is required"
            ));
            None
        }
    };
    let subject_claim = f.subject_claim.unwrap_or_else(|| "sub".to_owned());
    if subject_claim.is_empty() {
        problems.push(format!("{at}.subject_claim: empty"));
    }
    let algorithms = match f.algorithms {
        None => ALGORITHMS.to_vec(),
        Some(names) => algorithms(&names, at, problems),
    };
    // A zero or tiny interval would let made-up `kid`s (or the periodic
    // refresh) hammer the issuer's JWKS endpoint: each has a floor.
    let duration = |key: &str,
                    text: Option<String>,
                    default: Duration,
                    (min, min_text): (Duration, &str),
                    problems: &mut Vec<String>| match text {
        None => default,
        Some(t) => match parse_duration(&t) {
            Ok(d) if d < min => {
                problems.push(format!("{at}.{key} `{t}`: less than {min_text}"));
                default
            }
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{at}.{key} `{t}`: {e}"));
                default
            }
        },
    };
    let jwks_refresh = duration(
        "jwks_refresh",
        f.jwks_refresh,
        DEFAULT_JWKS_REFRESH,
        (MIN_JWKS_REFRESH, "1m"),
        problems,
    );
    let jwks_min_refresh = duration(
        "jwks_min_refresh",
        f.jwks_min_refresh,
        DEFAULT_JWKS_MIN_REFRESH,
        (MIN_JWKS_MIN_REFRESH, "1s"),
        problems,
    );
    if problems.len() > before {
        return None;
    }
    Some(IssuerConfig {
        issuer: Arc::from(f.issuer.as_str()),
        audiences: f.audiences,
        keys: keys?,
        jwks_ca_file: ca,
        subject_claim,
        tenant: f.tenant,
        algorithms,
        jwks_refresh,
        jwks_min_refresh,
    })
}

/// The algorithms named, each one of [`ALGORITHMS`].
fn algorithms(names: &[String], at: &str, problems: &mut Vec<String>) -> Vec<Algorithm> {
    let mut out = Vec::new();
    for name in names {
        match ALGORITHMS.iter().find(|a| format!("{a:?}") == *name) {
            Some(a) => out.push(*a),
            None => problems.push(format!(
                "{at}.algorithms: `{name}` is not accepted (the accepted algorithms are `RS256`, `PS256`, `ES256`, `EdDSA`; never `none` or HMAC)"
            )),
        }
    }
    if names.is_empty() {
        problems.push(format!(
            "{at}.algorithms: empty (leave it out to accept all four)"
        ));
    }
    out
}

/// A JWKS URL must be `https://`, or `http://` to a loopback host (a local
/// test server): keys fetched in the clear could be swapped on the way.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().ok_or("no host")?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(
            "plain http is refused (the keys could be swapped on the way); use https (http is allowed only for a loopback host)".to_owned(),
        ),
        _ => Err("the scheme must be https".to_owned()),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml_text: &str) -> (TrustConfig, Vec<String>) {
        let file: FileTrust = toml::from_str(toml_text).unwrap();
        let mut problems = Vec::new();
        let c = TrustConfig::resolve(file, None, &mut problems);
        (c, problems)
    }

    #[test]
    fn no_settings_trust_nobody() {
        let (c, problems) = resolve("");
        assert!(problems.is_empty());
        assert!(c.is_off());
        assert_eq!(c.clock_skew, DEFAULT_CLOCK_SKEW);
    }

    #[test]
    fn urls_must_be_https_unless_loopback() {
        assert!(check_url("https://idp.example.com/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://[::1]:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        let e = check_url("http://idp.example.com/jwks").unwrap_err();
        assert!(e.starts_with("plain http is refused"), "{e}");
        assert!(check_url("ftp://idp.example.com/jwks").is_err());
    }

    #[test]
    fn names_each_bad_key() {
        let (c, problems) = resolve(
            r#"
clock_skew = "10m"
[[issuers]]
issuer = "https://idp.example.com"
audiences = []
jwks_url = "http://idp.example.com/jwks"
algorithms = ["HS256", "none", "ES256"]
[[issuers]]
issuer = "https://other.example.com"
audiences = ["stepup"]
jwks_url = "https://other.example.com/jwks"
jwks_file = "x.json"
"#,
        );
        assert!(c.issuers.is_empty());
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert_eq!(problems[0], "trust.clock_skew `10m`: more than 5m");
        assert!(problems[1].starts_with("trust.issuers[0].audiences: at least one"));
        assert!(problems[2].starts_with(
            "trust.issuers[0].jwks_url `http://idp.example.com/jwks`: plain http is refused"
        ));
        assert!(problems[3].starts_with("trust.issuers[0].algorithms: `HS256` is not accepted"));
        assert!(problems[4].starts_with("trust.issuers[0].algorithms: `none` is not accepted"));
        assert_eq!(
            problems[5],
            "trust.issuers[1]: set one of `jwks_file` and `jwks_url`, not both"
        );
    }

    #[test]
    fn a_good_issuer() {
        let (c, problems) = resolve(
            r#"
reporters = ["spiffe://cluster.local/ns/app/sa/web"]
clock_skew = "30s"
[[issuers]]
issuer = "https://idp.example.com"
audiences = ["stepup"]
jwks_url = "https://idp.example.com/jwks"
subject_claim = "oid"
algorithms = ["ES256"]
jwks_min_refresh = "1s"
"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!c.is_off());
        assert_eq!(c.clock_skew, Duration::from_secs(30));
        let i = &c.issuers[0];
        assert_eq!(&*i.issuer, "https://idp.example.com");
        assert_eq!(i.subject_claim, "oid");
        assert_eq!(i.algorithms, vec![Algorithm::ES256]);
        assert_eq!(i.jwks_min_refresh, Duration::from_secs(1));
        assert_eq!(i.jwks_refresh, DEFAULT_JWKS_REFRESH);
    }

    #[test]
    fn refuses_hash_in_issuer_and_too_short_refreshes() {
        let (c, problems) = resolve(
            r#"
[[issuers]]
issuer = "https://idp.example.com/#tenant"
audiences = ["stepup"]
jwks_url = "https://idp.example.com/jwks"
jwks_min_refresh = "500ms"
jwks_refresh = "59s"
[[issuers]]
issuer = "https://other.example.com"
audiences = ["stepup"]
jwks_url = "https://other.example.com/jwks"
jwks_min_refresh = "0s"
jwks_refresh = "1m"
"#,
        );
        assert!(c.issuers.is_empty());
        assert_eq!(
            problems,
            vec![
                "trust.issuers[0].issuer `https://idp.example.com/#tenant`: contains `#`, which separates issuer and subject in `<iss>#<sub>`",
                "trust.issuers[0].jwks_refresh `59s`: less than 1m",
                "trust.issuers[0].jwks_min_refresh `500ms`: less than 1s",
                "trust.issuers[1].jwks_min_refresh `0s`: less than 1s",
            ]
        );
    }
}
