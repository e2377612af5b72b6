//! `[history]` settings: parsed from the config file, every bad key reported.

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

/// `[history] backend = "redis"`: where Redis is, and how long to wait for it.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisConfig {
    /// `redis://[:password@]host[:port][/db]` (or `rediss://`); may hold a
    /// password, so it never shows in `Debug` output.
    pub url: Secret,
    /// Connect and command timeout of the background writer (default `1s`);
    /// decisions wait at most `fetch_timeout` anyway.
    pub timeout: Duration,
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
    /// Key for the identifier hashes.
    pub hash_key: Option<String>,
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
    /// The Redis URL, with `backend = "redis"`.
    pub redis_url: Option<String>,
    /// Redis connect and command timeout for writes (default `1s`).
    pub redis_timeout: Option<String>,
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

impl HistoryConfig {
    /// Resolves `[history]`, adding a line to `problems` per bad key.
    pub fn resolve(file: FileHistory, problems: &mut Vec<String>) -> Self {
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
        if file.hash_key.as_deref() == Some("") {
            problems.push("history.hash_key must not be empty".to_owned());
        }
        let redis = resolve_backend(file.backend, file.redis_url, redis_timeout, problems);
        if redis.is_some() && file.hash_key.as_deref().is_none_or(str::is_empty) {
            // A random key per process: replicas would never find each
            // other's subjects.
            problems.push(
                "history.backend \"redis\" needs history.hash_key, the same on every replica"
                    .to_owned(),
            );
        }
        Self {
            enabled,
            hash_key: file.hash_key.filter(|k| !k.is_empty()).map(Secret),
            limits,
            known_level: file.known_level,
            fetch_timeout,
            redis,
        }
    }
}

/// `backend` and `redis_url`: the URL is checked here (never echoed: it may
/// hold a password).
fn resolve_backend(
    backend: Option<String>,
    url: Option<String>,
    timeout: Duration,
    problems: &mut Vec<String>,
) -> Option<RedisConfig> {
    match backend.as_deref() {
        None | Some("memory") => {
            if url.is_some() {
                problems.push(
                    "history.redis_url is set but history.backend is not \"redis\"".to_owned(),
                );
            }
            None
        }
        Some("redis") => {
            let Some(url) = url.filter(|u| !u.is_empty()) else {
                problems.push("history.backend \"redis\" needs history.redis_url".to_owned());
                return None;
            };
            match redis::Client::open(url.as_str()) {
                Ok(_) => Some(RedisConfig {
                    url: Secret(url),
                    timeout,
                }),
                Err(_) => {
                    problems.push(
                        "history.redis_url is not a Redis URL: expected `redis://[:password@]host[:port][/db]`"
                            .to_owned(),
                    );
                    None
                }
            }
        }
        Some(other) => {
            problems.push(format!(
                "history.backend `{other}` must be \"memory\" or \"redis\""
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_every_bad_key() {
        let file: FileHistory = toml::from_str(
            "enabled = \"sometimes\"\nmax_subjects = 0\nevents_for = \"1 hour\"\nelevation = \"5m\"\nhash_key = \"s3cret\"\n",
        )
        .unwrap();
        let mut problems = Vec::new();
        let c = HistoryConfig::resolve(file, &mut problems);
        assert_eq!(
            problems,
            [
                "history.enabled `sometimes` must be true, false or \"auto\"",
                "history.events_for `1 hour`: unknown unit ` hour`",
                "history.max_subjects must be at least 1",
            ]
        );
        assert_eq!(c.limits.elevation, 300_000);
        assert!(!format!("{c:?}").contains("s3cret"));
        let file: FileHistory = toml::from_str("enabled = false").unwrap();
        assert_eq!(
            HistoryConfig::resolve(file, &mut problems).enabled,
            Enabled::Off
        );
        assert!(toml::from_str::<FileHistory>("size = 3").is_err());
    }

    #[test]
    fn resolves_the_backend() {
        let resolve = |text: &str| {
            let mut problems = Vec::new();
            let file: FileHistory = toml::from_str(text).unwrap();
            (HistoryConfig::resolve(file, &mut problems).redis, problems)
        };
        assert_eq!(resolve(""), (None, vec![]));
        assert_eq!(resolve("backend = \"memory\""), (None, vec![]));
        let (redis, problems) = resolve(
            "backend = \"redis\"\nredis_url = \"redis://:pw@10.0.0.1:6380/2\"\nredis_timeout = \"250ms\"\nhash_key = \"k\"",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let redis = redis.unwrap();
        assert_eq!(redis.timeout, Duration::from_millis(250));
        assert!(!format!("{redis:?}").contains("pw"));
        for (text, problem) in [
            (
                "backend = \"redis\"",
                "history.backend \"redis\" needs history.redis_url",
            ),
            (
                "backend = \"redis\"\nredis_url = \"http://:pw@x\"",
                "history.redis_url is not a Redis URL: expected `redis://[:password@]host[:port][/db]`",
            ),
            (
                "redis_url = \"redis://x\"",
                "history.redis_url is set but history.backend is not \"redis\"",
            ),
            (
                "backend = \"redis\"\nredis_url = \"redis://x\"",
                "history.backend \"redis\" needs history.hash_key, the same on every replica",
            ),
            (
                "backend = \"etcd\"",
                "history.backend `etcd` must be \"memory\" or \"redis\"",
            ),
        ] {
            assert_eq!(resolve(text).1, [problem], "{text}");
        }
    }
}
