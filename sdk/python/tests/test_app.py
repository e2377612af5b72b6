"""The example FastAPI app against a real sidecar, over real sockets."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional

import httpx
import pytest

from conftest import AppServer, Idp, Sidecar, fresh_ids, start_sidecar
from examples.app import create_app, pyjwt_verifier
from stepup_client import static_fallback
from stepup_client.v1 import OUTCOME_DENY

# What the example policies answer for a refund over 1,000 from a
# password-only session (policies/payments.yaml, refund-large).
REFUND_CHALLENGE = (
    'Bearer error="insufficient_user_authentication", '
    'error_description="Refunds above 1,000 need re-verification", '
    'acr_values="urn:stepup:aal2 urn:okta:loa:2fa:any http://schemas.openid.net/pape/policies/2007/06/multi-factor", '
    'max_age="300"'
)
REFUND_ACR_VALUES = (
    "urn:stepup:aal2 urn:okta:loa:2fa:any http://schemas.openid.net/pape/policies/2007/06/multi-factor"
)
UNAVAILABLE_BODY = {
    "error": "temporarily_unavailable",
    "error_description": "the authorization service is unavailable; the request was refused (fail closed)",
}
SERVER_ERROR_BODY = {
    "error": "server_error",
    "error_description": "the authorization check failed; the request was refused",
}


def assert_stepup_answer(response: httpx.Response, status: int) -> Dict[str, Any]:
    """The middleware's own answer: `status`, JSON, not to be cached. Its
    body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body: Dict[str, Any] = response.json()
    return body


def app_for(target: str, idp: Idp, **kwargs: Any) -> AppServer:
    verify = pyjwt_verifier(idp.public_pem, issuer="https://idp.test", audience="stepup-app")
    return AppServer(create_app(target=target, verify=verify, **kwargs))


