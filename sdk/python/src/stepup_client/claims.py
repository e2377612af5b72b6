"""Helpers that read a verified JWT's claims (a dict, as PyJWT or authlib
return after checking the signature) into the request context. They trust
what they are given: verify the token first."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from stepup_client.v1 import decision_pb2 as pb


def session_from_claims(claims: Mapping[str, Any]) -> pb.Session:
    """The Session of a verified ID or access token: `sid` → `id`, `acr`,
    `amr` (a list, or one string), `auth_time` (seconds since the epoch).
    A missing or ill-typed claim is left unset ("not known"), which meets no
    requirement: it can only make a challenge more likely."""
    session = pb.Session()
    sid = claims.get("sid")
    if isinstance(sid, str):
        session.id = sid
    acr = claims.get("acr")
    if isinstance(acr, str):
        session.acr = acr
    amr = claims.get("amr")
    if isinstance(amr, str):
        session.amr.append(amr)
    elif isinstance(amr, (list, tuple)):
        session.amr.extend(m for m in amr if isinstance(m, str))
    auth_time = claims.get("auth_time")
    if isinstance(auth_time, (int, float)) and not isinstance(auth_time, bool):
        session.auth_time.CopyFrom(Timestamp(seconds=int(auth_time)))
    return session


def subject_from_claims(
    claims: Mapping[str, Any],
    *,
    subject_claim: str = "sub",
    tenant: str = "",
    roles: Sequence[str] = (),
) -> pb.Subject:
    """The Subject of a verified token: `subject_claim` (default `sub`) →
    `id`. Raises ValueError when the claim is missing: a request without a
    subject cannot be decided (the sidecar would refuse it)."""
    subject_id: Optional[Any] = claims.get(subject_claim)
    if not isinstance(subject_id, str) or not subject_id:
        raise ValueError(f"token has no `{subject_claim}` claim to use as the subject id")
    return pb.Subject(id=subject_id, tenant=tenant, roles=list(roles))


def decide_request_from_claims(
    action: str,
    claims: Mapping[str, Any],
    *,
    resource: Optional[pb.Resource] = None,
    network: Optional[pb.Network] = None,
    device: Optional[pb.Device] = None,
    subject_claim: str = "sub",
    tenant: str = "",
) -> pb.DecideRequest:
    """A DecideRequest for `action` by the token's subject and session."""
    return pb.DecideRequest(
        action=action,
        subject=subject_from_claims(claims, subject_claim=subject_claim, tenant=tenant),
        session=session_from_claims(claims),
        resource=resource,
        network=network,
        device=device,
    )
