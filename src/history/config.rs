//! `[history]` settings: parsed from the config file, every bad key reported.
//!
//! Secrets (the hash key, the Redis URL and password) are read from an
//! environment variable, a file (`*_file`, e.g. a mounted Kubernetes
//! Secret) or, last, the config file itself; [`read_secret`] is shared with
//! `[decision_log]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::{Limits, Millis};
use crate::duration::parse_duration;

/// When decisions are recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Enabled {
    /// Record decisions while the policy set reads `history` (or a shared
    /// backend is configured); step-up reports are always recorded. A set
    /// that never reads `history` then pays nothing for it.
    #[default]
    Auto,
    /// Record every decision.
    On,
    /// Remember nothing: `history` reads as a subject never seen, and
    /// `RecordStepUp` is refused.
    Off,
}

/// A secret that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The resolved history settings.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryConfig {
    /// When decisions are recorded.
    pub enabled: Enabled,
    /// Key for the identifier hashes; a random one per process when unset
    /// (set it when replicas share a backend).
    pub hash_key: Option<Secret>,
    /// Bounds.
    pub limits: Limits,
    /// The level (by name) at or above which an allowed decision makes its
    /// device known; unset: the second-weakest level of the ladder (the
    /// weakest when there is only one).
    pub known_level: Option<String>,
    /// How long a prefetch from a shared backend may take before the decision
    /// goes ahead on local history.
    pub fetch_timeout: Duration,
    /// The shared backend: `None` keeps history in memory only (the
    /// default), `Some` shares it through Redis.
    pub redis: Option<RedisConfig>,
}

/// `[history] backend = "redis"`: where Redis is, how to authenticate to it
/// and its records, and how long to wait for it.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisConfig {
    /// `redis://[:password@]host[:port][/db]` or, over TLS,
    /// `rediss://...`; may hold a password, so it never shows in `Debug`
    /// output.
    pub url: Secret,
    /// Connect and command timeout of the background writer (default `1s`);
    /// decisions wait at most `fetch_timeout` anyway.
    pub timeout: Duration,
    /// The password, replacing the URL's (`redis_password_file`,
    /// `STEPUP_REDIS_PASSWORD`).
    pub password: Option<Secret>,
    /// PEM certificates that sign the server's certificate
    /// (`redis_ca_file`); `None`: the Mozilla roots (webpki-roots).
    pub ca: Option<Vec<u8>>,
    /// A PEM client certificate chain and its key, for mutual TLS
    /// (`redis_cert_file`, `redis_key_file`).
    pub client_cert: Option<(Vec<u8>, Secret)>,
    /// The history hash key: the key that authenticates each record stored
    /// in Redis is derived from it (see `RedisBackend`).
    pub record_key: Secret,
    /// The secrets given in clear in the config file (named by setting),
    /// warned about at start-up.
    pub inline_secrets: Vec<&'static str>,
}

impl RedisConfig {
    /// Redis at `url`, records authenticated with a key derived from
    /// `history_key`; a `1s` timeout, no TLS settings beyond the URL's.
    pub fn new(url: impl Into<String>, history_key: impl Into<String>) -> Self {
        Self {
            url: Secret(url.into()),
            timeout: Duration::from_secs(1),
            password: None,
            ca: None,
            client_cert: None,
            record_key: Secret(history_key.into()),
            inline_secrets: Vec::new(),
        }
    }
}

/// Environment variable with the history hash key.
pub const HASH_KEY_ENV: &str = "STEPUP_HISTORY_HASH_KEY";
/// Environment variable with the Redis URL.
pub const REDIS_URL_ENV: &str = "STEPUP_REDIS_URL";
/// Environment variable with the Redis password.
pub const REDIS_PASSWORD_ENV: &str = "STEPUP_REDIS_PASSWORD";

/// Where settings that may be secret come from besides the config file: the
/// environment, and the config file's directory (relative `*_file` paths).
pub struct SecretSources<'a> {
    /// Looks up an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The config file's directory.
    pub base: Option<&'a Path>,
}

impl SecretSources<'_> {
    /// No environment, no base directory (tests, and callers that resolve
    /// only what the file says).
    pub const NONE: SecretSources<'static> = SecretSources {
        env: &|_| None,
        base: None,
    };

    /// `path`, relative to the config file's directory when relative.
    pub fn path(&self, path: &Path) -> PathBuf {
        match self.base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_owned(),
        }
    }
}

/// Where a secret was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env,
    /// A file (`*_file`).
    File,
    /// The config file itself: readable by whoever reads the config (a
    /// ConfigMap in Kubernetes), so it is warned about.
    Inline,
}

