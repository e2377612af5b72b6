//! Where the gRPC listener listens and how its connections are secured:
//! `listen` (`IP:PORT` or `unix:PATH`), `listen_mode` (the socket file's
//! permissions) and `[tls]` (server certificate, key and the client CA
//! that turns on mutual TLS).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::SettingError;

/// The default permissions of a Unix socket file: the owner and its group
/// may connect (connecting needs write permission), nobody else.
pub const DEFAULT_LISTEN_MODE: u32 = 0o660;

/// The prefix of a Unix socket listen address.
const UNIX_PREFIX: &str = "unix:";

/// Where the gRPC listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address (port 0 picks a free port).
    Tcp(SocketAddr),
    /// A Unix domain socket at this path.
    Unix(PathBuf),
}

impl Listen {
    /// Parses `IP:PORT` or `unix:PATH`; `None` when it is neither.
    pub fn parse(text: &str) -> Option<Self> {
        match text.strip_prefix(UNIX_PREFIX) {
            Some(path) if !path.is_empty() => Some(Self::Unix(PathBuf::from(path))),
            Some(_) => None,
            None => text.parse().ok().map(Self::Tcp),
        }
    }

    /// Whether only this host can connect: a loopback TCP address or a Unix
    /// socket.
    pub fn is_local(&self) -> bool {
        match self {
            Self::Tcp(addr) => addr.ip().is_loopback(),
            Self::Unix(_) => true,
        }
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Self::Tcp(addr)
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => addr.fmt(f),
            Self::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
        }
    }
}

/// `[tls]` in the config file. Relative paths are relative to the config
/// file's directory.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: Option<PathBuf>,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to; when
    /// set, every client must present one (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// The resolved TLS settings of the gRPC listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA (PEM) client certificates must chain to; `None`: no client
    /// certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// The transport settings from the flags or environment.
#[derive(Debug, Default, Clone)]
pub(super) struct Given {
    pub(super) listen: Option<String>,
    pub(super) listen_mode: Option<String>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) client_ca: Option<PathBuf>,
}

impl Given {
    /// Takes the transport settings out of `o`.
    pub(super) fn take(o: &mut super::Overrides) -> Self {
        Self {
            listen: o.listen.take(),
            listen_mode: o.listen_mode.take(),
            cert: o.tls_cert.take(),
            key: o.tls_key.take(),
            client_ca: o.tls_client_ca.take(),
        }
    }
}

/// The transport settings from the config file.
pub(super) struct FromFile {
    pub(super) listen: Option<String>,
    pub(super) listen_mode: Option<String>,
    pub(super) tls: FileTls,
}

impl FromFile {
    /// Takes the transport settings out of `f`.
    pub(super) fn take(f: &mut super::FileConfig) -> Self {
        Self {
            listen: f.listen.take(),
            listen_mode: f.listen_mode.take(),
            tls: std::mem::take(&mut f.tls),
        }
    }
}

/// The resolved transport settings.
pub(super) struct Transport {
    pub(super) listen: Option<Listen>,
    pub(super) listen_mode: u32,
    pub(super) tls: Option<TlsConfig>,
}

/// Resolves the listen address, socket mode and TLS files: each flag over
/// its file key; the file's relative TLS paths against `base` (the config
/// file's directory). Problems go to `problems`.
pub(super) fn resolve(
    given: Given,
    file: FromFile,
    base: Option<&Path>,
    problems: &mut Vec<SettingError>,
) -> Transport {
    let text = given
        .listen
        .or(file.listen)
        .unwrap_or_else(|| super::DEFAULT_LISTEN.to_owned());
    let listen = Listen::parse(&text);
    if listen.is_none() {
        problems.push(SettingError::Listen { text });
    }
    let listen_mode = match given.listen_mode.or(file.listen_mode) {
        None => DEFAULT_LISTEN_MODE,
        Some(text) => {
            if matches!(listen, Some(Listen::Tcp(_))) {
                problems.push(SettingError::ListenModeOnTcp);
            }
            parse_mode(&text).unwrap_or_else(|| {
                problems.push(SettingError::ListenMode { text });
                DEFAULT_LISTEN_MODE
            })
        }
    };
    let relative = |p: PathBuf| match base {
        Some(base) if p.is_relative() => base.join(p),
        _ => p,
    };
    let cert = given.cert.or(file.tls.cert.map(relative));
    let key = given.key.or(file.tls.key.map(relative));
    let client_ca = given.client_ca.or(file.tls.client_ca.map(relative));
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsConfig {
            cert,
            key,
            client_ca,
        }),
        (None, None) => {
            if client_ca.is_some() {
                problems.push(SettingError::TlsClientCaAlone);
            }
            None
        }
        (cert, _) => {
            problems.push(SettingError::TlsHalf {
                missing: if cert.is_some() { "key" } else { "cert" },
            });
            None
        }
    };
    Transport {
        listen,
        listen_mode,
        tls,
    }
}

