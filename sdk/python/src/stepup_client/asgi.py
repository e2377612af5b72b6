"""ASGI middleware (Starlette, FastAPI, any ASGI app) that enforces the
sidecar's decision, and the HTTP answers it gives.

For each HTTP request a user function (`build`) maps the request to a
DecideRequest (None: not protected, passed through). The sidecar's answer:
- ALLOW: the app runs, with the decision in `request.state.stepup_decision`
  (`scope["state"]["stepup_decision"]`);
- CHALLENGE: 401 with `WWW-Authenticate` exactly the response's
  `www_authenticate` (RFC 9470) and a JSON body (`challenge_body`);
- DENY: 403 with a JSON body (`deny_body`);
- no answer (unreachable, too slow, overloaded): 503
  `temporarily_unavailable` with `Retry-After: 1`, fail closed, unless the
  client has a fallback, whose decision is enforced as above; any other
  error (a request the sidecar refused): 500 `server_error`.
Every answer of its own is JSON with `Cache-Control: no-store`.
With `enforce=False` the app runs for every outcome and the handler decides
(see `decision_response`). Needs the `asgi` extra (starlette)."""

from __future__ import annotations

import inspect
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Union

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stepup_client._errors import StepUpError
from stepup_client.aio import AsyncStepUpClient
from stepup_client.v1 import decision_pb2 as pb

log = logging.getLogger("stepup_client")

#: The `request.state` attribute (and `scope["state"]` key) holding the
#: decision.
STATE_KEY = "stepup_decision"

#: Maps a request to the DecideRequest to ask about, or None when the
#: request needs no decision. May be async (e.g. to read the body: the
#: middleware replays it to the app).
Build = Callable[[Request], Union[Optional[pb.DecideRequest], Awaitable[Optional[pb.DecideRequest]]]]
#: The client, or a function of the request that returns it (e.g.
#: `lambda r: r.app.state.stepup` for a client made in the app's lifespan).
ClientRef = Union[AsyncStepUpClient, Callable[[HTTPConnection], AsyncStepUpClient]]


#: The headers of every answer the middleware gives itself.
_HEADERS = {"Cache-Control": "no-store"}
#: The 401's `WWW-Authenticate` when the decision carries no usable one:
#: still a challenge (RFC 9470's error alone), never a pass.
DEFAULT_CHALLENGE = 'Bearer error="insufficient_user_authentication"'
#: The 503's `error_description`: the sidecar gave no answer.
UNAVAILABLE_DESCRIPTION = "the authorization service is unavailable; the request was refused (fail closed)"
#: The 500's `error_description`: any other failure of the call.
ERROR_DESCRIPTION = "the authorization check failed; the request was refused"


def _first_message(decision: pb.DecideResponse, effect: pb.Effect) -> Optional[str]:
    for reason in decision.reasons:
        if reason.effect == effect and reason.message:
            return reason.message
    return None


def _challenge_header(www_authenticate: str) -> str:
    """The `WWW-Authenticate` value of a 401: the decision's, byte for byte
    (as UTF-8), or DEFAULT_CHALLENGE when it is empty or holds a control
    character (a line break would split the header). Starlette writes
    header values as Latin-1: the UTF-8 bytes are handed over as Latin-1
    characters so they reach the wire unchanged."""
    if not www_authenticate or any(c != "\t" and (c < " " or c == "\x7f") for c in www_authenticate):
        return DEFAULT_CHALLENGE
    return www_authenticate.encode("utf-8").decode("latin-1")


def challenge_body(decision: pb.DecideResponse) -> Dict[str, Any]:
    """The JSON body of a CHALLENGE's 401, for a client that prefers JSON
    to parsing `WWW-Authenticate`: `error`
    (`insufficient_user_authentication`), `error_description` (the message
    of the first CHALLENGE reason that has one, else null), `acr_values`
    (the acceptable levels, one string separated by spaces, as in the
    header), `max_age` (seconds, or null when no freshness is asked for)
    and `decision_id`."""
    return {
        "error": "insufficient_user_authentication",
        "error_description": _first_message(decision, pb.EFFECT_CHALLENGE),
        "acr_values": " ".join(decision.acr_values),
        "max_age": decision.max_age.seconds if decision.HasField("max_age") else None,
        "decision_id": decision.decision_id,
    }