/// The secret `setting` (e.g. `history.hash_key`): from the environment
/// variable `var` if set, else from the file `file` (the setting
/// `{setting}_file`; trailing whitespace, such as the newline of
/// `echo key > file`, is trimmed), else `inline`. Problems name the setting,
/// the variable or the file, never the value.
pub fn read_secret(
    setting: &str,
    var: &str,
    inline: Option<String>,
    file: Option<&Path>,
    sources: &SecretSources<'_>,
    problems: &mut Vec<String>,
) -> Option<(Secret, SecretSource)> {
    if inline.is_some() && file.is_some() {
        problems.push(format!(
            "{setting} and {setting}_file are both set: keep one (the file)"
        ));
    }
    if let Some(value) = (sources.env)(var) {
        if value.trim().is_empty() {
            problems.push(format!("{setting}: environment variable `{var}` is empty"));
            return None;
        }
        return Some((Secret(value), SecretSource::Env));
    }
    if let Some(file) = file {
        let path = sources.path(file);
        return match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => {
                problems.push(format!("{setting}_file `{}` is empty", path.display()));
                None
            }
            Ok(text) => Some((Secret(text.trim_end().to_owned()), SecretSource::File)),
            Err(e) => {
                problems.push(format!(
                    "{setting}_file `{}` cannot be read: {e}",
                    path.display()
                ));
                None
            }
        };
    }
    match inline {
        Some(v) if v.is_empty() => {
            problems.push(format!("{setting} must not be empty"));
            None
        }
        Some(v) => Some((Secret(v), SecretSource::Inline)),
        None => None,
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            enabled: Enabled::Auto,
            hash_key: None,
            limits: Limits::default(),
            known_level: None,
            fetch_timeout: Duration::from_millis(20),
            redis: None,
        }
    }
}

/// `enabled = true | false | "auto"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum FileEnabled {
    /// `true` or `false`.
    Bool(bool),
    /// `"auto"` (other strings are rejected).
    Text(String),
}

/// `[history]` in the config file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHistory {
    /// `true`, `false` or `"auto"` (default).
    pub enabled: Option<FileEnabled>,
    /// Key for the identifier hashes (better: `hash_key_file` or
    /// `STEPUP_HISTORY_HASH_KEY`).
    pub hash_key: Option<String>,
    /// A file holding the key (e.g. a mounted Secret).
    pub hash_key_file: Option<PathBuf>,
    /// Subjects kept in memory (default 100000).
    pub max_subjects: Option<usize>,
    /// Devices kept per subject (default 16).
    pub max_devices: Option<usize>,
    /// Action events kept per subject (default 128).
    pub max_events: Option<usize>,
    /// How long action events are kept (default `24h`).
    pub events_for: Option<String>,
    /// How long subjects, devices and locations are remembered (default `90d`).
    pub retention: Option<String>,
    /// The elevation window after a successful step-up (default `15m`).
    pub elevation: Option<String>,
    /// The known-device level, by name.
    pub known_level: Option<String>,
    /// Prefetch timeout for a shared backend (default `20ms`).
    pub fetch_timeout: Option<String>,
    /// `"memory"` (default) or `"redis"`.
    pub backend: Option<String>,
    /// The Redis URL, with `backend = "redis"` (or `STEPUP_REDIS_URL`).
    pub redis_url: Option<String>,
    /// A file holding the Redis password (or `STEPUP_REDIS_PASSWORD`).
    pub redis_password_file: Option<PathBuf>,
    /// PEM CA certificates for a `rediss://` URL.
    pub redis_ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for mutual TLS with Redis.
    pub redis_cert_file: Option<PathBuf>,
    /// PEM private key of `redis_cert_file`.
    pub redis_key_file: Option<PathBuf>,
    /// Redis connect and command timeout for writes (default `1s`).
    pub redis_timeout: Option<String>,
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

impl HistoryConfig {
    /// Resolves `[history]` from the file alone, adding a line to
    /// `problems` per bad key.
    pub fn resolve(file: FileHistory, problems: &mut Vec<String>) -> Self {
        Self::resolve_with(file, &SecretSources::NONE, problems)
    }

