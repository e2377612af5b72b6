//! The config file's shape (TOML, every key optional, unknown keys
//! rejected) and its reader, which reports every bad key, not only the first.

use std::path::{Path, PathBuf};

use super::{FileLimits, FileTls, LogFormat, SettingError};

/// The config file: every key optional, unknown keys rejected.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Policy directory.
    pub policies: Option<PathBuf>,
    /// gRPC listen address: `IP:PORT` or `unix:PATH`.
    pub listen: Option<String>,
    /// Permissions of the Unix socket file, octal (default `0660`).
    pub listen_mode: Option<String>,
    /// `[tls]`: the gRPC listener's certificate, key and client CA.
    #[serde(default)]
    pub tls: FileTls,
    /// Watch the policy directory and reload on change (SIGHUP always
    /// reloads).
    pub watch: Option<bool>,
    /// Admin HTTP listen address, or `off`.
    pub admin: Option<String>,
    /// Decision cache.
    #[serde(default)]
    pub cache: FileCache,
    /// `[ext_authz]`: how Envoy ext_authz `Check` requests map to decisions.
    pub ext_authz: Option<crate::mapping::FileExtAuthz>,
    /// Logging.
    #[serde(default)]
    pub log: FileLog,
    /// The decision log.
    #[serde(default)]
    pub decision_log: FileDecisionLog,
    /// `[history]`: what is remembered per subject.
    #[serde(default)]
    pub history: crate::history::config::FileHistory,
    /// `[lists]`: IP lists and the GeoIP database, loaded with the policies.
    #[serde(default)]
    pub lists: FileLists,
    /// `[limits]`: calls in flight, request time skew.
    #[serde(default)]
    pub limits: FileLimits,
    /// `[trust]`: trusted token issuers and step-up reporters.
    #[serde(default)]
    pub trust: crate::trust::FileTrust,
    /// `[ssf]`: the Shared Signals receiver.
    #[serde(default)]
    pub ssf: crate::ssf::config::FileSsf,
    /// `[http]`: the AuthZEN HTTP listener.
    #[serde(default)]
    pub http: FileHttp,
}

/// `[http]`: the AuthZEN endpoints on a listener of their own (they are
/// on the gRPC port as well).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp {
    /// `IP:PORT` or `unix:PATH`; absent: no separate listener.
    pub listen: Option<String>,
}

/// `[lists]`: data files policies look things up in. Relative paths are
/// relative to the config file's directory.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLists {
    /// `[lists.ip]`: `name = "path"`, one CIDR prefix per line, for
    /// `ip_in(ip, "name")`.
    #[serde(default)]
    pub ip: std::collections::BTreeMap<String, PathBuf>,
    /// A MaxMind-format city database (e.g. GeoLite2-City.mmdb), for
    /// location.
    pub geoip_city: Option<PathBuf>,
}

/// `[decision_log]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDecisionLog {
    /// `stdout`, `otlp`, a file path, or `off`.
    pub output: Option<String>,
    /// Rotate the file past this many bytes (default 100 MiB).
    pub max_bytes: Option<u64>,
    /// Rotated files to keep (default 5).
    pub keep: Option<u32>,
    /// Fraction logged by outcome.
    #[serde(default)]
    pub sample: FileSampling,
    /// Request fields to replace by a keyed hash, e.g. `network.ip`.
    #[serde(default)]
    pub hash: Vec<String>,
    /// Request fields to remove, e.g. `subject.attributes.email`.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Key for the hash (a random key per process otherwise); better:
    /// `hash_key_file` or `STEPUP_DECISION_LOG_HASH_KEY`.
    pub hash_key: Option<String>,
    /// A file holding the hash key (e.g. a mounted Secret).
    pub hash_key_file: Option<PathBuf>,
    /// Queue length before entries are dropped (default 10000).
    pub queue: Option<usize>,
    /// Queued bytes before entries are dropped (default 64 MiB).
    pub queue_bytes: Option<usize>,
}

