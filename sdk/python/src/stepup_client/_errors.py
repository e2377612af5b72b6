"""Errors of the stepup clients, with the `google.rpc.ErrorInfo` reason the
sidecar attaches to every error status (`grpc-status-details-bin`)."""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import grpc
from google.rpc import error_details_pb2, status_pb2

#: Status codes that mean "the sidecar did not answer": unreachable, too
#: slow (the per-call deadline passed), overloaded or shutting down. These
#: are the errors a fail mode (fallback) answers; any other is a bug in the
#: request or the set-up and is always raised.
UNAVAILABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)


#: The `google.rpc.ErrorInfo` domain of the sidecar's errors.
ERROR_DOMAIN = "stepup"

#: How grpc-core words the failure of a call it never sent. A call made
#: without `wait_for_ready` (as the clients make them) is failed at once
#: with the channel's connection error when the channel has no connection
#: to put it on: the load-balancing pick fails, so no byte of the call
#: left the process. The message is the load balancer's (pick_first, the
#: default: "failed to connect to all addresses; last error: ..."; the
#: round-robin policies: "connections to all backends failing; ...") or,
#: when the target's name did not resolve, the resolver's ("errors
#: resolving ...", "DNS resolution failed for ...", "empty address
#: list"). A call that was sent and lost its connection fails with the
#: transport's error instead ("Socket closed", "Connection reset by
#: peer"), which none of these begins with.
_NEVER_SENT_PREFIXES = (
    "failed to connect to all addresses",
    "connections to all backends failing",
    "errors resolving ",
    "DNS resolution failed for ",
    "empty address list",
)


class StepUpError(Exception):
    """A call to the sidecar failed.

    `code` is the gRPC status code; `reason`, `domain` and `metadata` come
    from the `google.rpc.ErrorInfo` detail (e.g. reason `INVALID_FIELD` with
    metadata `field`, `EVIDENCE_EXPIRED` with `check`), empty when the status
    carries none (transport errors: unreachable, deadline, message too
    large). `field_violations` lists the `google.rpc.BadRequest` detail's
    (field, description) pairs. `never_sent` is true when gRPC failed the
    call before sending it (no connection to the sidecar could be made, or
    its address did not resolve): the sidecar cannot have seen it."""

    def __init__(
        self,
        method: str,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Optional[Mapping[str, str]] = None,
        field_violations: Sequence[Tuple[str, str]] = (),
        never_sent: bool = False,
    ) -> None:
        self.method = method
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: Dict[str, str] = dict(metadata or {})
        self.field_violations: List[Tuple[str, str]] = list(field_violations)
        self.never_sent = never_sent
        detail = f" ({reason})" if reason else ""
        super().__init__(f"stepup {method}: {code.name}{detail}: {message}")

    @property
    def unavailable(self) -> bool:
        """Whether the sidecar did not answer (unreachable, too slow,
        overloaded, shutting down): the case the fail mode is for."""
        return self.code in UNAVAILABLE_CODES

    @property
    def shutting_down(self) -> bool:
        """Whether the sidecar refused the call because it is stopping
        (UNAVAILABLE with ErrorInfo reason `SHUTTING_DOWN`, domain
        `stepup`): it did not run the call."""
        return (
            self.code == grpc.StatusCode.UNAVAILABLE
            and self.reason == "SHUTTING_DOWN"
            and self.domain == ERROR_DOMAIN
        )


class SidecarUnavailable(StepUpError):
    """The sidecar did not answer in time: unreachable, deadline exceeded,
    overloaded or shutting down. Fail closed: the middleware answers 503
    unless a fallback is configured."""


#: The trailer carrying the `google.rpc.Status` with the error details.
GRPC_DETAILS_METADATA_KEY = "grpc-status-details-bin"

_Metadata = Sequence[Tuple[str, Union[str, bytes]]]


def from_rpc_error(method: str, error: grpc.RpcError) -> StepUpError:
    """The StepUpError for a failed call (sync `grpc.RpcError` or
    `grpc.aio.AioRpcError`), with the status details decoded."""
    code_fn = getattr(error, "code", None)
    details_fn = getattr(error, "details", None)
    trailers_fn = getattr(error, "trailing_metadata", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    message = details_fn() if callable(details_fn) else str(error)
    trailers = trailers_fn() if callable(trailers_fn) else None
    return _build(method, code, str(message or ""), trailers)


def _build(
    method: str, code: grpc.StatusCode, message: str, trailers: Optional[_Metadata]
) -> StepUpError:
    reason = ""
    domain = ""
    metadata: Dict[str, str] = {}
    violations: List[Tuple[str, str]] = []
    has_details = False
    for key, value in trailers or ():
        if key != GRPC_DETAILS_METADATA_KEY or not isinstance(value, bytes):
            continue
        has_details = True
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # a malformed detail must not hide the status
            continue
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(info):
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Unpack(bad):
                violations.extend((v.field, v.description) for v in bad.field_violations)
    cls = SidecarUnavailable if code in UNAVAILABLE_CODES else StepUpError
    # grpc-core's own failures carry no status details; every error the
    # sidecar answers does (ErrorInfo): a message alone never makes an
    # answer from the sidecar look unsent.
    never_sent = (
        code == grpc.StatusCode.UNAVAILABLE
        and not has_details
        and message.startswith(_NEVER_SENT_PREFIXES)
    )
    return cls(
        method,
        code,
        message,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=violations,
        never_sent=never_sent,
    )
