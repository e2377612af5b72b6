//! Settings for `stepup serve`: flags > `STEPUP_*` environment variables >
//! config file (TOML) > defaults. Every field is parsed and every bad one
//! reported before failing once.

pub use crate::telemetry::logging::LogFormat;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::CacheConfig;
use crate::duration::parse_duration;
use crate::telemetry::decision_log::{DecisionLogConfig, Sampling, Sink};

mod error;
pub use error::{ConfigError, SettingError};
mod file;
use file::parse_file;
pub use file::{FileConfig, FileDecisionLog, FileLists};
pub mod keys;
mod limits;
pub use limits::{FileLimits, Limits};
mod transport;
pub use transport::{DEFAULT_LISTEN_MODE, FileTls, Listen, TlsConfig};

/// The default admin HTTP address (metrics, probes): loopback.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:7172";

/// The default gRPC listen address: loopback, since a sidecar shares its
/// pod's network namespace with the service it serves.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7171";

/// Values given on the command line or in the environment (clap fills both).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--policies` / `STEPUP_POLICIES`.
    pub policies: Option<PathBuf>,
    /// `--listen` / `STEPUP_LISTEN`.
    pub listen: Option<String>,
    /// `--listen-mode` / `STEPUP_LISTEN_MODE`.
    pub listen_mode: Option<String>,
    /// `--tls-cert` / `STEPUP_TLS_CERT`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key` / `STEPUP_TLS_KEY`.
    pub tls_key: Option<PathBuf>,
    /// `--tls-client-ca` / `STEPUP_TLS_CLIENT_CA`.
    pub tls_client_ca: Option<PathBuf>,
    /// `--no-watch` / `STEPUP_NO_WATCH`.
    pub watch: Option<bool>,
    /// `--admin` / `STEPUP_ADMIN`.
    pub admin: Option<String>,
    /// `--decision-log` / `STEPUP_DECISION_LOG`.
    pub decision_log: Option<String>,
    /// `--cache-size` / `STEPUP_CACHE_SIZE`.
    pub cache_size: Option<u64>,
    /// `--cache-ttl` / `STEPUP_CACHE_TTL`.
    pub cache_ttl: Option<String>,
    /// `--log-level` / `STEPUP_LOG_LEVEL`.
    pub log_level: Option<String>,
    /// `--log-format` / `STEPUP_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
    /// `--max-in-flight` / `STEPUP_MAX_IN_FLIGHT`.
    pub max_in_flight: Option<usize>,
    /// `--max-time-skew` / `STEPUP_MAX_TIME_SKEW`: a duration or `off`.
    pub max_time_skew: Option<String>,
    /// `--http` / `STEPUP_HTTP`: the AuthZEN HTTP listener.
    pub http: Option<String>,
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Policy directory.
    pub policies: PathBuf,
    /// gRPC listen address.
    pub listen: Listen,
    /// Permissions of the Unix socket file (with a `unix:` address).
    pub listen_mode: u32,
    /// TLS on the gRPC listener; `None`: plaintext.
    pub tls: Option<TlsConfig>,
    /// Watch the policy directory for changes.
    pub watch: bool,
    /// Admin HTTP address; `None` when off.
    pub admin: Option<SocketAddr>,
    /// The decision log; `None` when off.
    pub decision_log: Option<DecisionLogConfig>,
    /// Decision cache.
    pub cache: CacheConfig,
    /// The ext_authz mapping, checked.
    pub ext_authz: crate::mapping::Mapping,
    /// Log filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Subject history.
    pub history: crate::history::HistoryConfig,
    /// IP lists and GeoIP database (paths resolved against the config
    /// file's directory).
    pub lists: crate::lists::ListsConfig,
    /// What a policy condition may cost (`[limits] max_condition_cost`),
    /// with the history sizes its estimate depends on.
    pub cost_limits: crate::policy::CostLimits,
    /// Calls in flight, request time skew.
    pub limits: Limits,
    /// Trusted token issuers and step-up reporters (default: nobody, so
    /// step-up reports are refused).
    pub trust: crate::trust::TrustConfig,
    /// The Shared Signals receiver (off by default).
    pub ssf: crate::ssf::SsfConfig,
    /// A listener of its own for the AuthZEN endpoints (`--http`, `[http]
    /// listen`), with the gRPC listener's TLS settings; `None`: they are
    /// served on the gRPC port only.
    pub http: Option<Listen>,
}

