"""Helpers for the responses-based HTTP tests: identity platform answers, fake tokens, a recording sleep."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
import responses

from cbacheck.collect.transport import CbaSession, TransportStats
from cbacheck.config import Settings

TENANT_ID = "11111111-2222-3333-4444-555555555555"
APP_ID = "aaaaaaaa-0000-0000-0000-000000000001"
AUDITOR_ID = "bbbbbbbb-0000-0000-0000-000000000002"
LOGIN = "https://login.microsoftonline.com"
GRAPH = "https://graph.microsoft.com/v1.0"
EXO = "https://outlook.office365.com"


@dataclass
class Waits:
    """Stands in for time.sleep: records each wait instead of spending it."""

    seconds: list[float] = field(default_factory=list)

    def __call__(self, value: float) -> None:
        self.seconds.append(value)


def make_session(settings: Settings, waits: Waits) -> CbaSession:
    stats = TransportStats(sleep=waits)
    return CbaSession(
        ca_bundle=str(settings.ca_bundle) if settings.ca_bundle else None,
        timeout_s=settings.timeout_s,
        retries=settings.retries,
        stats=stats,
    )


def fake_access_token(**claims: Any) -> str:
    """A JWT shaped like an Entra app-only token; signed with a throwaway HMAC key (nobody verifies it)."""
    now = int(time.time())
    body = {"iat": now, "nbf": now, "exp": now + 3600, "ver": "1.0", **claims}
    return jwt.encode(body, "not-a-real-key-only-for-shape-000000", algorithm="HS256", headers={"kid": "test"})


def openid_configuration(login: str, tenant: str) -> dict[str, Any]:
    return {
        "issuer": f"{login}/{tenant}/v2.0",
        "authorization_endpoint": f"{login}/{tenant}/oauth2/v2.0/authorize",
        "token_endpoint": f"{login}/{tenant}/oauth2/v2.0/token",
        "jwks_uri": f"{login}/{tenant}/discovery/v2.0/keys",
    }


def aadsts(code: int, text: str, error: str = "invalid_client") -> dict[str, Any]:
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: t-1\r\nCorrelation ID: c-1\r\nTimestamp: 2026-01-01",
        "error_codes": [code],
        "timestamp": "2026-01-01 00:00:00Z",
        "trace_id": "t-1",
        "correlation_id": "c-1",
    }


def form_of(request: Any) -> dict[str, str]:
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return {k: v[0] for k, v in parse_qs(body).items()}


def assertion_header(form: dict[str, str]) -> dict[str, Any]:
    return dict(jwt.get_unverified_header(form["client_assertion"]))


TokenAnswer = Callable[[dict[str, str]], tuple[int, dict[str, Any]]]


def add_identity_platform(
    mock: responses.RequestsMock,
    answer: TokenAnswer,
    *,
    login: str = LOGIN,
    tenant: str = TENANT_ID,
    instance_discovery: bool = False,
) -> None:
    """Tenant discovery plus a token endpoint whose answer depends on the form msal posts.

    `instance_discovery`: msal asks login.microsoftonline.com for the cloud's host aliases after a
    failed token request on a Microsoft host, so failure tests must answer that too.
    """
    mock.get(f"{login}/{tenant}/v2.0/.well-known/openid-configuration", json=openid_configuration(login, tenant))
    if instance_discovery:
        host = login.split("://", 1)[1]
        mock.get(
            f"{LOGIN}/common/discovery/instance",
            json={
                "tenant_discovery_endpoint": f"{login}/common/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            },
        )

    def token(request: Any) -> tuple[int, dict[str, str], str]:
        status, body = answer(form_of(request))
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    mock.add_callback(responses.POST, f"{login}/{tenant}/oauth2/v2.0/token", callback=token)


def token_body(access_token: str) -> dict[str, Any]:
    return {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access_token}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_id() -> str:
    return str(uuid.uuid4())