/// `[decision_log.sample]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSampling {
    /// ALLOW decisions (default 1.0).
    pub allow: Option<f64>,
    /// CHALLENGE decisions (default 1.0).
    pub challenge: Option<f64>,
    /// DENY decisions (default 1.0).
    pub deny: Option<f64>,
}

/// `[cache]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCache {
    /// Maximum entries (0 turns the cache off).
    pub size: Option<u64>,
    /// Maximum bytes the entries hold.
    pub max_bytes: Option<u64>,
    /// Entry lifetime, e.g. `60s`.
    pub ttl: Option<String>,
}

/// `[log]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    /// A `tracing` filter, e.g. `info` or `stepup=debug`.
    pub level: Option<String>,
    /// `text` or `json`.
    pub format: Option<LogFormat>,
}

/// Most problems reported for one config file; the rest are dropped.
const MAX_FILE_PROBLEMS: usize = 32;

/// Parses the config file `text` read from `path`, adding a line to
/// `problems` per bad key. serde stops at the first bad key, so each one is
/// removed from the parsed document and the rest deserialized again: every
/// unknown or mistyped key is reported, not only the first. A syntax error
/// stops there (what follows it cannot be read reliably).
pub(super) fn parse_file(path: &Path, text: &str, problems: &mut Vec<SettingError>) -> FileConfig {
    use serde::Deserialize as _;

    // Reported in file order, not in the order serde meets the keys.
    let mut found: Vec<(usize, SettingError)> = Vec::new();
    let mut report = |e: &toml::de::Error| {
        let start = e.span().map_or(0, |s| s.start);
        let line = e
            .span()
            .map(|s| text.get(..s.start).map_or(0, |t| t.matches('\n').count()) + 1);
        found.push((
            start,
            SettingError::FileKey {
                path: path.to_owned(),
                line,
                message: e.message().trim_end_matches('.').to_owned(),
            },
        ));
    };
    let mut doc = match toml::de::DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            report(&e);
            problems.extend(found.into_iter().map(|(_, p)| p));
            return FileConfig::default();
        }
    };
    // Keys removed so far, with the span of their table: a required key
    // removed for its bad value is not reported missing too.
    let mut removed: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let root = doc.span();
    let mut config = None;
    for _ in 0..MAX_FILE_PROBLEMS {
        let e = match FileConfig::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(e) => e,
        };
        let missing = e
            .message()
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let echo = missing.is_some_and(|key| {
            removed
                .iter()
                .any(|(span, k)| k == key && Some(span.clone()) == e.span())
        });
        if !echo {
            report(&e);
        }
        let Some(at) = e.span().map(|s| s.start) else {
            break;
        };
        let Some(gone) = remove_at(doc.get_mut(), root.clone(), at) else {
            break;
        };
        removed.push(gone);
    }
    found.sort_by_key(|(start, _)| *start);
    problems.extend(found.into_iter().map(|(_, p)| p));
    config.unwrap_or_default()
}

/// Removes from `table` (spanning `span`) the innermost key-value the byte
/// `at` is in, looking into nested tables and arrays of tables; returns the
/// span of the table it was in and its key.
fn remove_at(
    table: &mut toml::de::DeTable<'_>,
    span: std::ops::Range<usize>,
    at: usize,
) -> Option<(std::ops::Range<usize>, String)> {
    use toml::de::DeValue;

    for (_, value) in table.iter_mut() {
        let value_span = value.span();
        let found = match value.get_mut() {
            DeValue::Table(inner) => remove_at(inner, value_span, at),
            DeValue::Array(items) => items.iter_mut().find_map(|item| {
                let item_span = item.span();
                match item.get_mut() {
                    DeValue::Table(inner) => remove_at(inner, item_span, at),
                    _ => None,
                }
            }),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    let key = table
        .iter()
        .find(|(k, v)| k.span().contains(&at) || v.span().contains(&at))
        .map(|(k, _)| k.get_ref().to_string())?;
    table.remove(key.as_str());
    Some((span, key))
}