    /// Resolves `[history]`, with secrets from `sources` (environment
    /// variables win over `*_file`, which win over the file's own values).
    pub fn resolve_with(
        mut file: FileHistory,
        sources: &SecretSources<'_>,
        problems: &mut Vec<String>,
    ) -> Self {
        let before = problems.len();
        let hash_key = read_secret(
            "history.hash_key",
            HASH_KEY_ENV,
            file.hash_key.take(),
            file.hash_key_file.as_deref(),
            sources,
            problems,
        );
        // A key that was set but cannot be read is reported once.
        let key_unreadable = problems.len() > before;
        let redis = match resolve_backend(&mut file, sources, problems) {
            Some(_) if key_unreadable => None,
            Some(_) if hash_key.is_none() => {
                // A random key per process: replicas would never find each
                // other's subjects, nor could they authenticate each
                // other's records.
                problems.push(format!(
                    "history.backend \"redis\" needs history.hash_key, the same on every replica: set `{HASH_KEY_ENV}` or history.hash_key_file (e.g. a mounted Secret)"
                ));
                None
            }
            Some(mut redis) => {
                if let Some((key, source)) = &hash_key {
                    redis.record_key = key.clone();
                    if *source == SecretSource::Inline {
                        redis.inline_secrets.insert(0, "history.hash_key");
                    }
                }
                Some(redis)
            }
            None => None,
        };
        let defaults = Self::default();
        let enabled = match file.enabled {
            None => Enabled::Auto,
            Some(FileEnabled::Bool(true)) => Enabled::On,
            Some(FileEnabled::Bool(false)) => Enabled::Off,
            Some(FileEnabled::Text(t)) if t == "auto" => Enabled::Auto,
            Some(FileEnabled::Text(t)) => {
                problems.push(format!(
                    "history.enabled `{t}` must be true, false or \"auto\""
                ));
                Enabled::Auto
            }
        };
        let mut duration = |name: &str, v: Option<String>, default: Duration| match v {
            None => default,
            Some(t) => match parse_duration(&t) {
                Ok(d) if d > Duration::ZERO => d,
                Ok(_) => {
                    problems.push(format!("history.{name} must be positive"));
                    default
                }
                Err(e) => {
                    problems.push(format!("history.{name} `{t}`: {e}"));
                    default
                }
            },
        };
        let d = defaults.limits;
        let events_for = duration(
            "events_for",
            file.events_for,
            Duration::from_millis(d.event_retention.unsigned_abs()),
        );
        let retention = duration(
            "retention",
            file.retention,
            Duration::from_millis(d.retention.unsigned_abs()),
        );
        let elevation = duration(
            "elevation",
            file.elevation,
            Duration::from_millis(d.elevation.unsigned_abs()),
        );
        let fetch_timeout = duration("fetch_timeout", file.fetch_timeout, defaults.fetch_timeout);
        let redis_timeout = duration("redis_timeout", file.redis_timeout, Duration::from_secs(1));
        let redis = redis.map(|r| RedisConfig {
            timeout: redis_timeout,
            ..r
        });
        let mut count = |name: &str, v: Option<usize>, default: usize| match v {
            Some(0) => {
                problems.push(format!("history.{name} must be at least 1"));
                default
            }
            Some(n) => n,
            None => default,
        };
        let limits = Limits {
            max_subjects: count("max_subjects", file.max_subjects, d.max_subjects),
            max_devices: count("max_devices", file.max_devices, d.max_devices),
            max_events: count("max_events", file.max_events, d.max_events),
            event_retention: millis(events_for),
            retention: millis(retention),
            elevation: millis(elevation),
        };
        Self {
            enabled,
            hash_key: hash_key.map(|(k, _)| k),
            limits,
            known_level: file.known_level,
            fetch_timeout,
            redis,
        }
    }
}

/// `backend`, the Redis URL, password and TLS files: the URL is checked
/// here (never echoed: it may hold a password).
fn resolve_backend(
    file: &mut FileHistory,
    sources: &SecretSources<'_>,
    problems: &mut Vec<String>,
) -> Option<RedisConfig> {
    let url = read_secret(
        "history.redis_url",
        REDIS_URL_ENV,
        file.redis_url.take(),
        None,
        sources,
        problems,
    );
    match file.backend.as_deref() {
        None | Some("memory") => {
            if url.is_some() {
                problems.push(format!(
                    "history.redis_url (or `{REDIS_URL_ENV}`) is set but history.backend is not \"redis\""
                ));
            }
            None
        }
        Some("redis") => {
            let Some((url, url_source)) = url else {
                problems.push(format!(
                    "history.backend \"redis\" needs history.redis_url (or `{REDIS_URL_ENV}`)"
                ));
                return None;
            };
            let info = redis_url(&url.0, problems)?;
            let password = read_secret(
                "history.redis_password",
                REDIS_PASSWORD_ENV,
                None,
                file.redis_password_file.as_deref(),
                sources,
                problems,
            )
            .map(|(p, _)| p);
            let mut inline_secrets = Vec::new();
            if url_source == SecretSource::Inline
                && password.is_none()
                && info.redis_settings().password().is_some()
            {
                inline_secrets.push("the password in history.redis_url");
            }
            let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
            let (ca, client_cert) = redis_tls(file, tls, sources, problems);
            Some(RedisConfig {
                url,
                timeout: Duration::from_secs(1),
                password,
                ca,
                client_cert,
                record_key: Secret(String::new()),
                inline_secrets,
            })
        }
        Some(other) => {
            problems.push(format!(
                "history.backend `{other}` must be \"memory\" or \"redis\""
            ));
            None
        }
    }
}

