"""Which failed calls the clients send again: only calls that did not run.

The sidecar records each Decide in the subject's history, so a call whose
answer was lost after the sidecar decided it must not be repeated: a real
`stepup serve` behind a proxy that cuts the connection as the answer starts
shows it is decided once. A call gRPC never sent (nothing listening) is
retried and still fails closed. The sidecar's own refusals are checked with
an in-process gRPC server that answers the statuses it sends: only
UNAVAILABLE with ErrorInfo `SHUTTING_DOWN` (domain `stepup`) is retried, and
only for Decide and DecideBatch."""

from __future__ import annotations

import time
from concurrent import futures
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from conftest import Idp, Recorder, Sidecar, free_port, fresh_ids, refund_request, start_sidecar
from proxy import AnswerDroppingProxy
from stepup_client import (
    AsyncStepUpClient,
    RetryPolicy,
    SidecarUnavailable,
    StepUpClient,
    StepUpError,
    static_fallback,
)
from stepup_client.v1 import (
    OUTCOME_ALLOW,
    OUTCOME_DENY,
    DecideBatchRequest,
    DecideBatchResponse,
    DecideRequest,
    DecideResponse,
    RecordStepUpRequest,
    RecordStepUpResponse,
)

#: Up to three retries, close together: a retry would have every chance to
#: happen within the tests' deadlines.
RETRY = RetryPolicy(retries=3, backoff=0.01)