/// Environment variable with the decision log's hash key.
pub const DECISION_LOG_HASH_KEY_ENV: &str = "STEPUP_DECISION_LOG_HASH_KEY";

impl Config {
    /// Resolves the settings from `overrides` (flags and environment), the
    /// config file at `file` if any, and the defaults; secrets (hash keys,
    /// the Redis URL and password) also from this process's environment.
    pub fn resolve(overrides: Overrides, file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::resolve_with_env(overrides, file, &|name| std::env::var(name).ok())
    }

    /// As [`Config::resolve`], with the secrets' environment variables
    /// (`STEPUP_HISTORY_HASH_KEY`, `STEPUP_REDIS_URL`,
    /// `STEPUP_REDIS_PASSWORD`, `STEPUP_DECISION_LOG_HASH_KEY`) looked up
    /// with `env`.
    pub fn resolve_with_env(
        mut overrides: Overrides,
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let base = file.and_then(Path::parent);
        let sources = crate::history::config::SecretSources { env, base };
        let mut from_file = match file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => parse_file(path, &text, &mut problems),
                Err(error) => {
                    problems.push(SettingError::Unreadable {
                        path: path.to_owned(),
                        error,
                    });
                    FileConfig::default()
                }
            },
            None => FileConfig::default(),
        };

        let policies = overrides.policies.take().or(from_file.policies.take());
        if policies.is_none() {
            problems.push(SettingError::NoPolicies);
        }
        let transport = transport::resolve(
            transport::Given::take(&mut overrides),
            transport::FromFile::take(&mut from_file),
            file.and_then(Path::parent),
            &mut problems,
        );
        let listen = transport.listen;
        let defaults = CacheConfig::default();
        let capacity = overrides
            .cache_size
            .or(from_file.cache.size)
            .unwrap_or(defaults.capacity);
        let ttl = ttl(
            overrides.cache_ttl.or(from_file.cache.ttl),
            defaults.ttl,
            &mut problems,
        );
        let log_level = overrides
            .log_level
            .or(from_file.log.level)
            .unwrap_or_else(|| "info".to_owned());
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            problems.push(SettingError::LogLevel {
                level: log_level.clone(),
                error,
            });
        }
        let log_format = overrides
            .log_format
            .or(from_file.log.format)
            .unwrap_or_default();
        let ext_authz = crate::mapping::Mapping::compile(&from_file.ext_authz.unwrap_or_default())
            .unwrap_or_else(|e| {
                problems.extend(e.problems.into_iter().map(SettingError::ExtAuthz));
                crate::mapping::Mapping::default()
            });

        let admin = admin(overrides.admin.or(from_file.admin), &mut problems);
        let http = overrides.http.or(from_file.http.listen).and_then(|text| {
            let listen = Listen::parse(&text);
            if listen.is_none() {
                problems.push(SettingError::Http { text });
            }
            listen
        });
        let decision_log = decision_log(
            overrides.decision_log,
            from_file.decision_log,
            &sources,
            &mut problems,
        );
        let history = history(
            from_file.history,
            from_file.ssf.enabled,
            &sources,
            &mut problems,
        );
        let lists = lists(from_file.lists, file.and_then(Path::parent), &mut problems);
        let cost_limits = limits::cost(&from_file.limits, &history, &mut problems);
        let (skew, file_limits) = (overrides.max_time_skew, from_file.limits);
        let limits = limits::resolve(overrides.max_in_flight, skew, file_limits, &mut problems);
        let (trust, ssf) = issuers(from_file.trust, from_file.ssf, file, &mut problems);
        problems.extend(subjects_agree(&ext_authz, &trust));

        match (policies, listen, ttl) {
            (Some(policies), Some(listen), Some(ttl)) if problems.is_empty() => Ok(Config {
                policies,
                listen,
                listen_mode: transport.listen_mode,
                tls: transport.tls,
                watch: overrides.watch.or(from_file.watch).unwrap_or(true),
                admin,
                decision_log,
                cache: CacheConfig {
                    capacity,
                    max_bytes: from_file.cache.max_bytes.unwrap_or(defaults.max_bytes),
                    ttl,
                },
                ext_authz,
                log_level,
                log_format,
                history,
                lists,
                cost_limits,
                limits,
                trust,
                ssf,
                http,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// `[trust]`, checked (relative paths against `base`, the config file's
/// directory).
fn trust(
    file: crate::trust::FileTrust,
    base: Option<&Path>,
    problems: &mut Vec<SettingError>,
) -> crate::trust::TrustConfig {
    let mut found = Vec::new();
    let trust = crate::trust::TrustConfig::resolve(file, base, &mut found);
    problems.extend(found.into_iter().map(SettingError::Trust));
    trust
}

/// `[trust]` and `[ssf]` of the config file at `path`, checked: the
/// trusted issuers and the receiver of their events.
fn issuers(
    trust_file: crate::trust::FileTrust,
    ssf_file: crate::ssf::config::FileSsf,
    path: Option<&Path>,
    problems: &mut Vec<SettingError>,
) -> (crate::trust::TrustConfig, crate::ssf::SsfConfig) {
    let base = path.and_then(Path::parent);
    let trust = trust(trust_file, base, problems);
    let ssf = ssf(ssf_file, base, &trust, problems);
    (trust, ssf)
}

/// Whether Envoy's mapping and the trusted issuers name subjects the same
/// way: both make `subject.id` `<iss>#<sub>` with two or more issuers, and
/// a step-up report or an event must name the subject Envoy's decisions
/// name. When both list issuers, they must agree on qualifying.
fn subjects_agree(
    ext_authz: &crate::mapping::Mapping,
    trust: &crate::trust::TrustConfig,
) -> Option<SettingError> {
    let (mapped, trusted) = (ext_authz.issuers().len(), trust.issuers.len());
    if mapped == 0 || trusted == 0 || (mapped >= 2) == (trusted >= 2) {
        return None;
    }
    Some(SettingError::Trust(format!(
        "`ext_authz.subject.issuers` lists {mapped} issuer(s) and `[[trust.issuers]]` {trusted}: \
         with two or more, subject ids are `<iss>#<sub>`, so Envoy's decisions and the \
         step-ups and events of the trusted issuers would name subjects differently; \
         list the same issuers in both"
    )))
}

/// `[ssf]`, checked, and checked against the trusted issuers (the keys
/// that verify events).
fn ssf(
    file: crate::ssf::config::FileSsf,
    base: Option<&Path>,
    trust: &crate::trust::TrustConfig,
    problems: &mut Vec<SettingError>,
) -> crate::ssf::SsfConfig {
    let mut found = Vec::new();
    let ssf = crate::ssf::SsfConfig::resolve(file, base, &mut found);
    if ssf.enabled && trust.issuers.is_empty() {
        found.push("ssf.enabled needs `[[trust.issuers]]`: the keys that verify events".to_owned());
    }
    for (i, s) in ssf.streams.iter().enumerate() {
        if !s.issuer.is_empty() && !trust.issuers.iter().any(|t| *t.issuer == *s.issuer) {
            found.push(format!(
                "ssf.streams[{i}].issuer `{}` is not one of `[[trust.issuers]]`",
                s.issuer
            ));
        }
    }
    problems.extend(found.into_iter().map(SettingError::Ssf));
    ssf
}

/// `[lists]` with relative paths resolved against `base`, the config
/// file's directory. The files themselves are read with the policies.
fn lists(
    file: FileLists,
    base: Option<&Path>,
    problems: &mut Vec<SettingError>,
) -> crate::lists::ListsConfig {
    let resolve = |p: PathBuf| match base {
        Some(base) if p.is_relative() => base.join(p),
        _ => p,
    };
    for (name, path) in &file.ip {
        if path.as_os_str().is_empty() {
            problems.push(SettingError::ListPath { name: name.clone() });
        }
    }
    if file
        .geoip_city
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        problems.push(SettingError::GeoipPath);
    }
    crate::lists::ListsConfig {
        ip: file
            .ip
            .into_iter()
            .map(|(name, path)| (name, resolve(path)))
            .collect(),
        geoip_city: file.geoip_city.map(resolve),
    }
}

/// `[history]`, its problems worded by the history settings.
/// The decision cache's time to live: `text`, else `default`; `None` when
/// `text` is not a positive duration.
fn ttl(
    text: Option<String>,
    default: Duration,
    problems: &mut Vec<SettingError>,
) -> Option<Duration> {
    let Some(t) = text else {
        return Some(default);
    };
    match parse_duration(&t) {
        Ok(d) if d > Duration::ZERO => Some(d),
        Ok(_) => {
            problems.push(SettingError::TtlNotPositive);
            None
        }
        Err(error) => {
            problems.push(SettingError::Ttl { text: t, error });
            None
        }
    }
}

/// The admin listener's address: `text` (default [`DEFAULT_ADMIN`]), or
/// none for `off`.
fn admin(text: Option<String>, problems: &mut Vec<SettingError>) -> Option<SocketAddr> {
    let text = text.unwrap_or_else(|| DEFAULT_ADMIN.to_owned());
    if text == "off" {
        return None;
    }
    text.parse::<SocketAddr>()
        .map_err(|_| problems.push(SettingError::Admin { text }))
        .ok()
}

/// `[history]`, checked; `ssf_enabled` is `[ssf] enabled`, whose events
/// take effect through history.
fn history(
    file: crate::history::config::FileHistory,
    ssf_enabled: Option<bool>,
    sources: &crate::history::config::SecretSources<'_>,
    problems: &mut Vec<SettingError>,
) -> crate::history::HistoryConfig {
    let mut history_problems = Vec::new();
    let history = crate::history::HistoryConfig::resolve_with(file, sources, &mut history_problems);
    problems.extend(history_problems.into_iter().map(SettingError::History));
    if ssf_enabled == Some(true) && history.enabled == crate::history::Enabled::Off {
        problems.push(SettingError::Ssf(
            "ssf.enabled needs history: events take effect through it (`[history] enabled = false`)"
                .to_owned(),
        ));
    }
    history
}

fn decision_log(
    flag: Option<String>,
    file: FileDecisionLog,
    sources: &crate::history::config::SecretSources<'_>,
    problems: &mut Vec<SettingError>,
) -> Option<DecisionLogConfig> {
    let output = flag.or(file.output)?;
    let mut key_problems = Vec::new();
    let hash_key = crate::history::config::read_secret(
        "decision_log.hash_key",
        DECISION_LOG_HASH_KEY_ENV,
        file.hash_key,
        file.hash_key_file.as_deref(),
        sources,
        &mut key_problems,
    );
    problems.extend(key_problems.into_iter().map(SettingError::DecisionLogKey));
    let sink = match output.as_str() {
        "off" | "" => return None,
        "stdout" | "-" => Sink::Stdout,
        "otlp" => Sink::Otlp,
        path => Sink::File {
            path: PathBuf::from(path),
            max_bytes: file.max_bytes.unwrap_or(100 * 1024 * 1024),
            keep: file.keep.unwrap_or(5),
        },
    };
    let mut rate = |outcome: &'static str, v: Option<f64>| match v {
        None => 1.0,
        Some(r) if (0.0..=1.0).contains(&r) => r,
        Some(rate) => {
            problems.push(SettingError::SampleRate { outcome, rate });
            1.0
        }
    };
    let sample = Sampling {
        allow: rate("allow", file.sample.allow),
        challenge: rate("challenge", file.sample.challenge),
        deny: rate("deny", file.sample.deny),
    };
    if file.queue == Some(0) {
        problems.push(SettingError::QueueEmpty);
    }
    Some(DecisionLogConfig {
        sink,
        sample,
        hash_key_inline: hash_key
            .as_ref()
            .is_some_and(|(_, s)| *s == crate::history::config::SecretSource::Inline),
        hash_key: hash_key.map(|(k, _)| k.0),
        hash: file.hash,
        drop: file.drop,
        queue: file.queue.unwrap_or(10_000),
        queue_bytes: file.queue_bytes.unwrap_or(64 << 20),
    })
}

#[cfg(test)]
mod tests;
