//! Every error a gRPC method answers with, and its one mapping to a
//! `Status`: bad input is `INVALID_ARGUMENT` naming the field (or, for a
//! body that is no message at all, the message type); nothing of the policy
//! and no secret is ever put in a status. Every status carries Google's
//! error details (AIP-193): a `google.rpc.ErrorInfo` with a stable reason,
//! and for a bad field a `google.rpc.BadRequest` naming it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::request::InvalidRequest;
use crate::trust::TokenError;

/// Why a call failed. `From<CallError> for Status` is the only place a
/// handler's error becomes a status.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The body is not a message of the method's request type: undecodable
    /// protobuf, a truncated frame, no message (found by
    /// [`Counted`](super::counted::Counted), before any handler runs).
    #[error("`{message}`: not a valid message: {detail}")]
    Malformed {
        /// The request message type, e.g. `stepup.v1.DecideRequest`.
        message: &'static str,
        /// What the decoder said, e.g. `invalid wire type value: 7`.
        detail: String,
    },
    /// A field of the request is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// History is turned off, so a step-up report has nowhere to go.
    #[error(
        "history is turned off (`[history] enabled = false`): step-up reports are not recorded"
    )]
    HistoryOff,
    /// Nothing is trusted (no `[trust]` settings): step-up reports are off.
    #[error(
        "step-up reports are off: no `[trust]` settings; add `[[trust.issuers]]` to accept reports that carry the step-up's signed token in `evidence`, or `[trust] reporters` for mTLS callers"
    )]
    ReportsOff,
    /// A report without evidence from a caller that is not a listed
    /// reporter.
    #[error(
        "step-up report refused: it carries no `evidence` (the step-up's signed token), and the caller {caller}"
    )]
    Untrusted {
        /// What is wrong with the caller, e.g. "`spiffe://...` is not on
        /// `[trust] reporters`".
        caller: String,
    },
    /// The `evidence` token failed a check (the code names it; the message
    /// is [`TokenError::public_message`], which names nothing of the
    /// configuration).
    #[error("`evidence` refused ({code}): {error}", code = .0.code(), error = .0.public_message())]
    Evidence(TokenError),
    /// A field sent beside the evidence says something the token does not.
    #[error("`{field}` {detail}")]
    EvidenceMismatch {
        /// The request field.
        field: &'static str,
        /// How it disagrees, e.g. "does not match the evidence's `sid` claim".
        detail: String,
    },
    /// As many calls as the limit allows are in flight: this one is shed
    /// rather than queued.
    #[error("overloaded: {limit} calls in flight, the most this server takes at once; retry later")]
    Overloaded {
        /// The in-flight limit (`max_in_flight`).
        limit: usize,
    },
    /// The server stopped before the call's decision could run.
    #[error("the server is shutting down; retry on another replica")]
    ShuttingDown,
}

/// The `google.rpc.ErrorInfo` domain of every error stepup answers with:
/// the product's name (it has no registered service domain).
pub const ERROR_DOMAIN: &str = "stepup";

impl CallError {
    /// The stable `google.rpc.ErrorInfo` reason (UPPER_SNAKE_CASE) a client
    /// can branch on, whatever the message says.
    pub fn reason(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::Malformed { .. } => "MALFORMED_MESSAGE",
            Self::Invalid(_) => "INVALID_FIELD",
            Self::HistoryOff => "HISTORY_DISABLED",
            Self::ReportsOff => "STEP_UP_REPORTS_DISABLED",
            Self::Untrusted { .. } => "REPORTER_NOT_TRUSTED",
            // One reason per check: `EVIDENCE_EXPIRED`, `EVIDENCE_BAD_SIGNATURE`.
            Self::Evidence(e) => {
                return Cow::Owned(format!("EVIDENCE_{}", e.code().to_ascii_uppercase()));
            }
            Self::EvidenceMismatch { .. } => "EVIDENCE_MISMATCH",
            Self::Overloaded { .. } => "OVERLOADED",
            Self::ShuttingDown => "SHUTTING_DOWN",
        })
    }

    /// The `google.rpc` details of the status: ErrorInfo always (its
    /// metadata keys in lowerCamelCase, AIP-193), BadRequest for a bad field.
    fn details(&self) -> ErrorDetails {
        let entry: Option<(&str, String)> = match self {
            Self::Malformed { message, .. } => Some(("message", (*message).to_owned())),
            Self::Invalid(e) => Some(("field", e.field.clone())),
            Self::Evidence(e) => Some(("check", e.code().to_owned())),
            Self::EvidenceMismatch { field, .. } => Some(("field", (*field).to_owned())),
            Self::Overloaded { limit } => Some(("maxInFlight", limit.to_string())),
            Self::HistoryOff | Self::ReportsOff | Self::Untrusted { .. } | Self::ShuttingDown => {
                None
            }
        };
        let metadata: HashMap<String, String> =
            entry.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let mut details = ErrorDetails::with_error_info(self.reason(), ERROR_DOMAIN, metadata);
        if let Self::Invalid(e) = self {
            details.add_bad_request_violation(e.field.clone(), e.problem.clone());
        }
        details
    }

    /// The status code the error is answered with.
    pub fn code(&self) -> Code {
        match self {
            Self::Malformed { .. } | Self::Invalid(_) => Code::InvalidArgument,
            Self::HistoryOff => Code::FailedPrecondition,
            Self::ReportsOff | Self::Untrusted { .. } | Self::EvidenceMismatch { .. } => {
                Code::PermissionDenied
            }
            // The verifier could not check the token: retry later.
            Self::Evidence(e) if !e.is_token_fault() => Code::Unavailable,
            Self::Evidence(_) => Code::Unauthenticated,
            Self::Overloaded { .. } => Code::ResourceExhausted,
            Self::ShuttingDown => Code::Unavailable,
        }
    }
}

