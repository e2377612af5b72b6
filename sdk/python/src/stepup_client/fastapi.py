"""A FastAPI route dependency that enforces the sidecar's decision for one
route: `Depends(require_step_up(client, build))`. It answers like the ASGI
middleware (401 with `WWW-Authenticate`, 403, 503 with `Retry-After`, 500)
by raising StepUpHTTPException; `install_exception_handler(app)` makes
those bodies the middleware's flat JSON instead of FastAPI's
`{"detail": ...}`. Needs the `fastapi` extra."""

from __future__ import annotations

import json
from typing import Awaitable, Callable, Dict, Optional

from fastapi import FastAPI, HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stepup_client._errors import StepUpError
from stepup_client.asgi import STATE_KEY, Build, ClientRef, build_request, decision_response, error_response, resolve_client
from stepup_client.v1 import decision_pb2 as pb


#: The headers of the middleware's answers that the exception carries
#: (the body's own, Content-Type and Content-Length, are made again).
_CARRIED_HEADERS = ("WWW-Authenticate", "Cache-Control", "Retry-After")


class StepUpHTTPException(HTTPException):
    """A stopped request: `status_code` 401/403/503/500, `detail` the JSON
    body, `headers` the middleware's (`Cache-Control: no-store`;
    `WWW-Authenticate` for a challenge, `Retry-After` for a 503)."""

    def __init__(self, response: Response) -> None:
        headers: Dict[str, str] = {}
        for name in _CARRIED_HEADERS:
            value = response.headers.get(name)
            if value is not None:
                headers[name] = value
        super().__init__(
            status_code=response.status_code,
            detail=json.loads(bytes(response.body)),
            headers=headers or None,
        )


def require_step_up(
    client: ClientRef, build: Build, *, enforce: bool = True
) -> Callable[[Request], Awaitable[Optional[pb.DecideResponse]]]:
    """A dependency that asks the sidecar about the request `build` maps
    (None: no decision needed, the dependency returns None) and returns the
    decision. With `enforce` (default) a CHALLENGE, DENY or failure raises
    StepUpHTTPException; without it every decision is returned for the
    handler to act on (a failure still raises: fail closed)."""

    async def dependency(request: Request) -> Optional[pb.DecideResponse]:
        decide = await build_request(build, request)
        if decide is None:
            return None
        try:
            decision = await resolve_client(client, request).decide(decide)
        except StepUpError as error:
            raise StepUpHTTPException(error_response(error)) from error
        setattr(request.state, STATE_KEY, decision)
        if enforce:
            response = decision_response(decision)
            if response is not None:
                raise StepUpHTTPException(response)
        return decision

    return dependency


def install_exception_handler(app: FastAPI) -> None:
    """Answers StepUpHTTPException with its body as is (the middleware's
    JSON), not wrapped in `{"detail": ...}`."""

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StepUpHTTPException)
        return JSONResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(StepUpHTTPException, handler)


__all__ = ["StepUpHTTPException", "install_exception_handler", "require_step_up"]
