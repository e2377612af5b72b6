"""A FastAPI service whose refunds need a step-up: the example app of
stepup_client, and the app its tests drive.

- The session comes from the bearer token (a JWT verified with PyJWT; its
  `acr`, `amr`, `auth_time`, `sid` claims are the Session).
- StepUpMiddleware decides `GET /orders` (`orders.list`) and
  `POST /refunds` (`payments.refund`, the amount from the JSON body);
  `POST /account/email` uses the route dependency instead
  (`account.email.change`).
- `POST /stepup` reports a completed step-up with its ID token as evidence.
- The metrics hooks count decisions and errors (`GET /metrics`).

Run it next to `stepup serve --policies policies`:

    STEPUP_TARGET=127.0.0.1:7171 APP_JWT_PUBLIC_KEY=idp.pem \\
        uvicorn examples.app:main --factory
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, Mapping, Optional

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request
from google.protobuf.struct_pb2 import Value
from pydantic import BaseModel

from stepup_client import AsyncStepUpClient, DecisionEvent, ErrorEvent, Fallback, Hooks, StepUpError
from stepup_client.asgi import StepUpMiddleware, get_decision
from stepup_client.claims import decide_request_from_claims
from stepup_client.fastapi import install_exception_handler, require_step_up
from stepup_client.v1 import DecideRequest, Network, Resource

#: Verifies a bearer token and returns its claims; raises on a bad token.
Verify = Callable[[str], Mapping[str, Any]]


class Refund(BaseModel):
    order_id: str
    amount: float


class EmailChange(BaseModel):
    email: str


class StepUpReport(BaseModel):
    id_token: str


def pyjwt_verifier(public_key_pem: bytes, *, issuer: str, audience: str) -> Verify:
    """Verifies ES256/RS256 JWTs with one public key (a real service would
    use its identity provider's JWKS, e.g. `jwt.PyJWKClient`)."""

    def verify(token: str) -> Mapping[str, Any]:
        claims: Dict[str, Any] = jwt.decode(
            token,
            public_key_pem,
            algorithms=["ES256", "RS256"],
            issuer=issuer,
            audience=audience,
            options={"require": ["exp", "sub"]},
        )
        return claims

    return verify


def create_app(
    *,
    target: str,
    verify: Verify,
    timeout: float = 0.5,
    fallback: Optional[Fallback] = None,
) -> FastAPI:
    """The app, asking the sidecar at `target` (`host:port` or
    `unix:/path`)."""
    metrics: Counter[str] = Counter()

    def on_decision(event: DecisionEvent) -> None:
        metrics[f"decision.{event.outcome_name}{'.fallback' if event.fallback else ''}"] += 1

    def on_error(event: ErrorEvent) -> None:
        metrics[f"error.{event.method}.{event.error.code.name}"] += 1

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A grpc.aio channel belongs to the loop it is made in: make it here.
        hooks = Hooks(on_decision=on_decision, on_error=on_error)
        async with AsyncStepUpClient(target, timeout=timeout, fallback=fallback, hooks=hooks) as client:
            app.state.stepup = client
            yield

    app = FastAPI(lifespan=lifespan)
    install_exception_handler(app)

    def claims_of(request: Request) -> Optional[Mapping[str, Any]]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return verify(token)
        except jwt.PyJWTError:
            return None

    def current_claims(request: Request) -> Mapping[str, Any]:
        claims = claims_of(request)
        if claims is None:
            raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        return claims

    def network_of(request: Request) -> Network:
        # The country a CDN or load balancer put in a header it controls.
        return Network(
            ip=request.client.host if request.client else "",
            country=request.headers.get("x-client-country", ""),
        )

    async def build(request: Request) -> Optional[DecideRequest]:
        claims = claims_of(request)
        if claims is None:
            return None  # the route answers 401 itself
        path, method = request.url.path, request.method
        if method == "GET" and path == "/orders":
            return decide_request_from_claims("orders.list", claims, network=network_of(request))
        if method == "POST" and path == "/refunds":
            body = Refund.model_validate_json(await request.body())
            resource = Resource(type="refund", id=body.order_id)
            resource.attributes["amount"].CopyFrom(Value(number_value=body.amount))
            return decide_request_from_claims(
                "payments.refund", claims, resource=resource, network=network_of(request)
            )
        return None

    def build_email(request: Request) -> Optional[DecideRequest]:
        claims = claims_of(request)
        if claims is None:
            return None
        return decide_request_from_claims("account.email.change", claims, network=network_of(request))

    app.add_middleware(StepUpMiddleware, client=lambda conn: conn.app.state.stepup, build=build)

    @app.get("/orders")
    async def orders(claims: Mapping[str, Any] = Depends(current_claims)) -> Dict[str, Any]:
        return {"subject": claims["sub"], "orders": []}

    @app.post("/refunds")
    async def refund(refund: Refund, request: Request, claims: Mapping[str, Any] = Depends(current_claims)) -> Dict[str, Any]:
        decision = get_decision(request)
        return {
            "order_id": refund.order_id,
            "refunded": refund.amount,
            "decision_id": decision.decision_id if decision is not None else "",
        }

    step_up_email = require_step_up(lambda conn: conn.app.state.stepup, build_email)

    @app.post("/account/email", dependencies=[Depends(current_claims), Depends(step_up_email)])
    async def change_email(change: EmailChange) -> Dict[str, Any]:
        return {"email": change.email}

    @app.post("/stepup")
    async def step_up(report: StepUpReport, request: Request) -> Dict[str, Any]:
        client: AsyncStepUpClient = request.app.state.stepup
        try:
            result = await client.record_step_up_evidence(report.id_token)
        except StepUpError as error:
            status = 503 if error.unavailable else 400
            raise HTTPException(status, {"error": "step_up_not_recorded", "reason": error.reason}) from error
        # RFC 3339, UTC; null when the report opened no elevation window.
        expire = result.elevation_expire_time.ToJsonString() if result.HasField("elevation_expire_time") else None
        return {"elevation_expire_time": expire}

    @app.get("/metrics")
    async def get_metrics() -> Dict[str, int]:
        return dict(metrics)

    return app


def main() -> FastAPI:
    """The app from the environment: STEPUP_TARGET (default
    `127.0.0.1:7171`), APP_JWT_PUBLIC_KEY (a PEM file), APP_JWT_ISSUER and
    APP_JWT_AUDIENCE."""
    verify = pyjwt_verifier(
        Path(os.environ["APP_JWT_PUBLIC_KEY"]).read_bytes(),
        issuer=os.environ.get("APP_JWT_ISSUER", "https://idp.test"),
        audience=os.environ.get("APP_JWT_AUDIENCE", "stepup-app"),
    )
    return create_app(target=os.environ.get("STEPUP_TARGET", "127.0.0.1:7171"), verify=verify)
