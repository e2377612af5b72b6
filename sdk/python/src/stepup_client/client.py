"""The synchronous client (`grpc`), for WSGI apps, workers and scripts."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Optional, Tuple, Type, TypeVar

import grpc

from stepup_client._common import (
    DEFAULT_TIMEOUT,
    ChannelOptions,
    DecisionEvent,
    ErrorEvent,
    Fallback,
    Hooks,
    RetryPolicy,
    Tls,
    channel_options,
    evidence_request,
    method_path,
)
from stepup_client._errors import StepUpError, from_rpc_error
from stepup_client.v1 import decision_pb2 as pb
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class StepUpClient:
    """A blocking client of the sidecar's DecisionService.

    `target` is `host:port` (plaintext, or TLS with `tls`), or
    `unix:/path/to/socket`. Every call has one deadline (`timeout` seconds,
    per client or per call) covering its retries; only a call that did not
    run is retried (see RetryPolicy). Fail closed: when the sidecar does
    not answer, `decide` raises SidecarUnavailable, unless a `fallback` is
    configured, whose answer is returned instead."""

    def __init__(
        self,
        target: str,
        *,
        tls: Optional[Tls] = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: Optional[RetryPolicy] = None,
        fallback: Optional[Fallback] = None,
        hooks: Optional[Hooks] = None,
        options: ChannelOptions = (),
    ) -> None:
        opts = channel_options(target, tls, options)
        if tls is None:
            self._channel = grpc.insecure_channel(target, options=opts)
        else:
            self._channel = grpc.secure_channel(target, tls.credentials(), options=opts)
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self.fallback = fallback
        self.hooks = hooks if hooks is not None else Hooks()
        self._decide = self._channel.unary_unary(
            method_path("Decide"),
            request_serializer=pb.DecideRequest.SerializeToString,
            response_deserializer=pb.DecideResponse.FromString,
        )
        self._batch = self._channel.unary_unary(
            method_path("DecideBatch"),
            request_serializer=pb.DecideBatchRequest.SerializeToString,
            response_deserializer=pb.DecideBatchResponse.FromString,
        )
        self._record = self._channel.unary_unary(
            method_path("RecordStepUp"),
            request_serializer=pb.RecordStepUpRequest.SerializeToString,
            response_deserializer=pb.RecordStepUpResponse.FromString,
        )

    def decide(self, request: pb.DecideRequest, *, timeout: Optional[float] = None) -> pb.DecideResponse:
        """Asks the sidecar for a decision. Retried within the deadline
        when it was never sent or the sidecar refused it while shutting
        down (RetryPolicy), never once it may have been decided; raises
        StepUpError (SidecarUnavailable when it did not answer and no
        fallback is configured)."""
        start = time.monotonic()
        try:
            response, attempts = self._call("Decide", self._decide, request, timeout, after_shutdown=True)
        except _Failed as failed:
            seconds = time.monotonic() - start
            self.hooks.failure(ErrorEvent("Decide", failed.error, seconds, failed.attempts))
            if self.fallback is None or not failed.error.unavailable:
                raise failed.error from failed.error.__cause__
            answer = self.fallback(request, failed.error)
            self.hooks.decision(
                DecisionEvent(request.action, answer.outcome, seconds, failed.attempts, True, failed.error)
            )
            return answer
        seconds = time.monotonic() - start
        self.hooks.decision(DecisionEvent(request.action, response.outcome, seconds, attempts))
        return response

    def decide_batch(
        self, request: pb.DecideBatchRequest, *, timeout: Optional[float] = None
    ) -> pb.DecideBatchResponse:
        """Up to 100 decisions in one call (no fallback: it raises)."""
        return self._plain("DecideBatch", self._batch, request, timeout, after_shutdown=True)

    def record_step_up(
        self, request: pb.RecordStepUpRequest, *, timeout: Optional[float] = None
    ) -> pb.RecordStepUpResponse:
        """Reports a step-up's outcome. Retried only when it was never sent
        (a report must not count twice); raises StepUpError with the
        ErrorInfo reason, e.g. `EVIDENCE_EXPIRED`, `REPORTER_NOT_TRUSTED`."""
        return self._plain("RecordStepUp", self._record, request, timeout, after_shutdown=False)

    def record_step_up_evidence(
        self,
        evidence: str,
        *,
        device_id: str = "",
        tenant: str = "",
        timeout: Optional[float] = None,
    ) -> pb.RecordStepUpResponse:
        """Reports a completed step-up with its ID token as evidence (see
        `evidence_request`)."""
        return self.record_step_up(
            evidence_request(evidence, device_id=device_id, tenant=tenant), timeout=timeout
        )

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> "StepUpClient":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def _plain(
        self,
        method: str,
        call: "grpc.UnaryUnaryMultiCallable[_Req, _Resp]",
        request: _Req,
        timeout: Optional[float],
        *,
        after_shutdown: bool,
    ) -> _Resp:
        start = time.monotonic()
        try:
            return self._call(method, call, request, timeout, after_shutdown=after_shutdown)[0]
        except _Failed as failed:
            self.hooks.failure(
                ErrorEvent(method, failed.error, time.monotonic() - start, failed.attempts)
            )
            raise failed.error from failed.error.__cause__

    def _call(
        self,
        method: str,
        call: "grpc.UnaryUnaryMultiCallable[_Req, _Resp]",
        request: _Req,
        timeout: Optional[float],
        *,
        after_shutdown: bool,
    ) -> Tuple[_Resp, int]:
        # `wait_for_ready=False` (set explicitly, so no service config can
        # change it): with no connection to the sidecar the call fails at
        # once, unsent, and is retried; waiting for a connection would
        # spend the deadline instead.
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        attempt = 0
        while True:
            attempt += 1
            remaining = max(deadline - time.monotonic(), 0.0)
            try:
                return call(request, timeout=remaining, wait_for_ready=False), attempt
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(method, rpc_error)
                error.__cause__ = rpc_error
                delay = self.retry.delay(attempt - 1)
                if not self.retry.should_retry(error, attempt - 1, after_shutdown=after_shutdown):
                    raise _Failed(error, attempt) from rpc_error
                if time.monotonic() + delay >= deadline:
                    raise _Failed(error, attempt) from rpc_error
                time.sleep(delay)


class _Failed(Exception):
    """Internal: a failed call with its attempt count."""

    def __init__(self, error: StepUpError, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


__all__ = ["StepUpClient"]
