"""The asyncio client (`grpc.aio`), for ASGI apps (FastAPI, Starlette)."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Optional, Tuple, Type, TypeVar

import grpc
import grpc.aio

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
from stepup_client._errors import from_rpc_error
from stepup_client.client import _Failed
from stepup_client.v1 import decision_pb2 as pb

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class AsyncStepUpClient:
    """The asyncio twin of StepUpClient: same targets (`host:port`,
    `unix:/path`), TLS, one deadline per call covering its retries, fail
    closed (SidecarUnavailable) unless a `fallback` answers. Create it
    inside the running event loop (e.g. in the app's lifespan): a
    `grpc.aio` channel belongs to the loop it was made in."""

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
            self._channel = grpc.aio.insecure_channel(target, options=opts)
        else:
            self._channel = grpc.aio.secure_channel(target, tls.credentials(), options=opts)
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

    async def decide(
        self, request: pb.DecideRequest, *, timeout: Optional[float] = None
    ) -> pb.DecideResponse:
        """Asks the sidecar for a decision (see StepUpClient.decide)."""
        start = time.monotonic()
        try:
            response, attempts = await self._call("Decide", self._decide, request, timeout, after_shutdown=True)
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

    async def decide_batch(
        self, request: pb.DecideBatchRequest, *, timeout: Optional[float] = None
    ) -> pb.DecideBatchResponse:
        """Up to 100 decisions in one call (no fallback: it raises)."""
        return await self._plain("DecideBatch", self._batch, request, timeout, after_shutdown=True)

    async def record_step_up(
        self, request: pb.RecordStepUpRequest, *, timeout: Optional[float] = None
    ) -> pb.RecordStepUpResponse:
        """Reports a step-up's outcome; retried only when never sent (see
        StepUpClient.record_step_up)."""
        return await self._plain("RecordStepUp", self._record, request, timeout, after_shutdown=False)

    async def record_step_up_evidence(
        self,
        evidence: str,
        *,
        device_id: str = "",
        tenant: str = "",
        timeout: Optional[float] = None,
    ) -> pb.RecordStepUpResponse:
        """Reports a completed step-up with its ID token as evidence."""
        return await self.record_step_up(
            evidence_request(evidence, device_id=device_id, tenant=tenant), timeout=timeout
        )

    async def close(self) -> None:
        """Closes the channel."""
        await self._channel.close()

    async def __aenter__(self) -> "AsyncStepUpClient":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    async def _plain(
        self,
        method: str,
        call: "grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp]",
        request: _Req,
        timeout: Optional[float],
        *,
        after_shutdown: bool,
    ) -> _Resp:
        start = time.monotonic()
        try:
            return (await self._call(method, call, request, timeout, after_shutdown=after_shutdown))[0]
        except _Failed as failed:
            self.hooks.failure(
                ErrorEvent(method, failed.error, time.monotonic() - start, failed.attempts)
            )
            raise failed.error from failed.error.__cause__

    async def _call(
        self,
        method: str,
        call: "grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp]",
        request: _Req,
        timeout: Optional[float],
        *,
        after_shutdown: bool,
    ) -> Tuple[_Resp, int]:
        # `wait_for_ready=False`: see StepUpClient._call.
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        attempt = 0
        while True:
            attempt += 1
            remaining = max(deadline - time.monotonic(), 0.0)
            try:
                return await call(request, timeout=remaining, wait_for_ready=False), attempt
            except grpc.aio.AioRpcError as rpc_error:
                error = from_rpc_error(method, rpc_error)
                error.__cause__ = rpc_error
                delay = self.retry.delay(attempt - 1)
                if not self.retry.should_retry(error, attempt - 1, after_shutdown=after_shutdown):
                    raise _Failed(error, attempt) from rpc_error
                if time.monotonic() + delay >= deadline:
                    raise _Failed(error, attempt) from rpc_error
                await asyncio.sleep(delay)


__all__ = ["AsyncStepUpClient"]
