//! The errors of building a client ([`BuildError`]) and of a call to the
//! sidecar ([`CallError`]), with the `google.rpc.ErrorInfo` reason the
//! sidecar puts on every error status.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tonic_types::StatusExt as _;

/// Why a [`Client`](crate::Client) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The sidecar address is not `http://HOST:PORT`, `https://HOST:PORT`
    /// or `unix:PATH`.
    #[error("invalid sidecar address `{target}`: {why}")]
    InvalidTarget {
        /// The address as given.
        target: String,
        /// What is wrong with it.
        why: String,
    },
    /// A TLS file could not be read or holds no usable PEM item.
    #[error("cannot load the TLS {what} from `{}`: {why}", path.display())]
    TlsFile {
        /// Which file: `CA certificates`, `client certificate`, `client key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// rustls refused the TLS settings (e.g. a key that does not match the
    /// certificate).
    #[error("invalid TLS settings: {0}")]
    Tls(#[from] rustls::Error),
}

/// Why a call to the sidecar failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be made: the request was never sent (connection
    /// refused, no such socket, TLS handshake failed).
    #[error("stepup sidecar at `{target}` is unreachable: {message}")]
    Unreachable {
        /// The sidecar address.
        target: String,
        /// The connection error.
        message: String,
    },
    /// No answer within the call's deadline.
    #[error("stepup sidecar at `{target}` did not answer within {deadline:?}")]
    Timeout {
        /// The sidecar address.
        target: String,
        /// The deadline that passed.
        deadline: Duration,
    },
    /// The sidecar (or the transport) answered with an error status.
    #[error("stepup sidecar answered {code:?}{}: {message}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Status {
        /// The gRPC status code.
        code: tonic::Code,
        /// The `google.rpc.ErrorInfo` reason (e.g. `INVALID_FIELD`,
        /// `EVIDENCE_EXPIRED`, `OVERLOADED`) in the `stepup` domain; `None`
        /// for transport errors, which carry no details, and for another
        /// domain's (a proxy's).
        reason: Option<String>,
        /// The `ErrorInfo` metadata (e.g. `field`, `check`).
        metadata: HashMap<String, String>,
        /// The status message.
        message: String,
    },
}

impl CallError {
    /// The gRPC code of the error: `UNAVAILABLE` for an unreachable sidecar,
    /// `DEADLINE_EXCEEDED` for a timeout.
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::Unreachable { .. } => tonic::Code::Unavailable,
            Self::Timeout { .. } => tonic::Code::DeadlineExceeded,
            Self::Status { code, .. } => *code,
        }
    }

    /// The `google.rpc.ErrorInfo` reason, when the sidecar sent one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Status { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }

    /// True when the sidecar could not answer: unreachable, too slow,
    /// overloaded, shutting down, or the connection broke. These are the
    /// errors the [`FailMode`](crate::FailMode) applies to; any other error
    /// (a malformed request, a refused report) is an answer, never replaced.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } => true,
            Self::Status { code, reason, .. } => matches!(
                (code, reason),
                (
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::ResourceExhausted
                        | tonic::Code::Cancelled,
                    _
                ) | (tonic::Code::Unknown, None)
            ),
        }
    }

    /// The error of a status from a call to `target`.
    pub(crate) fn from_status(target: &str, status: &tonic::Status) -> Self {
        if crate::transport::never_sent(status) {
            return Self::Unreachable {
                target: target.to_owned(),
                message: status.message().to_owned(),
            };
        }
        let info = status.get_error_details().error_info().cloned();
        // Only the sidecar's own reasons count: a proxy between the two may
        // answer with ErrorInfo of its own domain.
        let (reason, metadata) = match info {
            Some(info) if info.domain == "stepup" => (Some(info.reason), info.metadata),
            _ => (None, HashMap::new()),
        };
        Self::Status {
            code: status.code(),
            reason,
            metadata,
            message: status.message().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    fn status(domain: &str) -> tonic::Status {
        tonic::Status::with_error_details(
            tonic::Code::Unavailable,
            "stopping",
            ErrorDetails::with_error_info("SHUTTING_DOWN", domain, HashMap::new()),
        )
    }

    #[test]
    fn only_the_sidecars_domain_gives_a_reason() {
        let ours = CallError::from_status("t", &status("stepup"));
        assert_eq!(ours.reason(), Some("SHUTTING_DOWN"));
        let theirs = CallError::from_status("t", &status("proxy.example"));
        assert_eq!(theirs.reason(), None);
    }
}
