"""Fixtures: a real `stepup serve` (the binary STEPUP_BIN names) on the
repository's example policies, a test identity provider (an ES256 key made
here, its JWKS in a file the sidecar trusts via `[[trust.issuers]]`), and
the example app served by uvicorn on a real socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

# The tests fork (subprocess) while gRPC threads run; grpc-core's fork
# handlers can abort the child before it execs (seen on Python 3.9, whose
# subprocess forks where newer ones vfork). The tests need no gRPC in a
# forked child: turn the handlers off before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402
import jwt  # noqa: E402
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.struct_pb2 import Value
from starlette.types import ASGIApp

from stepup_client import DecisionEvent, ErrorEvent, Hooks, session_from_claims
from stepup_client.v1 import DecideRequest, Resource, Subject

REPO = Path(__file__).resolve().parents[3]
POLICIES = REPO / "policies"
ISSUER = "https://idp.test"
AUDIENCE = "stepup-app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def stepup_bin() -> str:
    path = os.environ.get("STEPUP_BIN", "")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"STEPUP_BIN must name the stepup binary to test (got `{path}`)")
    return path


class Idp:
    """The test identity provider: signs session tokens and step-up ID
    tokens with one ES256 key; `jwks_file` publishes it."""

    def __init__(self, directory: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = "idp-key-1"
        jwk: Dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "alg": "ES256", "use": "sig"})
        self.jwks_file = directory / "jwks.json"
        self.jwks_file.write_text(json.dumps({"keys": [jwk]}))
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(
        self,
        sub: str,
        sid: str,
        acr: str,
        amr: Sequence[str],
        auth_time: int,
        *,
        iat: Optional[int] = None,
        exp: Optional[int] = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "sid": sid,
            "acr": acr,
            "amr": list(amr),
            "auth_time": auth_time,
            "iat": auth_time if iat is None else iat,
            "exp": now + 3600 if exp is None else exp,
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})

    def trust_toml(self) -> str:
        return (
            "[[trust.issuers]]\n"
            f'issuer = "{ISSUER}"\n'
            f'audiences = ["{AUDIENCE}"]\n'
            f'jwks_file = "{self.jwks_file}"\n'
        )


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Idp:
    return Idp(tmp_path_factory.mktemp("idp"))


class Sidecar:
    """A running `stepup serve`; `target` is what clients dial; `admin` the
    admin listener's `host:port`, when it has one."""

    def __init__(
        self,
        binary: str,
        listen: str,
        config: Path,
        log: Path,
        extra: Sequence[str] = (),
        ready: bool = True,
        admin: Optional[str] = None,
    ) -> None:
        self.listen = listen
        self.target = listen
        self.admin = admin
        self.log = log
        self._log_file = open(log, "wb")
        self.process = subprocess.Popen(
            [
                binary,
                "serve",
                "--policies",
                str(POLICIES),
                "--listen",
                listen,
                "--admin",
                admin or "off",
                "--no-watch",
                "--config",
                str(config),
                *extra,
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        if ready:
            self._wait_ready()

    def _wait_ready(self) -> None:
        options = [("grpc.default_authority", "localhost")] if self.target.startswith("unix:") else []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stepup serve exited {self.process.returncode}: {self.log.read_text()}")
            with grpc.insecure_channel(self.target, options=options) as channel:
                try:
                    grpc.channel_ready_future(channel).result(timeout=0.5)
                    return
                except grpc.FutureTimeoutError:
                    continue
        raise RuntimeError(f"stepup serve did not come up on {self.target}: {self.log.read_text()}")

    def wait_for_port(self) -> None:
        """Waits until the TCP port accepts connections (for TLS, where a
        plaintext readiness probe cannot work)."""
        host, port = self.target.rsplit(":", 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stepup serve exited {self.process.returncode}: {self.log.read_text()}")
            try:
                socket.create_connection((host, int(port)), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"stepup serve did not listen on {self.target}: {self.log.read_text()}")

    def metric(self, family: str, **labels: str) -> float:
        """The sum of the `family` series (Prometheus text from the admin
        listener's /metrics) whose labels include `labels`; 0 when none."""
        if self.admin is None:
            raise RuntimeError("this sidecar has no admin listener")
        with urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        total = 0.0
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            name, _, label_text = series.partition("{")
            if name == family and all(w in label_text.rstrip("}").split(",") for w in wanted):
                total += float(value)
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


def start_sidecar(
    binary: str,
    directory: Path,
    idp: Idp,
    listen: Optional[str] = None,
    extra: Sequence[str] = (),
    ready: bool = True,
    admin: bool = False,
) -> Sidecar:
    """`stepup serve` on the example policies, trusting `idp`. `ready`:
    wait until it accepts plaintext gRPC connections (not for TLS).
    `admin`: with an admin listener (for /metrics) on a port of its own."""
    config = directory / "stepup.toml"
    config.write_text(idp.trust_toml())
    listen = listen or f"127.0.0.1:{free_port()}"
    admin_at = f"127.0.0.1:{free_port()}" if admin else None
    return Sidecar(binary, listen, config, directory / "stepup.log", extra, ready, admin_at)


@pytest.fixture(scope="session")
def sidecar(stepup_bin: str, idp: Idp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """One sidecar for the tests that do not stop it."""
    running = start_sidecar(stepup_bin, tmp_path_factory.mktemp("sidecar"), idp)
    yield running
    running.stop()


class AppServer:
    """The example app under uvicorn on a real socket, in a thread."""

    def __init__(self, app: ASGIApp) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the example app did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def servers() -> Iterator[List[Any]]:
    """Stops what a test started (apps, sidecars), last first."""
    started: List[Any] = []
    yield started
    for item in reversed(started):
        item.stop()


def fresh_ids() -> "tuple[str, str]":
    """A subject and session of their own for a test (history is per
    subject and session)."""
    suffix = uuid.uuid4().hex[:12]
    return f"user-{suffix}", f"s-{suffix}"


def refund_request(sub: str, sid: str, amount: float = 1500.0) -> DecideRequest:
    """A refund of `amount` from a password session an hour old: the
    example policies challenge it above 1,000."""
    claims = {"sub": sub, "sid": sid, "acr": "urn:stepup:aal1", "amr": ["pwd"], "auth_time": int(time.time()) - 3600}
    resource = Resource(type="refund", id="o-1")
    resource.attributes["amount"].CopyFrom(Value(number_value=amount))
    return DecideRequest(
        action="payments.refund",
        subject=Subject(id=sub),
        session=session_from_claims(claims),
        resource=resource,
    )


class Recorder:
    """Metrics hooks that keep every event."""

    def __init__(self) -> None:
        self.decisions: List[DecisionEvent] = []
        self.errors: List[ErrorEvent] = []
        self.hooks = Hooks(on_decision=self.decisions.append, on_error=self.errors.append)
