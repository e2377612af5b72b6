//! Data files policies look things up in: named IP lists (`ip_in(network.ip,
//! "tor_exits")`) and a MaxMind-format city database for location. They are
//! loaded with the policy set, are part of its revision, and are reloaded
//! with it: a bad list file rejects the new set like a bad policy does.
//!
//! Lists come from `[lists.ip]` in the config file and from `lists/*.txt`
//! in the policy directory (named by file stem), so a policy directory can
//! carry the lists its policies use.

pub mod geoip;
pub mod ip;
/// A writer of small MMDB files for tests (shared with `tests/`).
#[cfg(test)]
#[path = "../../tests/common/mmdb_writer.rs"]
pub(crate) mod mmdb_writer;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cel::common::types::CelString;
use sha2::{Digest, Sha256};

pub use geoip::{GeoIp, GeoPoint};
pub use ip::IpList;

/// The CEL function testing list membership: `ip_in(ip, "list")`.
pub const IP_IN: &str = "ip_in";

/// The subdirectory of a policy directory whose `*.txt` files are IP lists,
/// each named by its file stem (`lists/tor_exits.txt` is `tor_exits`).
pub const POLICY_LISTS_DIR: &str = "lists";

/// Where the lists come from (`[lists]` in the config file), paths resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListsConfig {
    /// IP list files by name.
    pub ip: BTreeMap<String, PathBuf>,
    /// The MaxMind-format city database, if any.
    pub geoip_city: Option<PathBuf>,
}

