"""Client for the stepup step-up authentication sidecar (gRPC `stepup.v1`).

- `StepUpClient` (blocking, `grpc`) and `AsyncStepUpClient` (`grpc.aio`):
  `decide`, `decide_batch`, `record_step_up`, `record_step_up_evidence`.
- `stepup_client.asgi.StepUpMiddleware` and
  `stepup_client.fastapi.require_step_up` enforce decisions over HTTP.
- `session_from_claims` and friends read a verified JWT's claims.
- `stepup_client.v1` holds the protobuf messages.
"""

from stepup_client._common import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DecisionEvent,
    ErrorEvent,
    Fallback,
    Hooks,
    RetryPolicy,
    Tls,
    evidence_request,
    static_fallback,
)
from stepup_client._errors import SidecarUnavailable, StepUpError
from stepup_client.aio import AsyncStepUpClient
from stepup_client.claims import decide_request_from_claims, session_from_claims, subject_from_claims
from stepup_client.client import StepUpClient

#: The gRPC package this client speaks.
PROTO_PACKAGE = "stepup.v1"
__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "PROTO_PACKAGE",
    "AsyncStepUpClient",
    "DecisionEvent",
    "ErrorEvent",
    "Fallback",
    "Hooks",
    "RetryPolicy",
    "SidecarUnavailable",
    "StepUpClient",
    "StepUpError",
    "Tls",
    "decide_request_from_claims",
    "evidence_request",
    "session_from_claims",
    "static_fallback",
    "subject_from_claims",
]
