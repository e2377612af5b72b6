//! What can be wrong with the settings, each problem naming the setting and
//! where it came from.

use std::path::PathBuf;

use super::{DEFAULT_ADMIN, DEFAULT_LISTEN};

/// Why the settings are unusable: every problem, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", lines(.problems))]
pub struct ConfigError {
    /// Each names the setting and where it came from.
    pub problems: Vec<SettingError>,
}

fn lines(problems: &[SettingError]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// One unusable setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// The config file cannot be read.
    #[error("cannot read config file `{}`: {error}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A syntax error, or a key that is unknown or of the wrong type.
    #[error("{}{}: {message}", .path.display(), line_suffix(*.line))]
    FileKey {
        /// The file.
        path: PathBuf,
        /// Where in the file (1-based), when the parser knows.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// No policy directory anywhere.
    #[error(
        "no policy directory: pass --policies DIR, set STEPUP_POLICIES, or set `policies` in the config file"
    )]
    NoPolicies,
    /// A listen address that is neither IP:PORT nor unix:PATH.
    #[error(
        "listen address `{text}` is not IP:PORT or unix:PATH (e.g. `{DEFAULT_LISTEN}` or `unix:/run/stepup/stepup.sock`)"
    )]
    Listen {
        /// The address as given.
        text: String,
    },
    /// An AuthZEN HTTP listen address that is neither IP:PORT nor unix:PATH.
    #[error(
        "AuthZEN HTTP listen address (`--http`, `[http] listen`) `{text}` is not IP:PORT or unix:PATH (e.g. `127.0.0.1:7173`)"
    )]
    Http {
        /// The address as given.
        text: String,
    },
    /// A socket file mode that is not octal up to 0777.
    #[error("listen_mode `{text}` is not an octal file mode up to 0777 (e.g. `0660`)")]
    ListenMode {
        /// The mode as given.
        text: String,
    },
    /// A socket file mode with a TCP listen address.
    #[error("listen_mode applies to a `unix:PATH` listen address, not to TCP")]
    ListenModeOnTcp,
    /// A TLS certificate without its key, or a key without its certificate.
    #[error("tls: `cert` and `key` go together; `{missing}` is missing (--tls-cert/--tls-key)")]
    TlsHalf {
        /// `cert` or `key`.
        missing: &'static str,
    },
    /// A client CA without a server certificate.
    #[error(
        "tls.client_ca needs the server's own certificate: set tls.cert and tls.key (--tls-cert/--tls-key) too"
    )]
    TlsClientCaAlone,
    /// An admin address that is neither IP:PORT nor `off`.
    #[error("admin address `{text}` is not IP:PORT or `off` (e.g. `{DEFAULT_ADMIN}`)")]
    Admin {
        /// The address as given.
        text: String,
    },
    /// A zero cache ttl.
    #[error("cache ttl must be positive (use cache size 0 to turn the cache off)")]
    TtlNotPositive,
    /// A zero `[limits] max_condition_cost`.
    #[error("limits.max_condition_cost must be at least 1")]
    MaxConditionCost,
    /// A cache ttl that is not a duration.
    #[error("cache ttl `{text}`: {error}")]
    Ttl {
        /// The ttl as given.
        text: String,
        /// Why it is not a duration.
        error: crate::duration::DurationError,
    },
    /// A log filter `tracing` cannot parse.
    #[error("log level `{level}`: {error}")]
    LogLevel {
        /// The filter as given.
        level: String,
        /// Why.
        error: tracing_subscriber::filter::ParseError,
    },
    /// A bad key of `[ext_authz]`.
    #[error(transparent)]
    ExtAuthz(crate::mapping::KeyError),
    /// A decision-log sample rate outside 0..=1.
    #[error("decision_log.sample.{outcome} `{rate}` must be between 0.0 and 1.0")]
    SampleRate {
        /// `allow`, `challenge` or `deny`.
        outcome: &'static str,
        /// The rate as given.
        rate: f64,
    },
    /// A decision-log queue of zero.
    #[error("decision_log.queue must be at least 1")]
    QueueEmpty,
    /// A bad key of `[history]`, as the history settings word it.
    #[error("{0}")]
    History(String),
    /// A bad key of `[ssf]`, naming it (`ssf.streams[0].issuer`).
    #[error("{0}")]
    Ssf(String),
    /// A bad key of `[trust]`, naming it (`trust.issuers[0].jwks_url`).
    #[error("{0}")]
    Trust(String),
    /// The decision log's hash key cannot be read.
    #[error("{0}")]
    DecisionLogKey(String),
    /// An IP list with an empty path.
    #[error("lists.ip.{name}: empty path")]
    ListPath {
        /// The list's name.
        name: String,
    },
    /// An empty GeoIP database path.
    #[error("lists.geoip_city: empty path")]
    GeoipPath,
    /// `max_in_flight` of zero.
    #[error("max_in_flight must be at least 1")]
    MaxInFlightZero,
    /// A `max_time_skew` that is neither a positive duration nor `off`.
    #[error("max_time_skew `{text}`: {error}; expected a duration such as `5m`, or `off`")]
    MaxTimeSkew {
        /// The value as given.
        text: String,
        /// Why it is not usable.
        error: String,
    },
}

/// `:line`, or nothing when the line is unknown.
fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}