@pytest.fixture(scope="module")
def counted(stepup_bin: str, idp: Idp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """A sidecar with its admin listener, for its call counters."""
    running = start_sidecar(stepup_bin, tmp_path_factory.mktemp("counted"), idp, admin=True)
    yield running
    running.stop()


@pytest.fixture
def lossy(counted: Sidecar) -> Iterator[AnswerDroppingProxy]:
    proxy = AnswerDroppingProxy(counted.target)
    yield proxy
    proxy.stop()


class Counts:
    """What the sidecar counts from now on: gRPC calls by method
    (`stepup_grpc_requests_total`) and decisions
    (`stepup_decisions_total`)."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.start = self.now()

    def now(self) -> Tuple[float, ...]:
        calls = [
            self.sidecar.metric("stepup_grpc_requests_total", method=method)
            for method in ("Decide", "DecideBatch", "RecordStepUp")
        ]
        return (*calls, self.sidecar.metric("stepup_decisions_total"))

    def since(self) -> Tuple[float, ...]:
        """(Decide calls, DecideBatch calls, RecordStepUp calls, decisions)
        since the start, once they hold still for 0.2 s (a call is counted
        as its answer goes out, just after the proxy saw it begin)."""
        deadline = time.monotonic() + 3.0
        last = None
        while True:
            now = self.now()
            if now == last or time.monotonic() > deadline:
                return tuple(n - s for n, s in zip(now, self.start))
            last = now
            time.sleep(0.2)


def test_calls_whose_answer_was_lost_are_not_sent_again(
    counted: Sidecar, lossy: AnswerDroppingProxy, idp: Idp
) -> None:
    recorder = Recorder()
    sub, sid = fresh_ids()
    with StepUpClient(lossy.target, timeout=3.0, retry=RETRY, hooks=recorder.hooks) as client:
        counts = Counts(counted)
        with pytest.raises(SidecarUnavailable) as lost:
            client.decide(refund_request(sub, sid))
        assert lost.value.code == grpc.StatusCode.UNAVAILABLE
        assert not lost.value.never_sent
        assert counts.since() == (1, 0, 0, 1)

        counts = Counts(counted)
        batch = DecideBatchRequest(requests=[refund_request(sub, sid), refund_request(*fresh_ids())])
        with pytest.raises(SidecarUnavailable):
            client.decide_batch(batch)
        assert counts.since() == (0, 1, 0, 2)

        counts = Counts(counted)
        id_token = idp.token(sub, sid, "urn:stepup:aal2", ["otp"], int(time.time()))
        with pytest.raises(SidecarUnavailable):
            client.record_step_up_evidence(id_token)
        assert counts.since() == (0, 0, 1, 0)
    assert lossy.answers_dropped == 3
    assert [(e.method, e.attempts) for e in recorder.errors] == [
        ("Decide", 1),
        ("DecideBatch", 1),
        ("RecordStepUp", 1),
    ]
    assert recorder.decisions == []


async def test_async_a_decide_whose_answer_was_lost_is_not_sent_again(
    counted: Sidecar, lossy: AnswerDroppingProxy
) -> None:
    recorder = Recorder()
    async with AsyncStepUpClient(lossy.target, timeout=3.0, retry=RETRY, hooks=recorder.hooks) as client:
        counts = Counts(counted)
        with pytest.raises(SidecarUnavailable) as lost:
            await client.decide(refund_request(*fresh_ids()))
        assert lost.value.code == grpc.StatusCode.UNAVAILABLE
        assert not lost.value.never_sent
        assert counts.since() == (1, 0, 0, 1)
        counts = Counts(counted)
        with pytest.raises(SidecarUnavailable):
            await client.decide_batch(DecideBatchRequest(requests=[refund_request(*fresh_ids())]))
        assert counts.since() == (0, 1, 0, 1)
    assert lossy.answers_dropped == 2
    assert [(e.method, e.attempts) for e in recorder.errors] == [("Decide", 1), ("DecideBatch", 1)]


def test_the_proxy_passes_calls_whose_answer_it_does_not_reach(counted: Sidecar, lossy: AnswerDroppingProxy) -> None:
    """The control: through the proxy the client connects and its calls
    reach the sidecar (the errors above are the lost answers, not a
    connection that never worked); the sidecar itself answers."""
    with StepUpClient(counted.target) as direct:
        assert direct.decide(refund_request(*fresh_ids(), amount=5.0)).outcome == OUTCOME_ALLOW
    with StepUpClient(lossy.target, timeout=3.0) as client:
        counts = Counts(counted)
        with pytest.raises(SidecarUnavailable):
            client.decide(refund_request(*fresh_ids(), amount=5.0))
        assert counts.since()[0] == 1
    assert lossy.connections == 1


def test_a_call_never_sent_is_retried_and_fails_closed() -> None:
    recorder = Recorder()
    nobody = f"127.0.0.1:{free_port()}"
    with StepUpClient(nobody, timeout=2.0, retry=RetryPolicy(retries=2, backoff=0.01), hooks=recorder.hooks) as client:
        with pytest.raises(SidecarUnavailable) as down:
            client.decide(refund_request("alice", "s-1"))
        assert down.value.code == grpc.StatusCode.UNAVAILABLE
        assert down.value.never_sent
        assert down.value.message.startswith("failed to connect to all addresses")
        with pytest.raises(SidecarUnavailable):
            client.decide_batch(DecideBatchRequest(requests=[refund_request("alice", "s-1")]))
        # A report that was never sent cannot count twice: retried too.
        with pytest.raises(SidecarUnavailable) as report:
            client.record_step_up_evidence("a.b.c")
        assert report.value.never_sent
    assert [(e.method, e.attempts) for e in recorder.errors] == [
        ("Decide", 3),
        ("DecideBatch", 3),
        ("RecordStepUp", 3),
    ]
    assert recorder.decisions == []


async def test_async_a_call_never_sent_is_retried_then_answered_by_the_fallback(tmp_path: Path) -> None:
    recorder = Recorder()
    missing = f"unix:{tmp_path / 'no-sidecar.sock'}"
    async with AsyncStepUpClient(
        missing,
        timeout=2.0,
        retry=RetryPolicy(retries=2, backoff=0.01),
        hooks=recorder.hooks,
        fallback=static_fallback(OUTCOME_DENY),
    ) as client:
        answer = await client.decide(refund_request("alice", "s-1"))
    assert answer.outcome == OUTCOME_DENY
    assert [(e.method, e.attempts, e.error.never_sent) for e in recorder.errors] == [("Decide", 3, True)]
    assert [(e.attempts, e.fallback) for e in recorder.decisions] == [(3, True)]


# What the sidecar answers (code, message, ErrorInfo reason and domain).
Refusal = Tuple[grpc.StatusCode, str, Optional[Tuple[str, str]]]
SHUTTING_DOWN: Refusal = (
    grpc.StatusCode.UNAVAILABLE,
    "the server is shutting down; retry on another replica",
    ("SHUTTING_DOWN", "stepup"),
)


class ScriptedSidecar:
    """An in-process DecisionService that refuses its first calls with
    `refusals`, in turn (a status with the `google.rpc.Status` details the
    sidecar sends), then answers; `calls` counts the calls by method."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        self.refusals: List[Refusal] = list(refusals)
        self.calls: List[str] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers: Dict[str, "grpc.RpcMethodHandler[Any, Any]"] = {
            "Decide": grpc.unary_unary_rpc_method_handler(
                self._answer("Decide", DecideResponse(outcome=OUTCOME_ALLOW, decision_id="d-1")),
                request_deserializer=DecideRequest.FromString,
                response_serializer=DecideResponse.SerializeToString,
            ),
            "DecideBatch": grpc.unary_unary_rpc_method_handler(
                self._answer("DecideBatch", DecideBatchResponse(responses=[DecideResponse(outcome=OUTCOME_ALLOW)])),
                request_deserializer=DecideBatchRequest.FromString,
                response_serializer=DecideBatchResponse.SerializeToString,
            ),
            "RecordStepUp": grpc.unary_unary_rpc_method_handler(
                self._answer("RecordStepUp", RecordStepUpResponse()),
                request_deserializer=RecordStepUpRequest.FromString,
                response_serializer=RecordStepUpResponse.SerializeToString,
            ),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("stepup.v1.DecisionService", handlers),)
        )
        self.target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def _answer(self, method: str, response: object) -> Callable[[object, grpc.ServicerContext], object]:
        def handle(request: object, context: grpc.ServicerContext) -> object:
            self.calls.append(method)
            if not self.refusals:
                return response
            code, message, info = self.refusals.pop(0)
            if info is not None:
                status = status_pb2.Status(code=code.value[0], message=message)
                status.details.add().Pack(error_details_pb2.ErrorInfo(reason=info[0], domain=info[1]))
                context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
            context.abort(code, message)

        return handle

    def stop(self) -> None:
        self.server.stop(grace=None)