/// Why a list or database cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ListError {
    /// The file cannot be read.
    #[error("cannot read {what} `{}`: {message}", path.display())]
    Read {
        /// What the file is, e.g. `IP list`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// A line of a list file is not a prefix.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// Characters to underline.
        len: usize,
        /// The line as written.
        source_line: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        help: Option<String>,
    },
    /// More bad lines than are reported one by one.
    #[error("{}: {count} more bad lines not shown", path.display())]
    More {
        /// The file.
        path: PathBuf,
        /// How many.
        count: usize,
    },
    /// The GeoIP database is not a valid MaxMind DB file.
    #[error("invalid GeoIP database `{}`: {message}", path.display())]
    GeoIp {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// A list name policies could not write.
    #[error("invalid IP list name `{name}` (for `{}`)", path.display())]
    Name {
        /// The name.
        name: String,
        /// Its file.
        path: PathBuf,
    },
    /// Two lists with one name.
    #[error("IP list `{name}` is defined twice: by `{}` and by `{}`", first.display(), second.display())]
    Duplicate {
        /// The name.
        name: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
}

impl ListError {
    /// Advice, where there is some.
    pub fn help(&self) -> Option<String> {
        match self {
            ListError::Line { help, .. } => help.clone(),
            ListError::Name { .. } => {
                Some("list names are letters, digits, `_` and `-`".to_owned())
            }
            ListError::Duplicate { .. } => Some(
                "rename one: lists from the config file and from the policy directory share one namespace"
                    .to_owned(),
            ),
            ListError::GeoIp { .. } => {
                Some("`[lists] geoip_city` must name a MaxMind DB (.mmdb) file".to_owned())
            }
            ListError::Read { .. } | ListError::More { .. } => None,
        }
    }
}

/// The loaded lists and database: immutable, shared by a policy set.
#[derive(Debug, Default)]
pub struct Lists {
    /// Sorted by name.
    ip: Vec<(Arc<str>, IpList, PathBuf)>,
    geoip: Option<Arc<GeoIp>>,
}

impl Lists {
    /// Reads every list named in `config` and under `policy_dir/lists`, and
    /// opens the GeoIP database. An unchanged database (same size and
    /// modification time) is shared with `previous` instead of read again.
    /// Every problem is returned, not just the first.
    pub fn load(
        config: &ListsConfig,
        policy_dir: Option<&Path>,
        previous: Option<&Lists>,
    ) -> Result<Self, Vec<ListError>> {
        let mut errors = Vec::new();
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        if let Some(dir) = policy_dir {
            match policy_dir_lists(&dir.join(POLICY_LISTS_DIR)) {
                Ok(found) => files.extend(found),
                Err(e) => errors.push(e),
            }
        }
        files.extend(config.ip.iter().map(|(n, p)| (n.clone(), p.clone())));

        let mut ip: Vec<(Arc<str>, IpList, PathBuf)> = Vec::with_capacity(files.len());
        let mut seen: Vec<(String, PathBuf)> = Vec::with_capacity(files.len());
        for (name, path) in files {
            if !valid_name(&name) {
                errors.push(ListError::Name { name, path });
                continue;
            }
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                errors.push(ListError::Duplicate {
                    name,
                    first: first.clone(),
                    second: path,
                });
                continue;
            }
            seen.push((name.clone(), path.clone()));
            match IpList::read(&path) {
                Ok(list) => ip.push((Arc::from(name.as_str()), list, path)),
                Err(e) => errors.extend(e),
            }
        }
        ip.sort_by(|a, b| a.0.cmp(&b.0));

        let geoip = match &config.geoip_city {
            None => None,
            Some(path) => {
                let reusable = previous
                    .and_then(|p| p.geoip.as_ref())
                    .filter(|g| g.path() == path.as_path())
                    .filter(|g| geoip::Stamp::of(path).is_ok_and(|s| s == g.stamp()));
                match reusable {
                    Some(g) => Some(Arc::clone(g)),
                    None => match GeoIp::open(path) {
                        Ok(g) => Some(Arc::new(g)),
                        Err(e) => {
                            errors.push(e);
                            None
                        }
                    },
                }
            }
        };
        if errors.is_empty() {
            Ok(Self { ip, geoip })
        } else {
            Err(errors)
        }
    }

    /// Empty lists under every name `config` and `policy_dir/lists`
    /// declare: what a set whose lists failed to load is checked against, so
    /// that a bad list file is reported once, not again at each `ip_in`.
    pub fn declared(config: &ListsConfig, policy_dir: Option<&Path>) -> Self {
        let from_dir = policy_dir
            .and_then(|d| policy_dir_lists(&d.join(POLICY_LISTS_DIR)).ok())
            .unwrap_or_default();
        Self::from_ip_lists(
            from_dir
                .into_iter()
                .map(|(n, _)| n)
                .chain(config.ip.keys().cloned())
                .map(|n| (n, IpList::default())),
        )
    }

    /// Lists built in memory (tests, tools).
    pub fn from_ip_lists(lists: impl IntoIterator<Item = (String, IpList)>) -> Self {
        let mut ip: Vec<(Arc<str>, IpList, PathBuf)> = lists
            .into_iter()
            .map(|(n, l)| (Arc::from(n.as_str()), l, PathBuf::new()))
            .collect();
        ip.sort_by(|a, b| a.0.cmp(&b.0));
        ip.dedup_by(|a, b| a.0 == b.0);
        Self { ip, geoip: None }
    }

    /// Adds a GeoIP database (tests, tools).
    pub fn with_geoip(mut self, geoip: GeoIp) -> Self {
        self.geoip = Some(Arc::new(geoip));
        self
    }

    /// The IP list called `name`.
    #[inline]
    pub fn ip_list(&self, name: &str) -> Option<&IpList> {
        self.ip_list_at(self.ip_index(name)?)
    }

    /// Where the IP list called `name` is, for [`Lists::ip_list_at`]: a name
    /// looked up once instead of on every use.
    pub fn ip_index(&self, name: &str) -> Option<usize> {
        self.ip.binary_search_by(|(n, _, _)| (**n).cmp(name)).ok()
    }

    /// The IP list at `index` (from [`Lists::ip_index`] on this value).
    #[inline]
    pub fn ip_list_at(&self, index: usize) -> Option<&IpList> {
        self.ip.get(index).map(|(_, l, _)| l)
    }

    /// Whether `ip` is in list `name`; `None` when there is no such list.
    pub fn contains(&self, name: &str, ip: IpAddr) -> Option<bool> {
        self.ip_list(name).map(|l| l.contains(ip))
    }

    /// The IP lists: name, list and the file it was read from (empty for
    /// lists built in memory), sorted by name.
    pub fn ip_lists(&self) -> impl Iterator<Item = (&str, &IpList, &Path)> {
        self.ip.iter().map(|(n, l, p)| (&**n, l, p.as_path()))
    }

    /// The IP list names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ip.iter().map(|(n, _, _)| &**n)
    }

    /// Where `ip` is, from the GeoIP database; `None` without a database or
    /// when it has no coordinates for the address.
    pub fn locate(&self, ip: IpAddr) -> Option<GeoPoint> {
        self.geoip.as_ref()?.locate(ip)
    }

    /// The GeoIP database, if one is configured.
    pub fn geoip(&self) -> Option<&GeoIp> {
        self.geoip.as_deref()
    }

    /// No lists and no database.
    pub fn is_empty(&self) -> bool {
        self.ip.is_empty() && self.geoip.is_none()
    }

    /// A digest of what the lists contain (names and merged ranges, not
    /// comments or order) and of the database version: part of the policy
    /// revision, so that a reload that changes a list is a new revision.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (name, list, _) in &self.ip {
            h.update(b"ip\0");
            h.update(name.as_bytes());
            h.update([0]);
            list.hash_into(&mut h);
        }
        if let Some(g) = &self.geoip {
            h.update(b"geoip\0");
            h.update(g.fingerprint().as_bytes());
        }
        h.finalize().into()
    }

    /// One line for logs: `tor_exits (1200 prefixes), geoip`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .ip
            .iter()
            .map(|(n, l, _)| format!("{n} ({} prefixes)", l.prefixes()))
            .collect();
        if let Some(g) = &self.geoip {
            parts.push(format!("geoip `{}`", g.path().display()));
        }
        parts.join(", ")
    }

    /// Every file the lists were read from (for watching).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.ip
            .iter()
            .map(|(_, _, p)| p.as_path())
            .filter(|p| !p.as_os_str().is_empty())
            .chain(self.geoip.iter().map(|g| g.path()))
    }
}

