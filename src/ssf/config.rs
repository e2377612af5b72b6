//! `[ssf]` settings: the Shared Signals receiver (push delivery, RFC 8935).
//! Parsed from the config file, every bad key reported; bearer tokens come
//! from files or environment variables only, never from the config file
//! (which a chart renders into a ConfigMap).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::parse_duration;

use super::subject::Selector;

/// `[ssf]` in the config file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSsf {
    /// Accept events at `POST /ssf/events` (default false).
    pub enabled: Option<bool>,
    /// The `aud` values a SET must name (one of); empty: the audiences of
    /// the issuer in `[[trust.issuers]]`.
    pub audience: Option<OneOrMany>,
    /// How long an event id (`jti`) is remembered against replays, and the
    /// oldest `iat` accepted (default `24h`).
    pub jti_window: Option<String>,
    /// Event ids remembered at most (default 100000); past it, events are
    /// refused with 503 until older ids leave the window.
    pub max_jtis: Option<usize>,
    /// Where the subject id is in the event's subject: `format.field`
    /// selectors, tried in order (default `iss_sub.sub`).
    pub subject: Option<OneOrMany>,
    /// Where the tenant is (default: none, the empty tenant).
    pub tenant: Option<OneOrMany>,
    /// Where the session id is (default `opaque.id`).
    pub session: Option<OneOrMany>,
    /// Where the device id is (default `opaque.id`).
    pub device: Option<OneOrMany>,
    /// Assurance levels of `assurance-level-change` (`current_level`, or
    /// `namespace:current_level`) and `acr` values of `session-established`
    /// mapped to the policy set's level names.
    #[serde(default)]
    pub levels: BTreeMap<String, String>,
    /// The transmitters' streams: which issuers may send events, and their
    /// bearer tokens. None: every issuer of `[[trust.issuers]]`, no token.
    #[serde(default)]
    pub streams: Vec<FileStream>,
}

/// One string or a list of them.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `[[ssf.streams]]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStream {
    /// The transmitter's issuer (`iss` of its SETs), one of
    /// `[[trust.issuers]]`.
    pub issuer: String,
    /// A file holding the bearer token the transmitter sends
    /// (`Authorization: Bearer ...`); relative to the config file.
    pub bearer_token_file: Option<PathBuf>,
    /// An environment variable holding it.
    pub bearer_token_env: Option<String>,
}

/// A bearer token, never shown in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// A stream: an issuer that may send events, and its token if it must
/// present one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// The issuer.
    pub issuer: String,
    /// The bearer token, when required.
    pub token: Option<Token>,
}

/// Where each identifier of a request is found in an event's subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectMapping {
    /// `subject.id`.
    pub subject: Vec<Selector>,
    /// `subject.tenant` (empty: none).
    pub tenant: Vec<Selector>,
    /// `session.id`.
    pub session: Vec<Selector>,
    /// `device.id`.
    pub device: Vec<Selector>,
}

/// The resolved `[ssf]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsfConfig {
    /// Whether the receiver is on.
    pub enabled: bool,
    /// Accepted `aud` values (empty: the issuer's audiences).
    pub audience: Vec<String>,
    /// The replay window.
    pub jti_window: Duration,
    /// Event ids remembered at most.
    pub max_jtis: usize,
    /// The subject mapping.
    pub mapping: SubjectMapping,
    /// Level names by assurance level or acr value.
    pub levels: BTreeMap<String, String>,
    /// The streams (empty: every trusted issuer, no token).
    pub streams: Vec<Stream>,
}

impl Default for SsfConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            audience: Vec::new(),
            jti_window: Duration::from_secs(24 * 3600),
            max_jtis: 100_000,
            mapping: SubjectMapping {
                subject: vec![Selector::parse("iss_sub.sub").unwrap_or_default()],
                tenant: Vec::new(),
                session: vec![Selector::parse("opaque.id").unwrap_or_default()],
                device: vec![Selector::parse("opaque.id").unwrap_or_default()],
            },
            levels: BTreeMap::new(),
            streams: Vec::new(),
        }
    }
}

impl SsfConfig {
    /// Resolves `[ssf]` (paths relative to `base`, the config file's
    /// directory), adding a line to `problems` per bad key.
    pub fn resolve(file: FileSsf, base: Option<&Path>, problems: &mut Vec<String>) -> Self {
        Self::resolve_with(file, base, problems, |name| std::env::var(name).ok())
    }