@pytest.fixture
def scripted() -> Iterator[List[ScriptedSidecar]]:
    made: List[ScriptedSidecar] = []
    yield made
    for server in made:
        server.stop()


def test_a_decide_refused_while_shutting_down_is_retried(scripted: List[ScriptedSidecar]) -> None:
    server = ScriptedSidecar([SHUTTING_DOWN, SHUTTING_DOWN])
    scripted.append(server)
    recorder = Recorder()
    with StepUpClient(server.target, timeout=2.0, retry=RETRY, hooks=recorder.hooks) as client:
        assert client.decide(refund_request("alice", "s-1")).decision_id == "d-1"
        server.refusals = [SHUTTING_DOWN]
        assert len(client.decide_batch(DecideBatchRequest(requests=[refund_request("alice", "s-1")])).responses) == 1
    assert server.calls == ["Decide", "Decide", "Decide", "DecideBatch", "DecideBatch"]
    assert [(e.outcome_name, e.attempts) for e in recorder.decisions] == [("ALLOW", 3)]


async def test_async_a_decide_refused_while_shutting_down_is_retried(scripted: List[ScriptedSidecar]) -> None:
    server = ScriptedSidecar([SHUTTING_DOWN])
    scripted.append(server)
    async with AsyncStepUpClient(server.target, timeout=2.0, retry=RETRY) as client:
        assert (await client.decide(refund_request("alice", "s-1"))).decision_id == "d-1"
    assert server.calls == ["Decide", "Decide"]


def test_retries_stop_at_the_policy_limit(scripted: List[ScriptedSidecar]) -> None:
    server = ScriptedSidecar([SHUTTING_DOWN] * 5)
    scripted.append(server)
    with StepUpClient(server.target, timeout=2.0, retry=RetryPolicy(retries=1, backoff=0.01)) as client:
        with pytest.raises(SidecarUnavailable) as refused:
            client.decide(refund_request("alice", "s-1"))
    assert refused.value.shutting_down
    assert server.calls == ["Decide", "Decide"]


@pytest.mark.parametrize(
    "refusal",
    [
        # UNAVAILABLE without SHUTTING_DOWN: the call may have run (e.g. the
        # identity provider's keys could not be fetched).
        (grpc.StatusCode.UNAVAILABLE, "the issuer's keys are unavailable", ("EVIDENCE_KEYS_UNAVAILABLE", "stepup")),
        # SHUTTING_DOWN of another domain is not the sidecar's.
        (grpc.StatusCode.UNAVAILABLE, "shutting down", ("SHUTTING_DOWN", "proxy.example")),
        # An answer from the server, even worded like gRPC's own
        # connection failure, was sent.
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: x", ("UPSTREAM", "stepup")),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many calls in flight", ("OVERLOADED", "stepup")),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded", None),
        (grpc.StatusCode.UNAVAILABLE, "upstream connect error", None),
    ],
    ids=["unavailable", "other-domain", "connect-wording", "overloaded", "deadline", "no-details"],
)
def test_other_refusals_are_not_retried(scripted: List[ScriptedSidecar], refusal: Refusal) -> None:
    server = ScriptedSidecar([refusal] * 4)
    scripted.append(server)
    recorder = Recorder()
    with StepUpClient(server.target, timeout=2.0, retry=RETRY, hooks=recorder.hooks) as client:
        with pytest.raises(StepUpError) as refused:
            client.decide(refund_request("alice", "s-1"))
        with pytest.raises(StepUpError):
            client.decide_batch(DecideBatchRequest(requests=[refund_request("alice", "s-1")]))
    assert refused.value.code == refusal[0]
    assert not refused.value.never_sent and not refused.value.shutting_down
    assert server.calls == ["Decide", "DecideBatch"]
    assert [e.attempts for e in recorder.errors] == [1, 1]


def test_a_report_refused_while_shutting_down_is_not_retried(scripted: List[ScriptedSidecar]) -> None:
    server = ScriptedSidecar([SHUTTING_DOWN] * 4)
    scripted.append(server)
    with StepUpClient(server.target, timeout=2.0, retry=RETRY) as client:
        with pytest.raises(SidecarUnavailable) as refused:
            client.record_step_up_evidence("a.b.c")
    assert refused.value.shutting_down
    assert (refused.value.reason, refused.value.domain) == ("SHUTTING_DOWN", "stepup")
    assert server.calls == ["RecordStepUp"]
