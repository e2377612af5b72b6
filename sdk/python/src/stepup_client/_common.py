"""What the sync and asyncio clients share: transport settings (TCP, TLS,
Unix socket), the fail mode (fallback), metrics hooks and the method paths."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import grpc

from stepup_client._errors import StepUpError
from stepup_client.v1 import decision_pb2 as pb

log = logging.getLogger("stepup_client")

#: The default per-call deadline, in seconds. The sidecar runs next to the
#: service and answers in about a millisecond; half a second leaves room for
#: a cold start or a busy host without holding a request thread long.
DEFAULT_TIMEOUT = 0.5
#: Default retries of a call that did not run (see RetryPolicy).
DEFAULT_RETRIES = 2

_SERVICE = pb.DESCRIPTOR.services_by_name["DecisionService"]


def method_path(name: str) -> str:
    """The gRPC path of a DecisionService method, from the generated
    descriptor (so it follows the proto), e.g.
    `/stepup.v1.DecisionService/Decide`."""
    return f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name[name].name}"


@dataclass(frozen=True)
class Tls:
    """TLS to the sidecar: `root_ca` (PEM) verifies its certificate (None:
    the system roots); `cert` and `key` (PEM) are the client certificate for
    mutual TLS; `server_name` overrides the name checked against the
    server's certificate (when the target is an IP address)."""

    root_ca: Optional[bytes] = None
    cert: Optional[bytes] = None
    key: Optional[bytes] = None
    server_name: Optional[str] = None

    @classmethod
    def from_files(
        cls,
        root_ca: Union[str, Path, None] = None,
        cert: Union[str, Path, None] = None,
        key: Union[str, Path, None] = None,
        server_name: Optional[str] = None,
    ) -> "Tls":
        """Reads the PEM files."""

        def read(path: Union[str, Path, None]) -> Optional[bytes]:
            return None if path is None else Path(path).read_bytes()

        return cls(read(root_ca), read(cert), read(key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials."""
        if (self.cert is None) != (self.key is None):
            raise ValueError("stepup_client.Tls: `cert` and `key` go together (mutual TLS)")
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_ca, private_key=self.key, certificate_chain=self.cert
        )


ChannelOptions = Sequence[Tuple[str, Union[str, int]]]


def channel_options(
    target: str, tls: Optional[Tls], extra: ChannelOptions
) -> List[Tuple[str, Union[str, int]]]:
    """Channel options for `target`. For a Unix socket (`unix:/path`)
    grpc-core would send the socket path as `:authority`, which the sidecar
    refuses (it is not a host name): `grpc.default_authority=localhost`."""
    options: List[Tuple[str, Union[str, int]]] = []
    if target.startswith(("unix:", "unix-abstract:")):
        options.append(("grpc.default_authority", "localhost"))
    if tls is not None and tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    options.extend(extra)
    return options


@dataclass(frozen=True)
class DecisionEvent:
    """One Decide answered: by the sidecar, or by the fallback when
    `fallback` is true (then `error` is the failure it answered)."""

    action: str
    outcome: int
    seconds: float
    attempts: int
    fallback: bool = False
    error: Optional[StepUpError] = None

    @property
    def outcome_name(self) -> str:
        """`ALLOW`, `CHALLENGE`, `DENY` (or `UNSPECIFIED`)."""
        return pb.Outcome.Name(self.outcome).removeprefix("OUTCOME_")


@dataclass(frozen=True)
class ErrorEvent:
    """A call that failed (raised, or answered by the fallback)."""

    method: str
    error: StepUpError
    seconds: float
    attempts: int


@dataclass(frozen=True)
class Hooks:
    """Metrics hooks, called synchronously after each call: `on_decision`
    for every Decide answered (fallback answers included), `on_error` for
    every failed call of any method. A hook that raises is logged and
    ignored: telemetry never changes a decision."""

    on_decision: Optional[Callable[[DecisionEvent], None]] = None
    on_error: Optional[Callable[[ErrorEvent], None]] = None

    def decision(self, event: DecisionEvent) -> None:
        if self.on_decision is not None:
            try:
                self.on_decision(event)
            except Exception:
                log.exception("stepup_client: on_decision hook failed (ignored)")

    def failure(self, event: ErrorEvent) -> None:
        if self.on_error is not None:
            try:
                self.on_error(event)
            except Exception:
                log.exception("stepup_client: on_error hook failed (ignored)")


#: A configured answer for when the sidecar does not answer (see
#: StepUpError.unavailable): it gets the request and the error and returns
#: the decision to enforce. Without one, the client raises
#: SidecarUnavailable: fail closed.
Fallback = Callable[[pb.DecideRequest, StepUpError], pb.DecideResponse]


def static_fallback(
    outcome: pb.Outcome,
    *,
    message: str = "the step-up service is unavailable",
    www_authenticate: str = "",
) -> Fallback:
    """A fallback that answers every request with `outcome`: DENY (a 403
    instead of a 503), CHALLENGE with a `www_authenticate` value of your
    own, or ALLOW for routes that may fail open. The reason's rule id is
    `stepup-unavailable`; the decision id is empty."""

    def answer(request: pb.DecideRequest, error: StepUpError) -> pb.DecideResponse:
        effect = pb.EFFECT_DENY if outcome == pb.OUTCOME_DENY else pb.EFFECT_CHALLENGE
        reasons = []
        if outcome != pb.OUTCOME_ALLOW:
            reasons.append(pb.Reason(rule_id="stepup-unavailable", effect=effect, message=message))
        return pb.DecideResponse(
            outcome=outcome, reasons=reasons, www_authenticate=www_authenticate
        )

    return answer


@dataclass
class RetryPolicy:
    """Retries of a call that did not run, with jittered exponential
    backoff, all within the call's one deadline. The sidecar records each
    Decide in the subject's history (the counts that behavioural rules
    read), so a call that reached it must not be sent again. A call is
    retried only when:

    - it was never sent (`StepUpError.never_sent`): gRPC had no connection
      to put it on (the sidecar is not listening, is restarting, or its
      address does not resolve). The clients make their calls without
      `wait_for_ready`, so such a call fails at once instead of waiting for
      a connection; any method, RecordStepUp included;
    - Decide and DecideBatch only: the sidecar answered UNAVAILABLE with
      ErrorInfo reason `SHUTTING_DOWN` (`StepUpError.shutting_down`): it
      was stopping and did not run the call.

    Anything else is final: a connection lost after the call was sent (the
    sidecar may have decided it), DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED
    (`OVERLOADED`), an UNAVAILABLE without that reason."""

    retries: int = DEFAULT_RETRIES
    backoff: float = 0.02
    max_backoff: float = 0.2
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * (2.0**attempt))
        return base / 2 + self._rng.random() * base / 2

    def should_retry(self, error: StepUpError, attempt: int, *, after_shutdown: bool) -> bool:
        """Whether to make attempt `attempt + 1` (0-based `attempt` just
        failed with `error`). `after_shutdown`: a SHUTTING_DOWN refusal may
        be retried (Decide, DecideBatch; not RecordStepUp)."""
        if attempt >= self.retries:
            return False
        return error.never_sent or (after_shutdown and error.shutting_down)


def evidence_request(
    evidence: str, *, device_id: str = "", tenant: str = ""
) -> pb.RecordStepUpRequest:
    """A RecordStepUp request that carries the step-up's signed token (the
    ID token of the completed step-up): the sidecar takes the subject,
    session (`sid`), `acr`, `amr` and `auth_time` from the verified token."""
    return pb.RecordStepUpRequest(evidence=evidence, device_id=device_id, tenant=tenant)