/// The URL as connection settings, or a problem (without the URL, which
/// may hold a password).
fn redis_url(url: &str, problems: &mut Vec<String>) -> Option<redis::ConnectionInfo> {
    use redis::IntoConnectionInfo as _;
    let parsed = url.into_connection_info().ok().filter(|info| {
        matches!(
            info.addr(),
            redis::ConnectionAddr::Tcp(..) | redis::ConnectionAddr::TcpTls { .. }
        )
    });
    match parsed {
        None => {
            problems.push(
                "history.redis_url is not a Redis URL: expected `redis://[:password@]host[:port][/db]`, or `rediss://...` for TLS"
                    .to_owned(),
            );
            None
        }
        Some(info)
            if matches!(
                info.addr(),
                redis::ConnectionAddr::TcpTls { insecure: true, .. }
            ) =>
        {
            problems.push(
                "history.redis_url: `#insecure` (TLS without checking the server's certificate) is not supported; name the CA that signs it in history.redis_ca_file"
                    .to_owned(),
            );
            None
        }
        Some(info) => Some(info),
    }
}

/// The CA certificates, and the client certificate chain with its key (PEM).
type TlsFiles = (Option<Vec<u8>>, Option<(Vec<u8>, Secret)>);

/// The CA and client certificate files, read and checked (PEM); only with a
/// `rediss://` URL (`tls`).
fn redis_tls(
    file: &FileHistory,
    tls: bool,
    sources: &SecretSources<'_>,
    problems: &mut Vec<String>,
) -> TlsFiles {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let any = [
        &file.redis_ca_file,
        &file.redis_cert_file,
        &file.redis_key_file,
    ]
    .iter()
    .any(|f| f.is_some());
    if any && !tls {
        problems.push(
            "history.redis_ca_file, redis_cert_file and redis_key_file need a `rediss://` URL (TLS)"
                .to_owned(),
        );
        return (None, None);
    }
    let mut read = |setting: &str, path: &Path| match std::fs::read(sources.path(path)) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            problems.push(format!(
                "history.{setting} `{}` cannot be read: {e}",
                sources.path(path).display()
            ));
            None
        }
    };
    let certs = |bytes: &[u8]| {
        CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .is_ok_and(|c| !c.is_empty())
    };
    let ca = file
        .redis_ca_file
        .as_deref()
        .and_then(|p| Some((p, read("redis_ca_file", p)?)));
    let cert = file
        .redis_cert_file
        .as_deref()
        .and_then(|p| Some((p, read("redis_cert_file", p)?)));
    let key = file
        .redis_key_file
        .as_deref()
        .and_then(|p| Some((p, read("redis_key_file", p)?)));
    let mut bad = |what: &str, path: &Path| {
        problems.push(format!(
            "history.{what} `{}` holds no PEM {}",
            sources.path(path).display(),
            if what == "redis_key_file" {
                "private key"
            } else {
                "certificate"
            }
        ));
    };
    let ca = match ca {
        Some((p, bytes)) if !certs(&bytes) => {
            bad("redis_ca_file", p);
            None
        }
        other => other.map(|(_, b)| b),
    };
    if let Some((p, bytes)) = &cert
        && !certs(bytes)
    {
        bad("redis_cert_file", p);
    }
    if let Some((p, bytes)) = &key
        && PrivateKeyDer::from_pem_slice(bytes).is_err()
    {
        bad("redis_key_file", p);
    }
    let client = match (cert, key) {
        (Some((_, cert)), Some((_, key))) => {
            String::from_utf8(key).ok().map(|key| (cert, Secret(key)))
        }
        (None, None) => None,
        _ => {
            problems.push(
                "history.redis_cert_file and history.redis_key_file go together (mutual TLS)"
                    .to_owned(),
            );
            None
        }
    };
    (ca, client)
}

#[cfg(test)]
mod tests;
