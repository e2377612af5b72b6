"""The sync and asyncio clients against a real sidecar: decisions, error
details, retries, deadlines, fallbacks, TLS and mutual TLS, Unix sockets."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List

import grpc
import pytest
from google.protobuf.struct_pb2 import Value

from certs import make_pki
from conftest import Idp, Recorder, Sidecar, free_port, fresh_ids, refund_request, start_sidecar
from stepup_client import (
    AsyncStepUpClient,
    DecisionEvent,
    ErrorEvent,
    Hooks,
    RetryPolicy,
    SidecarUnavailable,
    StepUpClient,
    StepUpError,
    Tls,
    session_from_claims,
    static_fallback,
)
from stepup_client.v1 import (
    OUTCOME_ALLOW,
    OUTCOME_CHALLENGE,
    OUTCOME_DENY,
    DecideBatchRequest,
    DecideRequest,
    RecordStepUpRequest,
    Resource,
    Subject,
)


def test_sync_client_decides_and_reports_a_step_up(sidecar: Sidecar, idp: Idp) -> None:
    recorder = Recorder()
    sub, sid = fresh_ids()
    with StepUpClient(sidecar.target, hooks=recorder.hooks) as client:
        challenged = client.decide(refund_request(sub, sid))
        assert challenged.outcome == OUTCOME_CHALLENGE
        assert challenged.www_authenticate.startswith('Bearer error="insufficient_user_authentication"')
        assert challenged.requirements[0].rule_id == "refund-large"
        assert challenged.max_age.seconds == 300
        assert client.decide(refund_request(sub, sid, 10.0)).outcome == OUTCOME_ALLOW

        id_token = idp.token(sub, sid, "urn:stepup:aal2", ["pwd", "otp"], int(time.time()))
        reported = client.record_step_up_evidence(id_token)
        assert reported.HasField("elevation_expire_time")
        assert reported.stepups_failed == 0
        assert client.decide(refund_request(sub, sid)).outcome == OUTCOME_ALLOW

        batch = client.decide_batch(
            DecideBatchRequest(requests=[refund_request(*fresh_ids()), refund_request(sub, sid)])
        )
        assert [r.outcome for r in batch.responses] == [OUTCOME_CHALLENGE, OUTCOME_ALLOW]
    assert [e.outcome_name for e in recorder.decisions] == ["CHALLENGE", "ALLOW", "ALLOW"]
    assert all(e.attempts == 1 and not e.fallback for e in recorder.decisions)
    assert recorder.errors == []


def test_errors_carry_the_error_info_reason_and_the_bad_field(sidecar: Sidecar, idp: Idp) -> None:
    recorder = Recorder()
    with StepUpClient(sidecar.target, hooks=recorder.hooks, fallback=static_fallback(OUTCOME_ALLOW)) as client:
        # A refused request is never answered by the fallback: it is a bug.
        with pytest.raises(StepUpError) as invalid:
            client.decide(DecideRequest(action="payments.refund", subject=Subject(id="")))
        assert not isinstance(invalid.value, SidecarUnavailable)
        assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert invalid.value.reason == "INVALID_FIELD"
        assert invalid.value.domain == "stepup"
        assert invalid.value.metadata["field"] == "subject.id"
        assert invalid.value.field_violations[0][0] == "subject.id"

        old = int(time.time()) - 7200
        expired = idp.token("alice", "s-x", "urn:stepup:aal2", ["otp"], old, exp=old + 60)
        with pytest.raises(StepUpError) as refused:
            client.record_step_up_evidence(expired)
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert refused.value.reason == "EVIDENCE_EXPIRED"
        assert refused.value.metadata["check"] == "expired"

        with pytest.raises(StepUpError) as untrusted:
            client.record_step_up(RecordStepUpRequest(subject_id="alice", level="aal2", success=True))
        assert untrusted.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert untrusted.value.reason == "REPORTER_NOT_TRUSTED"
    assert [(e.method, e.error.reason) for e in recorder.errors] == [
        ("Decide", "INVALID_FIELD"),
        ("RecordStepUp", "EVIDENCE_EXPIRED"),
        ("RecordStepUp", "REPORTER_NOT_TRUSTED"),
    ]
    assert recorder.decisions == []


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A TCP port that accepts connections and never answers: a sidecar
    that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: List[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_hanging_sidecar_fails_the_call_at_its_deadline(silent_listener: str) -> None:
    recorder = Recorder()
    with StepUpClient(silent_listener, timeout=0.3, hooks=recorder.hooks) as client:
        start = time.monotonic()
        with pytest.raises(SidecarUnavailable) as slow:
            client.decide(refund_request("alice", "s-1"))
        elapsed = time.monotonic() - start
    assert slow.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.25 <= elapsed < 1.5
    # Sent, and perhaps decided: never sent again.
    assert [(e.method, e.attempts) for e in recorder.errors] == [("Decide", 1)]
    with StepUpClient(
        silent_listener,
        timeout=0.3,
        hooks=recorder.hooks,
        fallback=static_fallback(OUTCOME_CHALLENGE, www_authenticate='Bearer error="insufficient_user_authentication", acr_values="urn:stepup:aal2"'),
    ) as client:
        answer = client.decide(refund_request("alice", "s-1"))
    assert answer.outcome == OUTCOME_CHALLENGE
    assert answer.www_authenticate.endswith('acr_values="urn:stepup:aal2"')
    assert recorder.decisions[-1].fallback
    assert recorder.decisions[-1].error is not None


async def test_async_client_decides_over_a_unix_socket(
    stepup_bin: str, idp: Idp, tmp_path: Path, servers: List[Any]
) -> None:
    path = tmp_path / "s.sock"
    sidecar = start_sidecar(stepup_bin, tmp_path, idp, listen=f"unix:{path}")
    servers.append(sidecar)
    recorder = Recorder()
    async with AsyncStepUpClient(f"unix:{path}", hooks=recorder.hooks) as client:
        sub, sid = fresh_ids()
        assert (await client.decide(refund_request(sub, sid))).outcome == OUTCOME_CHALLENGE
        denied = refund_request(sub, sid)
        denied.network.country = "KP"
        assert (await client.decide(denied)).outcome == OUTCOME_DENY
        id_token = idp.token(sub, sid, "urn:stepup:aal2", ["otp"], int(time.time()))
        assert (await client.record_step_up_evidence(id_token)).HasField("elevation_expire_time")
        assert (await client.decide(refund_request(sub, sid))).outcome == OUTCOME_ALLOW
        with pytest.raises(StepUpError) as invalid:
            await client.decide(DecideRequest(action="", subject=Subject(id="alice")))
        assert invalid.value.reason == "INVALID_FIELD"
        assert invalid.value.metadata["field"] == "action"
    assert [e.outcome_name for e in recorder.decisions] == ["CHALLENGE", "DENY", "ALLOW"]
    sidecar.stop()
    async with AsyncStepUpClient(f"unix:{path}", timeout=0.5) as client:
        with pytest.raises(SidecarUnavailable):
            await client.decide(refund_request("alice", "s-1"))


def test_tls_and_mutual_tls(stepup_bin: str, idp: Idp, tmp_path: Path, servers: List[Any]) -> None:
    pki = make_pki(tmp_path)
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    sidecar = start_sidecar(
        stepup_bin,
        tls_dir,
        idp,
        extra=["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)],
        ready=False,
    )
    servers.append(sidecar)
    sidecar.wait_for_port()
    with StepUpClient(sidecar.target, tls=Tls.from_files(root_ca=pki.ca), timeout=5.0) as client:
        assert client.decide(refund_request(*fresh_ids())).outcome == OUTCOME_CHALLENGE
    with StepUpClient(sidecar.target, timeout=2.0) as plaintext:
        with pytest.raises(SidecarUnavailable):
            plaintext.decide(refund_request(*fresh_ids()))

    mtls_dir = tmp_path / "mtls"
    mtls_dir.mkdir()
    mtls = start_sidecar(
        stepup_bin,
        mtls_dir,
        idp,
        extra=[
            "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
            "--tls-client-ca", str(pki.ca),
        ],
        ready=False,
    )
    servers.append(mtls)
    mtls.wait_for_port()
    # The server certificate names localhost and 127.0.0.1; the name to
    # check can be set when dialling another address.
    client_tls = Tls.from_files(
        root_ca=pki.ca, cert=pki.client_cert, key=pki.client_key, server_name="localhost"
    )
    with StepUpClient(mtls.target, tls=client_tls, timeout=5.0) as client:
        assert client.decide(refund_request(*fresh_ids(), amount=5.0)).outcome == OUTCOME_ALLOW
    with StepUpClient(mtls.target, tls=Tls.from_files(root_ca=pki.ca), timeout=2.0) as no_cert:
        with pytest.raises(StepUpError) as refused:
            no_cert.decide(refund_request(*fresh_ids()))
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ValueError):
        Tls(cert=b"x").credentials()


def test_a_hook_that_raises_changes_nothing(sidecar: Sidecar) -> None:
    def broken(event: DecisionEvent) -> None:
        raise RuntimeError("metrics backend down")

    with StepUpClient(sidecar.target, hooks=Hooks(on_decision=broken)) as client:
        assert client.decide(refund_request(*fresh_ids())).outcome == OUTCOME_CHALLENGE