    /// [`SsfConfig::resolve`] reading environment variables with `env`.
    pub fn resolve_with(
        file: FileSsf,
        base: Option<&Path>,
        problems: &mut Vec<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let defaults = Self::default();
        let jti_window = match file.jti_window {
            None => defaults.jti_window,
            Some(t) => match parse_duration(&t) {
                Ok(d) if d > Duration::ZERO => d,
                Ok(_) => {
                    problems.push("ssf.jti_window must be positive".to_owned());
                    defaults.jti_window
                }
                Err(e) => {
                    problems.push(format!("ssf.jti_window `{t}`: {e}"));
                    defaults.jti_window
                }
            },
        };
        let max_jtis = match file.max_jtis {
            Some(0) => {
                problems.push("ssf.max_jtis must be at least 1".to_owned());
                defaults.max_jtis
            }
            Some(n) => n,
            None => defaults.max_jtis,
        };
        let mut selectors = |name: &str, v: Option<OneOrMany>, default: Vec<Selector>| match v {
            None => default,
            Some(v) => v
                .into_vec()
                .into_iter()
                .filter_map(|s| match Selector::parse(&s) {
                    Ok(sel) => Some(sel),
                    Err(e) => {
                        problems.push(format!("ssf.{name} `{s}`: {e}"));
                        None
                    }
                })
                .collect(),
        };
        let mapping = SubjectMapping {
            subject: selectors("subject", file.subject, defaults.mapping.subject),
            tenant: selectors("tenant", file.tenant, defaults.mapping.tenant),
            session: selectors("session", file.session, defaults.mapping.session),
            device: selectors("device", file.device, defaults.mapping.device),
        };
        if mapping.subject.is_empty() {
            problems.push("ssf.subject must name at least one selector".to_owned());
        }
        let audience = file.audience.map(OneOrMany::into_vec).unwrap_or_default();
        if audience.iter().any(String::is_empty) {
            problems.push("ssf.audience must not be empty".to_owned());
        }
        let streams = file
            .streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| stream(i, s, base, problems, &env))
            .collect();
        Self {
            enabled: file.enabled.unwrap_or(false),
            audience,
            jti_window,
            max_jtis,
            mapping,
            levels: file.levels,
            streams,
        }
    }
}

/// One `[[ssf.streams]]` entry, its token read now.
fn stream(
    i: usize,
    s: FileStream,
    base: Option<&Path>,
    problems: &mut Vec<String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Stream {
    if s.issuer.is_empty() {
        problems.push(format!("ssf.streams[{i}].issuer must not be empty"));
    }
    let token = match (s.bearer_token_file, s.bearer_token_env) {
        (Some(_), Some(_)) => {
            problems.push(format!(
                "ssf.streams[{i}]: set bearer_token_file or bearer_token_env, not both"
            ));
            None
        }
        (Some(path), None) => {
            let path = match base {
                Some(b) if path.is_relative() => b.join(path),
                _ => path,
            };
            match std::fs::read_to_string(&path) {
                Ok(t) if !t.trim().is_empty() => Some(Token(t.trim().to_owned())),
                Ok(_) => {
                    problems.push(format!(
                        "ssf.streams[{i}].bearer_token_file `{}` is empty",
                        path.display()
                    ));
                    None
                }
                Err(e) => {
                    problems.push(format!(
                        "ssf.streams[{i}].bearer_token_file `{}`: {e}",
                        path.display()
                    ));
                    None
                }
            }
        }
        (None, Some(var)) => match env(&var) {
            Some(t) if !t.trim().is_empty() => Some(Token(t.trim().to_owned())),
            _ => {
                problems.push(format!(
                    "ssf.streams[{i}].bearer_token_env: environment variable `{var}` is not set or empty"
                ));
                None
            }
        },
        (None, None) => None,
    };
    Stream {
        issuer: s.issuer,
        token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> (SsfConfig, Vec<String>) {
        let mut problems = Vec::new();
        let file: FileSsf = toml::from_str(text).unwrap();
        let env = |name: &str| (name == "SSF_TOKEN").then(|| "t0ken\n".to_owned());
        let c = SsfConfig::resolve_with(file, None, &mut problems, env);
        (c, problems)
    }

    #[test]
    fn defaults_and_every_key() {
        let (c, problems) = resolve("");
        assert!(problems.is_empty());
        assert_eq!(c, SsfConfig::default());
        assert!(!c.enabled);
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let (c, problems) = resolve(&format!(
            r#"
enabled = true
audience = ["https://stepup.example.com/ssf"]
jti_window = "1h"
max_jtis = 10
subject = ["iss_sub.sub", "email.email"]
tenant = "tenant:opaque.id"
session = "opaque.id"
device = "iss_sub.sub"
levels = {{ "nist-aal2" = "aal2" }}
[[streams]]
issuer = "https://idp.example.com/"
bearer_token_file = "{}"
[[streams]]
issuer = "https://other.example.com/"
bearer_token_env = "SSF_TOKEN"
[[streams]]
issuer = "https://open.example.com/"
"#,
            token.display()
        ));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(c.enabled);
        assert_eq!(c.jti_window, Duration::from_secs(3600));
        assert_eq!(c.mapping.subject.len(), 2);
        assert_eq!(c.streams[0].token, Some(Token("s3cret".to_owned())));
        assert_eq!(c.streams[1].token, Some(Token("t0ken".to_owned())));
        assert_eq!(c.streams[2].token, None);
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn reports_every_bad_key() {
        let (_, problems) = resolve(
            r#"
jti_window = "0s"
max_jtis = 0
subject = ["sub"]
audience = ""
[[streams]]
issuer = ""
bearer_token_env = "NOPE"
[[streams]]
issuer = "x"
bearer_token_file = "/nonexistent/token"
bearer_token_env = "SSF_TOKEN"
"#,
        );
        assert_eq!(
            problems,
            [
                "ssf.jti_window must be positive",
                "ssf.max_jtis must be at least 1",
                "ssf.subject `sub`: expected `format.field` (e.g. `iss_sub.sub`), optionally after a member (`user:email.email`)",
                "ssf.subject must name at least one selector",
                "ssf.audience must not be empty",
                "ssf.streams[0].issuer must not be empty",
                "ssf.streams[0].bearer_token_env: environment variable `NOPE` is not set or empty",
                "ssf.streams[1]: set bearer_token_file or bearer_token_env, not both",
            ]
        );
        assert!(toml::from_str::<FileSsf>("token = \"x\"").is_err());
    }
}