/// Registers `ip_in(ip, list)` in a root CEL context, answering from
/// `lists`. A policy set does it once, in the root context its evaluations
/// run under, when one of its conditions calls `ip_in`.
pub fn add_ip_in(ctx: &mut cel::Context<'_, '_>, lists: &Arc<Lists>) {
    let lists = Arc::clone(lists);
    let f = move |ftx: &cel::FunctionContext<'_, '_>| ip_in(&lists, ftx);
    if let Err(e) = ctx.add_function(IP_IN, f) {
        // Only if the standard library ever declared `ip_in` itself.
        tracing::error!("cannot register `{IP_IN}`: {e}");
    }
}

/// `ip_in(ip, list)`: whether the address is in the named list. A value
/// that is not an IP address is an error (the rule fails closed), not
/// `false`.
fn ip_in(lists: &Lists, ftx: &cel::FunctionContext<'_, '_>) -> Result<bool, cel::ExecutionError> {
    let (None, [ip, name]) = (&ftx.this, ftx.args.as_slice()) else {
        return Err(ftx.error("takes two arguments: an IP address and a list name"));
    };
    let (Some(ip), Some(name)) = (
        ip.downcast_ref::<CelString>(),
        name.downcast_ref::<CelString>(),
    ) else {
        return Err(ftx.error("both arguments must be strings"));
    };
    let list = lists
        .ip_list(name.inner())
        .ok_or_else(|| ftx.error(format!("no IP list `{}`", clip(name.inner()))))?;
    let addr: IpAddr = ip
        .inner()
        .parse()
        .map_err(|_| ftx.error(format!("`{}` is not an IP address", clip(ip.inner()))))?;
    Ok(list.contains(addr))
}

/// At most 64 characters of user input in an error.
fn clip(s: &str) -> &str {
    s.char_indices()
        .nth(64)
        .map_or(s, |(i, _)| s.get(..i).unwrap_or(s))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `*.txt` files in `dir`, named by stem; nothing when `dir` does not exist.
/// Hidden entries (Kubernetes' `..data`) are skipped.
fn policy_dir_lists(dir: &Path) -> Result<Vec<(String, PathBuf)>, ListError> {
    let read_error = |e: std::io::Error| ListError::Read {
        what: "IP list directory",
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_error)?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden || path.extension().and_then(|e| e.to_str()) != Some("txt") {
            continue;
        }
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            found.push((stem.to_owned(), path.clone()));
        }
    }
    found.sort();
    Ok(found)
}