/// An octal file mode such as `0660` or `660`, at most `0777`.
fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_tcp_or_unix() {
        assert_eq!(
            Listen::parse("0.0.0.0:7171"),
            Some(Listen::Tcp("0.0.0.0:7171".parse().unwrap()))
        );
        assert_eq!(
            Listen::parse("unix:/run/stepup/stepup.sock"),
            Some(Listen::Unix("/run/stepup/stepup.sock".into()))
        );
        assert_eq!(Listen::parse("unix:"), None);
        assert_eq!(Listen::parse("localhost:7171"), None);
        let unix = Listen::parse("unix:rel.sock").unwrap();
        assert_eq!(unix.to_string(), "unix:rel.sock");
        assert!(unix.is_local());
        assert!(Listen::parse("127.0.0.1:1").unwrap().is_local());
        assert!(Listen::parse("[::1]:1").unwrap().is_local());
        assert!(!Listen::parse("[::]:1").unwrap().is_local());
        assert!(!Listen::parse("10.0.0.1:1").unwrap().is_local());
    }

    #[test]
    fn modes_are_octal_up_to_0777() {
        assert_eq!(parse_mode("0660"), Some(0o660));
        assert_eq!(parse_mode("600"), Some(0o600));
        assert_eq!(parse_mode("0o666"), Some(0o666));
        assert_eq!(parse_mode("0777"), Some(0o777));
        for bad in ["", "0778", "01000", "rw-rw----", "0x1b0", "-1"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }

    fn resolve_with(
        overrides: super::super::Overrides,
        file: &str,
    ) -> Result<super::super::Config, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stepup.toml");
        std::fs::write(&path, format!("policies = \"p\"\n{file}")).unwrap();
        super::super::Config::resolve(overrides, Some(&path))
            .map(|mut c| {
                // Paths relative to the tempdir, for comparison.
                if let Some(tls) = &mut c.tls {
                    for p in [&mut tls.cert, &mut tls.key] {
                        *p = p
                            .strip_prefix(dir.path())
                            .map(Path::to_path_buf)
                            .unwrap_or(p.clone());
                    }
                    if let Some(ca) = &mut tls.client_ca {
                        *ca = ca
                            .strip_prefix(dir.path())
                            .map(Path::to_path_buf)
                            .unwrap_or(ca.clone());
                    }
                }
                c
            })
            .map_err(|e| e.problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn tls_from_the_file_relative_to_it_and_flags_over_it() {
        let c = resolve_with(
            Default::default(),
            "listen = \"unix:/run/s.sock\"\nlisten_mode = \"0600\"\n[tls]\ncert = \"tls/tls.crt\"\nkey = \"/abs/tls.key\"\nclient_ca = \"ca.crt\"\n",
        )
        .unwrap();
        assert_eq!(c.listen, Listen::Unix("/run/s.sock".into()));
        assert_eq!(c.listen_mode, 0o600);
        assert_eq!(
            c.tls,
            Some(TlsConfig {
                cert: "tls/tls.crt".into(),
                key: "/abs/tls.key".into(),
                client_ca: Some("ca.crt".into()),
            })
        );
        let c = resolve_with(
            super::super::Overrides {
                tls_cert: Some("/flag/cert.pem".into()),
                tls_key: Some("/flag/key.pem".into()),
                ..Default::default()
            },
            "[tls]\ncert = \"file.crt\"\nkey = \"file.key\"\n",
        )
        .unwrap();
        assert_eq!(
            c.tls,
            Some(TlsConfig {
                cert: "/flag/cert.pem".into(),
                key: "/flag/key.pem".into(),
                client_ca: None,
            })
        );
        let c = resolve_with(Default::default(), "").unwrap();
        assert_eq!(c.tls, None);
        assert_eq!(c.listen_mode, DEFAULT_LISTEN_MODE);
    }

    #[test]
    fn half_a_tls_setting_and_a_mode_for_tcp_are_errors() {
        assert_eq!(
            resolve_with(Default::default(), "[tls]\ncert = \"c\"\n").unwrap_err(),
            ["tls: `cert` and `key` go together; `key` is missing (--tls-cert/--tls-key)"]
        );
        assert_eq!(
            resolve_with(Default::default(), "[tls]\nclient_ca = \"ca\"\n").unwrap_err(),
            [
                "tls.client_ca needs the server's own certificate: set tls.cert and tls.key (--tls-cert/--tls-key) too"
            ]
        );
        assert_eq!(
            resolve_with(Default::default(), "listen_mode = \"0660\"\n").unwrap_err(),
            ["listen_mode applies to a `unix:PATH` listen address, not to TCP"]
        );
        assert_eq!(
            resolve_with(
                Default::default(),
                "listen = \"unix:/s\"\nlisten_mode = \"rw\"\n"
            )
            .unwrap_err(),
            ["listen_mode `rw` is not an octal file mode up to 0777 (e.g. `0660`)"]
        );
    }
}