def bearer(token: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def password_session(idp: Idp, sub: str, sid: str) -> str:
    """Signed in with a password an hour ago (aal1)."""
    return idp.token(sub, sid, "urn:stepup:aal1", ["pwd"], int(time.time()) - 3600)


def refund(
    http: httpx.Client, token: str, amount: float = 1500.0, headers: Optional[Dict[str, str]] = None
) -> httpx.Response:
    return http.post(
        "/refunds", json={"order_id": "o-1", "amount": amount}, headers={**bearer(token), **(headers or {})}
    )


@pytest.fixture
def app(sidecar: Sidecar, idp: Idp, servers: list[Any]) -> AppServer:
    server = app_for(sidecar.target, idp)
    servers.append(server)
    return server


def test_refund_from_password_session_is_challenged_then_allowed_after_record_step_up(
    app: AppServer, idp: Idp
) -> None:
    sub, sid = fresh_ids()
    token = password_session(idp, sub, sid)
    with httpx.Client(base_url=app.url) as http:
        challenged = refund(http, token)
        body = assert_stepup_answer(challenged, 401)
        assert challenged.headers["www-authenticate"] == REFUND_CHALLENGE
        assert "retry-after" not in challenged.headers
        assert len(body["decision_id"]) == 36
        assert body == {
            "error": "insufficient_user_authentication",
            "error_description": "Refunds above 1,000 need re-verification",
            "acr_values": REFUND_ACR_VALUES,
            "max_age": 300,
            "decision_id": body["decision_id"],
        }

        # The step-up completes at the identity provider: its ID token is
        # the evidence, and the same session may now refund.
        now = int(time.time())
        id_token = idp.token(sub, sid, "urn:stepup:aal2", ["pwd", "otp"], now)
        reported = http.post("/stepup", json={"id_token": id_token})
        assert reported.status_code == 200, reported.text
        expire = reported.json()["elevation_expire_time"]
        assert expire.endswith("Z")
        assert datetime.fromisoformat(expire[:-1] + "+00:00").timestamp() > now

        allowed = refund(http, token)
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["refunded"] == 1500.0
        assert len(allowed.json()["decision_id"]) == 36
        metrics = http.get("/metrics", headers=bearer(token)).json()
        assert metrics["decision.CHALLENGE"] >= 1
        assert metrics["decision.ALLOW"] >= 1


def test_a_stronger_session_refunds_at_once_and_small_refunds_need_nothing(
    app: AppServer, idp: Idp
) -> None:
    sub, sid = fresh_ids()
    strong = idp.token(sub, sid, "urn:stepup:aal2", ["pwd", "otp"], int(time.time()) - 10)
    weak = password_session(idp, *fresh_ids())
    with httpx.Client(base_url=app.url) as http:
        assert refund(http, strong).status_code == 200
        assert refund(http, weak, amount=20.0).status_code == 200
        assert http.get("/orders", headers=bearer(weak)).status_code == 200
        # No token: the app's own 401, no decision asked for.
        missing = http.get("/orders")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"


def test_step_up_evidence_that_fails_a_check_is_refused_with_its_reason(app: AppServer, idp: Idp) -> None:
    sub, sid = fresh_ids()
    old = int(time.time()) - 7200
    expired = idp.token(sub, sid, "urn:stepup:aal2", ["otp"], old, exp=old + 60)
    with httpx.Client(base_url=app.url) as http:
        refused = http.post("/stepup", json={"id_token": expired})
        assert refused.status_code == 400
        assert refused.json()["detail"] == {"error": "step_up_not_recorded", "reason": "EVIDENCE_EXPIRED"}
        # Nothing was recorded: the session is still challenged.
        assert refund(http, password_session(idp, sub, sid)).status_code == 401


def test_a_sanctioned_country_is_denied(app: AppServer, idp: Idp) -> None:
    token = idp.token(*fresh_ids(), "urn:stepup:aal3", ["hwk"], int(time.time()))
    with httpx.Client(base_url=app.url) as http:
        denied = refund(http, token, headers={"X-Client-Country": "KP"})
        body = assert_stepup_answer(denied, 403)
        assert "www-authenticate" not in denied.headers
        assert body == {
            "error": "access_denied",
            "error_description": "This service is not available in your region",
            "decision_id": body["decision_id"],
        }
        assert len(body["decision_id"]) == 36
        assert http.get("/orders", headers={**bearer(token), "X-Client-Country": "KP"}).status_code == 403


def test_a_request_the_sidecar_refuses_is_a_500_from_the_middleware_and_the_dependency(
    app: AppServer, idp: Idp
) -> None:
    """The app put a country that is no ISO 3166-1 code in the request:
    the sidecar refuses it (INVALID_ARGUMENT), the app answers 500 and says
    no more; no fallback could answer for it."""
    token = password_session(idp, *fresh_ids())
    bad = {**bearer(token), "X-Client-Country": "Korea"}
    with httpx.Client(base_url=app.url) as http:
        for response in (
            refund(http, token, headers={"X-Client-Country": "Korea"}),
            http.post("/account/email", json={"email": "a@example.com"}, headers=bad),
        ):
            assert assert_stepup_answer(response, 500) == SERVER_ERROR_BODY
            assert "retry-after" not in response.headers
            assert "www-authenticate" not in response.headers
        assert http.get("/metrics").json()["error.Decide.INVALID_ARGUMENT"] == 2


def test_the_route_dependency_answers_like_the_middleware(app: AppServer, idp: Idp) -> None:
    sub, sid = fresh_ids()
    weak = password_session(idp, sub, sid)
    fresh = idp.token(sub, sid, "urn:stepup:aal2", ["pwd", "otp"], int(time.time()) - 5)
    with httpx.Client(base_url=app.url) as http:
        challenged = http.post("/account/email", json={"email": "a@example.com"}, headers=bearer(weak))
        body = assert_stepup_answer(challenged, 401)
        www = challenged.headers["www-authenticate"]
        assert www.startswith('Bearer error="insufficient_user_authentication"')
        assert 'acr_values="urn:stepup:aal2' in www and 'max_age="600"' in www
        assert body["error"] == "insufficient_user_authentication"
        assert body["acr_values"].startswith("urn:stepup:aal2")
        assert f'acr_values="{body["acr_values"]}"' in www
        assert body["max_age"] == 600
        assert set(body) == {"error", "error_description", "acr_values", "max_age", "decision_id"}
        allowed = http.post("/account/email", json={"email": "a@example.com"}, headers=bearer(fresh))
        assert allowed.status_code == 200, allowed.text


def test_with_the_sidecar_stopped_requests_fail_closed_or_get_the_configured_answer(
    stepup_bin: str, idp: Idp, tmp_path: Path, servers: list[Any]
) -> None:
    sidecar = start_sidecar(stepup_bin, tmp_path, idp)
    servers.append(sidecar)
    closed = app_for(sidecar.target, idp, timeout=1.0)
    servers.append(closed)
    configured = app_for(
        sidecar.target,
        idp,
        timeout=1.0,
        fallback=static_fallback(OUTCOME_DENY, message="Refunds are paused, try again later"),
    )
    servers.append(configured)
    token = password_session(idp, *fresh_ids())
    with httpx.Client(base_url=closed.url) as http:
        assert refund(http, token, amount=10.0).status_code == 200
    sidecar.stop()

    with httpx.Client(base_url=closed.url) as http:
        start = time.monotonic()
        unavailable = refund(http, token, amount=10.0)
        assert time.monotonic() - start < 3.0
        assert assert_stepup_answer(unavailable, 503) == UNAVAILABLE_BODY
        assert unavailable.headers["retry-after"] == "1"
        assert http.get("/orders", headers=bearer(token)).status_code == 503
        # The route dependency answers alike.
        email = http.post("/account/email", json={"email": "a@example.com"}, headers=bearer(token))
        assert assert_stepup_answer(email, 503) == UNAVAILABLE_BODY
        assert email.headers["retry-after"] == "1"
        metrics = http.get("/metrics").json()
        assert metrics["error.Decide.UNAVAILABLE"] == 3
    with httpx.Client(base_url=configured.url) as http:
        answered = refund(http, token, amount=10.0)
        assert assert_stepup_answer(answered, 403) == {
            "error": "access_denied",
            "error_description": "Refunds are paused, try again later",
            "decision_id": "",
        }
        assert http.get("/metrics").json()["decision.DENY.fallback"] == 1


def test_the_app_over_a_unix_socket(
    stepup_bin: str, idp: Idp, tmp_path: Path, servers: list[Any]
) -> None:
    socket_path = tmp_path / "stepup.sock"
    sidecar = start_sidecar(stepup_bin, tmp_path, idp, listen=f"unix:{socket_path}")
    servers.append(sidecar)
    app = app_for(f"unix:{socket_path}", idp)
    servers.append(app)
    token = password_session(idp, *fresh_ids())
    with httpx.Client(base_url=app.url) as http:
        challenged = refund(http, token)
        assert challenged.status_code == 401
        assert challenged.headers["www-authenticate"] == REFUND_CHALLENGE
        assert http.get("/orders", headers=bearer(token)).status_code == 200


def test_with_enforce_off_the_handler_decides(sidecar: Sidecar, idp: Idp, servers: list[Any]) -> None:
    """`enforce=False`: every outcome reaches the handler, which reads the
    decision from `request.state` and may answer with `decision_response`."""
    from contextlib import asynccontextmanager
    from typing import AsyncIterator

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from stepup_client import AsyncStepUpClient
    from stepup_client.asgi import StepUpMiddleware, decision_response, get_decision
    from stepup_client.claims import decide_request_from_claims
    from stepup_client.v1 import Resource

    verify = pyjwt_verifier(idp.public_pem, issuer="https://idp.test", audience="stepup-app")

    def build(request: Request) -> Any:
        claims = verify(request.headers["authorization"].removeprefix("Bearer "))
        resource = Resource(type="refund")
        resource.attributes["amount"].number_value = float(request.query_params["amount"])
        return decide_request_from_claims("payments.refund", claims, resource=resource)

    async def handler(request: Request) -> Response:
        decision = get_decision(request)
        assert decision is not None
        if request.query_params.get("strict") == "1":
            stop = decision_response(decision)
            if stop is not None:
                return stop
        return JSONResponse({"outcome": decision.outcome, "www": decision.www_authenticate})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncStepUpClient(sidecar.target) as client:
            app.state.stepup = client
            yield

    app = Starlette(routes=[Route("/refund", handler)], lifespan=lifespan)
    app.add_middleware(
        StepUpMiddleware, client=lambda conn: conn.app.state.stepup, build=build, enforce=False
    )
    server = AppServer(app)
    servers.append(server)
    token = password_session(idp, *fresh_ids())
    with httpx.Client(base_url=server.url, headers=bearer(token)) as http:
        lenient = http.get("/refund", params={"amount": 1500})
        assert lenient.status_code == 200
        assert lenient.json() == {"outcome": 2, "www": REFUND_CHALLENGE}
        strict = http.get("/refund", params={"amount": 1500, "strict": 1})
        assert strict.status_code == 401
        assert strict.headers["www-authenticate"] == REFUND_CHALLENGE
        assert http.get("/refund", params={"amount": 10, "strict": 1}).json()["outcome"] == 1