def deny_body(decision: pb.DecideResponse) -> Dict[str, Any]:
    """The JSON body of a DENY's 403: `error` (`access_denied`),
    `error_description` (the message of the first DENY reason that has
    one, else null), `decision_id`."""
    return {
        "error": "access_denied",
        "error_description": _first_message(decision, pb.EFFECT_DENY),
        "decision_id": decision.decision_id,
    }


def decision_response(decision: pb.DecideResponse) -> Optional[Response]:
    """The HTTP answer for a decision that stops the request, None for
    ALLOW. CHALLENGE: 401 with `WWW-Authenticate` exactly the decision's
    `www_authenticate`, byte for byte (DEFAULT_CHALLENGE when it is empty
    or not a valid header value), and `challenge_body`.
    DENY: 403 with `deny_body`. Any other outcome (UNSPECIFIED, never sent
    by the sidecar) is a 403 of the same shape with no description: fail
    closed. Each is JSON with `Cache-Control: no-store`."""
    if decision.outcome == pb.OUTCOME_ALLOW:
        return None
    if decision.outcome == pb.OUTCOME_CHALLENGE:
        headers = {**_HEADERS, "WWW-Authenticate": _challenge_header(decision.www_authenticate)}
        return JSONResponse(challenge_body(decision), status_code=401, headers=headers)
    body = deny_body(decision)
    if decision.outcome != pb.OUTCOME_DENY:
        body["error_description"] = None
    return JSONResponse(body, status_code=403, headers=_HEADERS)


def error_response(error: StepUpError) -> Response:
    """The HTTP answer when no decision could be had, both fail closed:
    503 `temporarily_unavailable` with `Retry-After: 1` when the sidecar
    gave no answer (unreachable, too slow, overloaded: `error.unavailable`),
    500 `server_error` for any other error (a request the sidecar refused:
    a bug, logged). The body says no more than that."""
    if error.unavailable:
        return JSONResponse(
            {"error": "temporarily_unavailable", "error_description": UNAVAILABLE_DESCRIPTION},
            status_code=503,
            headers={**_HEADERS, "Retry-After": "1"},
        )
    return JSONResponse(
        {"error": "server_error", "error_description": ERROR_DESCRIPTION}, status_code=500, headers=_HEADERS
    )


def get_decision(conn: HTTPConnection) -> Optional[pb.DecideResponse]:
    """The decision the middleware stored for this request, if any."""
    value = getattr(conn.state, STATE_KEY, None)
    return value if isinstance(value, pb.DecideResponse) else None


def resolve_client(client: ClientRef, conn: HTTPConnection) -> AsyncStepUpClient:
    """The client itself, or what the client function returns for `conn`."""
    return client if isinstance(client, AsyncStepUpClient) else client(conn)


async def build_request(build: Build, request: Request) -> Optional[pb.DecideRequest]:
    """Runs `build`, awaiting it when it is async."""
    result = build(request)
    if inspect.isawaitable(result):
        return await result
    return result


class StepUpMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: streaming and background
    tasks are untouched). Starlette/FastAPI:
    `app.add_middleware(StepUpMiddleware, client=..., build=...)`."""

    def __init__(self, app: ASGIApp, *, client: ClientRef, build: Build, enforce: bool = True) -> None:
        self.app = app
        self.client = client
        self.build = build
        self.enforce = enforce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # What `build` reads of the body is recorded and replayed to the app.
        recorded: List[Message] = []

        async def recording_receive() -> Message:
            message = await receive()
            recorded.append(message)
            return message

        async def replay_receive() -> Message:
            if recorded:
                return recorded.pop(0)
            return await receive()

        request = Request(scope, recording_receive)
        decide = await build_request(self.build, request)
        if decide is None:
            await self.app(scope, replay_receive, send)
            return
        try:
            decision = await resolve_client(self.client, request).decide(decide)
        except StepUpError as error:
            log.warning("stepup: no decision for `%s`, request refused (fail closed): %s", decide.action, error)
            await error_response(error)(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_KEY] = decision
        if self.enforce:
            response = decision_response(decision)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, replay_receive, send)


__all__ = [
    "DEFAULT_CHALLENGE",
    "STATE_KEY",
    "Build",
    "ClientRef",
    "StepUpMiddleware",
    "challenge_body",
    "decision_response",
    "deny_body",
    "error_response",
    "get_decision",
]
