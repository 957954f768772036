"""Helpers for the sandbox tests: msal clients, hand-made assertions and Graph/Exchange calls."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

import jwt
import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cbacheck.sandbox import Identity, Sandbox

EXCHANGE_SCOPE = "https://outlook.office365.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class CASession(requests.Session):
    """A Session that trusts one CA file on every request.

    REQUESTS_CA_BUNDLE (set on the build machines) overrides ``Session.verify``, so the bundle
    is passed per request, where the environment cannot win
    (https://requests.readthedocs.io/en/latest/user/advanced/#ssl-cert-verification).
    """

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("verify", self.ca_bundle)
        if isinstance(kwargs.get("data"), dict):
            self.sent.append(dict(kwargs["data"]))
        return super().request(method, url, *args, **kwargs)


def msal_app(
    sb: Sandbox,
    role: str = "under_test",
    *,
    style: str = "thumbprint",
    tenant: str | None = None,
    session: CASession | None = None,
    identity: Identity | None = None,
) -> msal.ConfidentialClientApplication:
    """A fresh msal client for one identity (fresh, because msal caches 400 answers for 60 s)."""
    ident = identity or sb.identities[role]
    pem = ident.cert_path.read_text()
    if style == "thumbprint":
        credential: Any = {"private_key": pem, "thumbprint": ident.thumbprint_sha1}
    else:
        credential = {"private_key": pem, "public_certificate": pem}
    return msal.ConfidentialClientApplication(
        ident.app_id,
        client_credential=credential,
        authority=f"{sb.info.login_url}/{tenant or sb.tenant}",
        instance_discovery=False,
        azure_region=False,
        http_client=session or CASession(sb.info.ca_bundle),
    )


def acquire(sb: Sandbox, role: str = "under_test", scope: str = EXCHANGE_SCOPE, **kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = msal_app(sb, role, **kwargs).acquire_token_for_client([scope])
    return result


def token(sb: Sandbox, role: str = "under_test", scope: str = EXCHANGE_SCOPE, **kwargs: Any) -> str:
    result = acquire(sb, role, scope, **kwargs)
    assert "access_token" in result, result.get("error_description")
    return str(result["access_token"])


def claims(access_token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return decoded


class Client:
    """Plain requests against one sandbox, with an optional bearer token."""

    def __init__(self, sb: Sandbox, access_token: str | None = None) -> None:
        self.sb = sb
        self.session = CASession(sb.info.ca_bundle)
        self.access_token = access_token

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}
        out.update(extra or {})
        return out

    def graph(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("https://") else f"{self.sb.info.graph_url}/v1.0{path}"
        headers = self.headers(kwargs.pop("headers", None))
        return self.session.request(method, url, headers=headers, timeout=30, **kwargs)

    def exchange(
        self, cmdlet: str, parameters: dict[str, Any] | None = None, tenant: str | None = None
    ) -> requests.Response:
        url = f"{self.sb.info.exchange_url}/adminapi/beta/{tenant or self.sb.organization}/InvokeCommand"
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters or {}}}
        return self.session.post(url, json=body, headers=self.headers(), timeout=30)

    def raw(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.sb.info.login_url}{path}", timeout=30, **kwargs)


def assertion(
    sb: Sandbox,
    identity: Identity,
    *,
    tenant: str | None = None,
    alg: str = "RS256",
    header: dict[str, Any] | None = None,
    key_pem: bytes | None = None,
    **claim_overrides: Any,
) -> str:
    """A client assertion signed by hand, for the cases msal never produces."""
    pem = identity.cert_path.read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    key = serialization.load_pem_private_key(key_pem or pem, password=None)
    now = int(time.time())
    body: dict[str, Any] = {
        "aud": f"{sb.info.login_url}/{tenant or sb.tenant}/oauth2/v2.0/token",
        "iss": identity.app_id,
        "sub": identity.app_id,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
    }
    body.update(claim_overrides)
    body = {k: v for k, v in body.items() if v is not None}
    hdr: dict[str, Any] = {"x5t": base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")}
    hdr.update(header or {})
    hdr = {k: v for k, v in hdr.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers=hdr)  # type: ignore[arg-type]


def token_form(identity: Identity, client_assertion: str | None, scope: str = EXCHANGE_SCOPE) -> dict[str, str]:
    form = {
        "client_id": identity.app_id,
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    if client_assertion is not None:
        form["client_assertion"] = client_assertion
    return form
