"""The HTTP answers of the middleware and the route dependency, for every
decision and error shape, including those a sidecar never sends (an
UNSPECIFIED outcome, a fallback's unusable `WWW-Authenticate`)."""

from __future__ import annotations

import json
from typing import Any, Dict

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from starlette.responses import Response

from stepup_client import SidecarUnavailable, StepUpError
from stepup_client.asgi import decision_response, error_response
from stepup_client.fastapi import StepUpHTTPException
from stepup_client.v1 import (
    EFFECT_CHALLENGE,
    EFFECT_DENY,
    OUTCOME_ALLOW,
    OUTCOME_CHALLENGE,
    OUTCOME_DENY,
    OUTCOME_UNSPECIFIED,
    DecideResponse,
    Reason,
)

WWW = 'Bearer error="insufficient_user_authentication", error_description="x", acr_values="aal2 aal3", max_age="60"'


def answer(response: Response) -> Dict[str, Any]:
    """The response's body, after checking the headers every answer has."""
    headers = dict(response.raw_headers)
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"cache-control"] == b"no-store"
    body: Dict[str, Any] = json.loads(bytes(response.body))
    return body


def stopped(decision: DecideResponse) -> Response:
    response = decision_response(decision)
    assert response is not None
    return response


def test_allow_passes() -> None:
    assert decision_response(DecideResponse(outcome=OUTCOME_ALLOW, decision_id="d")) is None


def test_a_challenge_is_a_401_with_the_sidecars_header_and_a_flat_body() -> None:
    decision = DecideResponse(
        outcome=OUTCOME_CHALLENGE,
        decision_id="d-1",
        www_authenticate=WWW,
        acr_values=["aal2", "aal3"],
        max_age=Duration(seconds=60),
        reasons=[
            Reason(rule_id="deny-silent", effect=EFFECT_DENY, message="not this one"),
            Reason(rule_id="quiet", effect=EFFECT_CHALLENGE, message=""),
            Reason(rule_id="loud", effect=EFFECT_CHALLENGE, message="Verify it is you"),
            Reason(rule_id="later", effect=EFFECT_CHALLENGE, message="not this one either"),
        ],
    )
    response = stopped(decision)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == WWW
    assert answer(response) == {
        "error": "insufficient_user_authentication",
        "error_description": "Verify it is you",
        "acr_values": "aal2 aal3",
        "max_age": 60,
        "decision_id": "d-1",
    }


def test_a_challenge_without_description_freshness_or_levels_has_nulls() -> None:
    response = stopped(DecideResponse(outcome=OUTCOME_CHALLENGE, decision_id="d-2", www_authenticate=WWW))
    assert answer(response) == {
        "error": "insufficient_user_authentication",
        "error_description": None,
        "acr_values": "",
        "max_age": None,
        "decision_id": "d-2",
    }


@pytest.mark.parametrize("www", ["", "Bearer\r\nSet-Cookie: a=b", "Bearer\x00", "Bearer\x7f"])
def test_a_challenge_with_no_usable_header_still_challenges(www: str) -> None:
    response = stopped(DecideResponse(outcome=OUTCOME_CHALLENGE, www_authenticate=www))
    assert response.status_code == 401
    assert dict(response.raw_headers)[b"www-authenticate"] == b'Bearer error="insufficient_user_authentication"'


def test_a_challenge_header_is_sent_byte_for_byte() -> None:
    www = 'Bearer error="insufficient_user_authentication",\terror_description="Vérifiez — 2FA"'
    response = stopped(DecideResponse(outcome=OUTCOME_CHALLENGE, www_authenticate=www))
    assert dict(response.raw_headers)[b"www-authenticate"] == www.encode("utf-8")
    # The route dependency hands the same bytes on.
    exc = StepUpHTTPException(response)
    assert exc.headers is not None
    assert dict(Response(headers=exc.headers).raw_headers)[b"www-authenticate"] == www.encode("utf-8")


def test_a_deny_is_a_403_with_the_first_deny_message() -> None:
    decision = DecideResponse(
        outcome=OUTCOME_DENY,
        decision_id="d-3",
        reasons=[
            Reason(rule_id="c", effect=EFFECT_CHALLENGE, message="not a deny"),
            Reason(rule_id="d", effect=EFFECT_DENY, message=""),
            Reason(rule_id="e", effect=EFFECT_DENY, message="Not from here"),
        ],
    )
    response = stopped(decision)
    assert response.status_code == 403
    assert "www-authenticate" not in response.headers
    assert answer(response) == {"error": "access_denied", "error_description": "Not from here", "decision_id": "d-3"}
    silent = stopped(DecideResponse(outcome=OUTCOME_DENY, decision_id="d-4"))
    assert answer(silent) == {"error": "access_denied", "error_description": None, "decision_id": "d-4"}


def test_an_unspecified_outcome_is_denied() -> None:
    decision = DecideResponse(
        outcome=OUTCOME_UNSPECIFIED,
        decision_id="d-5",
        reasons=[Reason(rule_id="d", effect=EFFECT_DENY, message="ignored")],
    )
    response = stopped(decision)
    assert response.status_code == 403
    assert answer(response) == {"error": "access_denied", "error_description": None, "decision_id": "d-5"}


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    ],
)
def test_no_answer_is_a_503_to_retry_later(code: grpc.StatusCode) -> None:
    response = error_response(SidecarUnavailable("Decide", code, "no", reason="OVERLOADED"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert answer(response) == {
        "error": "temporarily_unavailable",
        "error_description": "the authorization service is unavailable; the request was refused (fail closed)",
    }
    exc = StepUpHTTPException(response)
    assert exc.status_code == 503
    assert exc.headers == {"Cache-Control": "no-store", "Retry-After": "1"}


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNKNOWN],
)
def test_any_other_error_is_a_500_that_says_nothing_more(code: grpc.StatusCode) -> None:
    response = error_response(StepUpError("Decide", code, "`subject.id`: required", reason="INVALID_FIELD"))
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    assert answer(response) == {
        "error": "server_error",
        "error_description": "the authorization check failed; the request was refused",
    }
