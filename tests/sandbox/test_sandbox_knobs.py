"""Realism knobs: latency, deterministic faults and propagation delay."""

from __future__ import annotations

import base64
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sandboxkit import GRAPH_SCOPE, Client, acquire, claims, token

from cbacheck import wellknown
from cbacheck.sandbox import Sandbox


def statuses(sb: Sandbox, count: int) -> list[int]:
    client = Client(sb, token(sb, "auditor", GRAPH_SCOPE))
    out = []
    for _ in range(count):
        resp = client.graph("GET", "/organization")
        if resp.status_code == 429:
            assert resp.headers["Retry-After"] == "1"
            assert resp.json()["error"]["code"] == "TooManyRequests"
        elif resp.status_code == 503:
            assert resp.headers["Retry-After"] == "1"
        out.append(resp.status_code)
    return out


def test_latency_delays_every_response() -> None:
    with Sandbox("healthy", latency_ms=250) as sb:
        client = Client(sb)
        started = time.monotonic()
        client.raw("GET", f"/{sb.tenant}/v2.0/.well-known/openid-configuration")
        client.graph("GET", "/organization")
        assert time.monotonic() - started >= 0.5


def test_faults_are_429_or_503_and_repeat_with_the_seed() -> None:
    with Sandbox("healthy", fault_rate=0.5, fault_seed=7) as sb:
        first = statuses(sb, 30)
        assert sb.stats.faults == first.count(429) + first.count(503)
    with Sandbox("healthy", fault_rate=0.5, fault_seed=7) as sb:
        assert statuses(sb, 30) == first
    assert {200, 429, 503} <= set(first)
    with Sandbox("healthy", fault_rate=0.5, fault_seed=8) as sb:
        assert statuses(sb, 30) != first


def test_faults_never_touch_the_token_endpoint() -> None:
    with Sandbox("healthy", fault_rate=1.0) as sb:
        for _ in range(5):
            assert "access_token" in acquire(sb)
        resp = Client(sb, token(sb)).exchange("Get-OrganizationConfig")
        assert resp.status_code in (429, 503)


def test_new_grants_reach_tokens_only_after_propagation() -> None:
    with Sandbox("demo-broken", propagation_s=1.5) as sb:
        ident = sb.identities["under_test"]
        admin = Client(sb, token(sb, "admin", GRAPH_SCOPE))
        sp = sb.state.service_principal(app_id=ident.app_id)
        exo = sb.state.service_principal(app_id=wellknown.EXCHANGE_ONLINE_APP_ID)
        assert sp is not None and exo is not None
        der = x509.load_pem_x509_certificate(ident.cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
        key = {"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.b64encode(der).decode()}
        started = time.monotonic()
        assert (
            admin.graph("PATCH", f"/applications(appId='{ident.app_id}')", json={"keyCredentials": [key]}).status_code
            == 204
        )
        grant = {
            "principalId": sp["id"],
            "resourceId": exo["id"],
            "appRoleId": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
        }
        assert admin.graph("POST", f"/servicePrincipals/{exo['id']}/appRoleAssignedTo", json=grant).status_code == 201
        role = {"roleDefinitionId": wellknown.EXCHANGE_ADMINISTRATOR, "principalId": sp["id"], "directoryScopeId": "/"}
        assert admin.graph("POST", "/roleManagement/directory/roleAssignments", json=role).status_code == 201
        # Graph shows everything at once ...
        grants = admin.graph("GET", f"/servicePrincipals/{sp['id']}/appRoleAssignments").json()["value"]
        assert [g["appRoleId"] for g in grants] == [wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID]
        # ... but the token endpoint does not see the new key yet.
        early = acquire(sb)
        if time.monotonic() - started < 1.5:
            assert early["error_codes"] == [700027]
        time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
        body = claims(token(sb))
        assert body["roles"] == [wellknown.EXCHANGE_MANAGE_AS_APP]
        assert body["wids"] == [wellknown.EXCHANGE_ADMINISTRATOR]


def test_new_consent_is_missing_from_roles_until_propagated() -> None:
    with Sandbox("consent-missing", propagation_s=1.5) as sb:
        ident = sb.identities["under_test"]
        admin = Client(sb, token(sb, "admin", GRAPH_SCOPE))
        sp = sb.state.service_principal(app_id=ident.app_id)
        exo = sb.state.service_principal(app_id=wellknown.EXCHANGE_ONLINE_APP_ID)
        assert sp is not None and exo is not None
        started = time.monotonic()
        grant = {
            "principalId": sp["id"],
            "resourceId": exo["id"],
            "appRoleId": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
        }
        assert admin.graph("POST", f"/servicePrincipals/{sp['id']}/appRoleAssignments", json=grant).status_code == 201
        early = claims(token(sb))
        if time.monotonic() - started < 1.5:
            assert "roles" not in early
        time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
        assert claims(token(sb))["roles"] == [wellknown.EXCHANGE_MANAGE_AS_APP]
        # Objects loaded with the scenario were in effect from the start.
        assert claims(token(sb))["wids"] == [wellknown.EXCHANGE_ADMINISTRATOR]