impl From<CallError> for Status {
    fn from(e: CallError) -> Self {
        let mut status = Status::with_error_details(e.code(), e.to_string(), e.details());
        // The source (never sent) marks the status as a handler's answer:
        // `Counted` rewrites only the transport's own errors.
        status.set_source(Arc::new(e));
        status
    }
}

/// Whether `status` is a handler's answer, made from a [`CallError`].
pub(crate) fn is_call_error(status: &Status) -> bool {
    std::error::Error::source(status).is_some_and(|s| s.is::<CallError>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::validate::invalid;

    /// Every status carries an ErrorInfo in the `stepup` domain; a bad
    /// field also a BadRequest naming it by its proto path.
    #[test]
    fn statuses_carry_error_details() {
        let status = Status::from(CallError::from(invalid("session.auth_time", "bad")));
        let info = status.get_details_error_info().unwrap();
        assert_eq!((&*info.reason, &*info.domain), ("INVALID_FIELD", "stepup"));
        assert_eq!(info.metadata["field"], "session.auth_time");
        let bad = status.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "session.auth_time");
        assert_eq!(bad.field_violations[0].description, "bad");

        let reasons = [
            (CallError::HistoryOff, "HISTORY_DISABLED"),
            (CallError::ReportsOff, "STEP_UP_REPORTS_DISABLED"),
            (
                CallError::Evidence(TokenError::BadSignature),
                "EVIDENCE_BAD_SIGNATURE",
            ),
            (CallError::Overloaded { limit: 8 }, "OVERLOADED"),
            (CallError::ShuttingDown, "SHUTTING_DOWN"),
        ];
        for (e, reason) in reasons {
            let status = Status::from(e);
            assert_eq!(status.get_details_error_info().unwrap().reason, reason);
            assert!(status.get_details_bad_request().is_none(), "{reason}");
        }
        let status = Status::from(CallError::Overloaded { limit: 8 });
        assert_eq!(
            status.get_details_error_info().unwrap().metadata["maxInFlight"],
            "8"
        );
        // PERMISSION_DENIED names its field in the ErrorInfo only (a
        // BadRequest is for INVALID_ARGUMENT).
        let status = Status::from(CallError::EvidenceMismatch {
            field: "session_id",
            detail: "does not match the evidence's `sid` claim".into(),
        });
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "EVIDENCE_MISMATCH");
        assert_eq!(info.metadata["field"], "session_id");
        assert!(status.get_details_bad_request().is_none());
        let status = Status::from(CallError::Evidence(TokenError::KeysUnavailable {
            issuer: "https://idp.test".into(),
            reason: "connection refused".into(),
        }));
        assert_eq!(status.code(), Code::Unavailable);
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "EVIDENCE_KEYS_UNAVAILABLE");
        assert_eq!(info.metadata["check"], "keys_unavailable");
    }

    #[test]
    fn bad_input_is_invalid_argument_naming_the_field() {
        let status = Status::from(CallError::from(invalid("subject.id", "required")));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "`subject.id`: required");
        assert!(is_call_error(&status));

        let status = Status::from(CallError::Malformed {
            message: "stepup.v1.DecideRequest",
            detail: "invalid wire type value: 7".into(),
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "`stepup.v1.DecideRequest`: not a valid message: invalid wire type value: 7"
        );

        let status = Status::from(CallError::HistoryOff);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(!is_call_error(&Status::internal("x")));

        let status = Status::from(CallError::ReportsOff);
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("`[[trust.issuers]]`"));
        let status = Status::from(CallError::Evidence(TokenError::BadSignature));
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(
            status.message(),
            "`evidence` refused (bad_signature): the signature does not verify"
        );
        let status = Status::from(CallError::Evidence(TokenError::KeysUnavailable {
            issuer: "https://idp.test".into(),
            reason: "https://idp.internal/jwks: connection refused".into(),
        }));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "`evidence` refused (keys_unavailable): the keys of issuer `https://idp.test` are unavailable; retry later"
        );
        // Nothing of the configuration reaches an unauthenticated caller.
        let status = Status::from(CallError::Evidence(TokenError::Audience {
            accepted: "`checkout-web`, `admin-console`".into(),
        }));
        assert_eq!(
            status.message(),
            "`evidence` refused (aud_mismatch): `aud` names none of the accepted audiences"
        );
        let status = Status::from(CallError::EvidenceMismatch {
            field: "session_id",
            detail: "does not match the evidence's `sid` claim".into(),
        });
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(
            status.message(),
            "`session_id` does not match the evidence's `sid` claim"
        );

        let status = Status::from(CallError::Overloaded { limit: 8 });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "overloaded: 8 calls in flight, the most this server takes at once; retry later"
        );
    }
}
