"""The sandbox's Entra ID: discovery, JWKS, tokens for real msal and azure-identity, AADSTS errors."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sandboxkit import (
    EXCHANGE_SCOPE,
    GRAPH_SCOPE,
    CASession,
    Client,
    acquire,
    assertion,
    claims,
    msal_app,
    token,
    token_form,
)

from cbacheck import wellknown
from cbacheck.sandbox import Sandbox


def aadsts(result: dict[str, Any], code: int) -> str:
    """Assert an msal/raw error dict carries the AADSTS code in every documented field."""
    assert result.get("error_codes") == [code], result
    description = str(result["error_description"])
    assert description.startswith(f"AADSTS{code}: ")
    assert "\r\nTrace ID: " in description and "\r\nCorrelation ID: " in description
    assert "\r\nTimestamp: " in description
    for key in ("timestamp", "trace_id", "correlation_id", "error_uri"):
        assert result.get(key), key
    return description


# --- discovery and keys ----------------------------------------------------------------------


def test_openid_configuration_names_endpoints_for_the_tenant_as_given(healthy: Sandbox) -> None:
    client = Client(healthy)
    for tenant in (healthy.info.tenant_id, healthy.info.initial_domain, "CONTOSOLAB.onmicrosoft.com"):
        resp = client.raw("GET", f"/{tenant}/v2.0/.well-known/openid-configuration")
        assert resp.status_code == 200
        doc = resp.json()
        base = healthy.info.login_url
        assert doc["issuer"] == f"{base}/{healthy.info.tenant_id}/v2.0"
        assert doc["token_endpoint"] == f"{base}/{tenant}/oauth2/v2.0/token"
        assert doc["jwks_uri"] == f"{base}/{tenant}/discovery/v2.0/keys"
        assert doc["authorization_endpoint"] == f"{base}/{tenant}/oauth2/v2.0/authorize"
        assert doc["device_authorization_endpoint"].endswith("/oauth2/v2.0/devicecode")
        assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
        assert resp.headers["Cache-Control"] == "max-age=86400, private"


def test_discovery_of_an_unknown_tenant_is_400_aadsts90002(healthy: Sandbox) -> None:
    resp = Client(healthy).raw("GET", "/nosuch.onmicrosoft.com/v2.0/.well-known/openid-configuration")
    assert resp.status_code == 400
    text = aadsts(resp.json(), 90002)
    assert "Tenant 'nosuch.onmicrosoft.com' not found." in text


def test_jwks_publishes_the_key_that_signs_access_tokens(healthy: Sandbox) -> None:
    resp = Client(healthy).raw("GET", f"/{healthy.info.tenant_id}/discovery/v2.0/keys")
    keys = resp.json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "RSA" and keys[0]["use"] == "sig"
    access = token(healthy)
    header = jwt.get_unverified_header(access)
    assert header["kid"] == keys[0]["kid"] == header["x5t"]
    public = jwt.PyJWK(keys[0]).key
    verified = jwt.decode(access, public, algorithms=["RS256"], audience="https://outlook.office365.com")
    assert verified["tid"] == healthy.info.tenant_id


# --- tokens for real clients -------------------------------------------------------------------


@pytest.mark.parametrize("style", ["thumbprint", "public_certificate"])
def test_msal_gets_an_exchange_token_with_both_credential_styles(healthy: Sandbox, style: str) -> None:
    session = CASession(healthy.info.ca_bundle)
    result = msal_app(healthy, style=style, session=session).acquire_token_for_client([EXCHANGE_SCOPE])
    # A random lifetime of 60 to 90 minutes, as Entra assigns.
    assert result["token_type"] == "Bearer" and 3600 <= result["expires_in"] <= 5400
    assert result["ext_expires_in"] == result["expires_in"]
    sent = session.sent[-1]
    assert str(sent["client_info"]) == "1"  # msal's extra field is ignored
    header = jwt.get_unverified_header(sent["client_assertion"])
    if style == "thumbprint":
        assert header["alg"] == "RS256" and header["x5t"].endswith("=")  # msal pads x5t
    else:
        assert header["alg"] == "PS256" and "x5t#S256" in header and "\n" in header["x5c"][0]


def test_exchange_token_carries_the_claims_entra_puts_in_app_only_tokens(healthy: Sandbox) -> None:
    ident = healthy.identities["under_test"]
    body = claims(token(healthy))
    sp = healthy.state.service_principal(app_id=ident.app_id)
    assert sp is not None
    tid = healthy.info.tenant_id
    assert body["aud"] == "https://outlook.office365.com"
    assert body["iss"] == f"https://sts.windows.net/{tid}/"
    assert body["tid"] == tid and body["appid"] == ident.app_id
    assert body["appidacr"] == "2" and body["idtyp"] == "app" and body["ver"] == "1.0"
    assert body["oid"] == body["sub"] == sp["id"]
    assert body["roles"] == [wellknown.EXCHANGE_MANAGE_AS_APP]
    assert body["wids"] == [wellknown.EXCHANGE_ADMINISTRATOR]
    assert body["nbf"] <= time.time() < body["exp"]
    assert 3600 <= body["exp"] - body["iat"] - 300 <= 5400
    assert body["uti"] and body["rh"]


def test_graph_token_roles_are_the_granted_graph_permissions(healthy: Sandbox) -> None:
    body = claims(token(healthy, "auditor", GRAPH_SCOPE, tenant=healthy.info.initial_domain))
    assert body["aud"] == "https://graph.microsoft.com"
    assert sorted(body["roles"]) == sorted(wellknown.AUDITOR_PERMISSIONS)
    assert "wids" not in body


def test_token_without_any_grant_has_no_roles_claim(healthy: Sandbox) -> None:
    assert "roles" not in claims(token(healthy, "under_test", GRAPH_SCOPE))


def test_azure_identity_certificate_credential_gets_a_token(healthy: Sandbox) -> None:
    ident = healthy.identities["under_test"]
    credential = CertificateCredential(
        healthy.tenant,
        ident.app_id,
        certificate_path=str(ident.cert_path),
        authority=healthy.info.login_url,
        disable_instance_discovery=True,
        connection_verify=healthy.info.ca_bundle,
    )
    access = credential.get_token(EXCHANGE_SCOPE)
    assert access.expires_on > time.time() + 3000
    assert claims(access.token)["roles"] == [wellknown.EXCHANGE_MANAGE_AS_APP]


def test_azure_identity_reports_aadsts_in_its_error() -> None:
    with Sandbox("cert-not-uploaded") as sb:
        ident = sb.identities["under_test"]
        credential = CertificateCredential(
            sb.tenant,
            ident.app_id,
            certificate_path=str(ident.cert_path),
            authority=sb.info.login_url,
            disable_instance_discovery=True,
            connection_verify=sb.info.ca_bundle,
        )
        with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
            credential.get_token(EXCHANGE_SCOPE)


# --- AADSTS failures, one scenario each ----------------------------------------------------------


def test_app_missing_is_aadsts700016() -> None:
    with Sandbox("app-missing") as sb:
        result = acquire(sb)
        text = aadsts(result, 700016)
        assert result["error"] == "unauthorized_client"
        assert f"Application with identifier '{sb.identities['under_test'].app_id}' was not found" in text


def test_app_without_service_principal_is_aadsts7000229() -> None:
    with Sandbox("sp-missing") as sb:
        result = acquire(sb)
        text = aadsts(result, 7000229)
        assert result["error"] == "invalid_client"
        assert f"The client application {sb.identities['under_test'].app_id} is missing service principal" in text


def test_disabled_service_principal_is_aadsts7000112() -> None:
    with Sandbox("sp-disabled") as sb:
        text = aadsts(acquire(sb), 7000112)
        assert "is disabled" in text


def test_certificate_not_uploaded_is_aadsts700027_key_not_found() -> None:
    with Sandbox("cert-not-uploaded") as sb:
        ident = sb.identities["under_test"]
        result = acquire(sb)
        text = aadsts(result, 700027)
        assert result["error"] == "invalid_client"
        assert "[Reason - The key was not found., " in text
        assert f"Thumbprint of key used by client: '{ident.thumbprint_sha1}'" in text
        assert f"configured keys for app Id '{ident.app_id}'" in text


def test_sha256_thumbprint_of_an_unknown_key_is_reported_too() -> None:
    with Sandbox("cert-not-uploaded") as sb:
        text = aadsts(acquire(sb, style="public_certificate"), 700027)
        assert "The key was not found." in text


@pytest.mark.parametrize("scenario", ["key-expired", "cert-expired"])
def test_expired_key_is_aadsts700027_key_expired(scenario: str) -> None:
    with Sandbox(scenario) as sb:
        text = aadsts(acquire(sb), 700027)
        assert "Client assertion contains an invalid signature. [Reason - The key used is expired." in text
        assert "Found key 'Start=" in text and ", End=" in text


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_rsa_1024_key_is_aadsts50032_inside_70002() -> None:
    with Sandbox("rsa-1024") as sb:
        result = acquire(sb)
        assert result["error_codes"] == [70002, 50032] and result["error"] == "invalid_client"
        description = str(result["error_description"])
        assert description.startswith("AADSTS70002: Error validating credentials. AADSTS50032: RSA key size 1024 ")
        assert "is less than the minimum required 2048 bits." in description
        assert result["error_uri"].endswith("code=70002")


def test_assertion_signed_by_another_key_fails_signature_validation(healthy: Sandbox) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ident = healthy.identities["under_test"]
    form = token_form(ident, assertion(healthy, ident, key_pem=pem))
    resp = Client(healthy).raw("POST", f"/{healthy.tenant}/oauth2/v2.0/token", data=form)
    assert resp.status_code == 401
    assert "Client assertion failed signature validation." in aadsts(resp.json(), 700027)


def test_assertion_without_thumbprint_fails_signature_validation(healthy: Sandbox) -> None:
    ident = healthy.identities["under_test"]
    form = token_form(ident, assertion(healthy, ident, header={"x5t": None}))
    resp = Client(healthy).raw("POST", f"/{healthy.tenant}/oauth2/v2.0/token", data=form)
    first_line = aadsts(resp.json(), 700027).split("\r\n")[0]
    assert first_line == "AADSTS700027: Client assertion failed signature validation."


def test_expired_assertion_is_aadsts700024(healthy: Sandbox) -> None:
    ident = healthy.identities["under_test"]
    now = int(time.time())
    form = token_form(ident, assertion(healthy, ident, iat=now - 3600, nbf=now - 3600, exp=now - 1800))
    resp = Client(healthy).raw("POST", f"/{healthy.tenant}/oauth2/v2.0/token", data=form)
    text = aadsts(resp.json(), 700024)
    assert "Client assertion is not within its valid time range. Current time: " in text
    assert resp.json()["error"] == "invalid_client"


def test_subject_not_issuer_is_aadsts50048(healthy: Sandbox) -> None:
    ident = healthy.identities["under_test"]
    form = token_form(ident, assertion(healthy, ident, sub="someone-else"))
    resp = Client(healthy).raw("POST", f"/{healthy.tenant}/oauth2/v2.0/token", data=form)
    assert "Subject mismatches Issuer claim" in aadsts(resp.json(), 50048)


def test_assertion_for_another_audience_is_rejected(healthy: Sandbox) -> None:
    ident = healthy.identities["under_test"]
    form = token_form(ident, assertion(healthy, ident, aud="https://example.com/token"))
    resp = Client(healthy).raw("POST", f"/{healthy.tenant}/oauth2/v2.0/token", data=form)
    assert "Unexpected audience" in aadsts(resp.json(), 50027)


def test_assertion_audience_may_name_the_tenant_by_domain_or_id(healthy: Sandbox) -> None:
    ident = healthy.identities["under_test"]
    aud = f"{healthy.info.login_url}/{healthy.info.initial_domain}/oauth2/v2.0/token"
    form = token_form(ident, assertion(healthy, ident, aud=aud))
    resp = Client(healthy).raw("POST", f"/{healthy.info.tenant_id}/oauth2/v2.0/token", data=form)
    assert resp.status_code == 200, resp.text


def test_unsupported_signing_algorithm_is_rejected(healthy: Sandbox) -> None:
    ident = healthy.identities["under_test"]
    form = token_form(ident, assertion(healthy, ident, alg="RS512"))
    resp = Client(healthy).raw("POST", f"/{healthy.tenant}/oauth2/v2.0/token", data=form)
    assert "'RS512' is not supported" in aadsts(resp.json(), 50027)


def test_missing_assertion_is_aadsts7000218(healthy: Sandbox) -> None:
    form = token_form(healthy.identities["under_test"], None)
    resp = Client(healthy).raw("POST", f"/{healthy.tenant}/oauth2/v2.0/token", data=form)
    assert "'client_assertion' or 'client_secret'" in aadsts(resp.json(), 7000218)


def test_client_secret_is_aadsts7000215(healthy: Sandbox) -> None:
    ident = healthy.identities["under_test"]
    app = msal_app(healthy)
    app = type(app)(
        ident.app_id,
        client_credential="not-a-real-secret",
        authority=f"{healthy.info.login_url}/{healthy.tenant}",
        instance_discovery=False,
        azure_region=False,
        http_client=CASession(healthy.info.ca_bundle),
    )
    result = app.acquire_token_for_client([EXCHANGE_SCOPE])
    assert "Invalid client secret provided." in aadsts(result, 7000215)


def test_unknown_tenant_at_the_token_endpoint_is_aadsts90002(healthy: Sandbox) -> None:
    ident = healthy.identities["under_test"]
    form = token_form(ident, assertion(healthy, ident, tenant="other.onmicrosoft.com"))
    resp = Client(healthy).raw("POST", "/other.onmicrosoft.com/oauth2/v2.0/token", data=form)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    assert "Tenant 'other.onmicrosoft.com' not found." in aadsts(resp.json(), 90002)


def test_msal_refuses_an_authority_whose_tenant_is_unknown(healthy: Sandbox) -> None:
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal_app(healthy, tenant="nosuch.onmicrosoft.com")


@pytest.mark.parametrize(
    "scope",
    ["https://outlook.office365.com/Exchange.ManageAsApp", f"{EXCHANGE_SCOPE} {GRAPH_SCOPE}"],
)
def test_scope_that_is_not_one_resource_default_is_aadsts70011(healthy: Sandbox, scope: str) -> None:
    ident = healthy.identities["under_test"]
    form = token_form(ident, assertion(healthy, ident), scope=scope)
    resp = Client(healthy).raw("POST", f"/{healthy.tenant}/oauth2/v2.0/token", data=form)
    assert resp.json()["error"] == "invalid_scope"
    assert "The scope" in aadsts(resp.json(), 70011)


def test_unknown_resource_is_aadsts500011(healthy: Sandbox) -> None:
    result = acquire(healthy, scope="https://nosuch.example.com/.default")
    assert "The resource principal named https://nosuch.example.com was not found" in aadsts(result, 500011)


def test_exchange_service_principal_missing_is_aadsts500011_for_exchange_only() -> None:
    with Sandbox("exchange-sp-missing") as sb:
        result = acquire(sb)
        assert result["error"] == "invalid_resource"
        assert "https://outlook.office365.com" in aadsts(result, 500011)
        assert "access_token" in acquire(sb, scope=GRAPH_SCOPE)


def test_extra_form_fields_and_padded_or_unpadded_x5t_are_accepted(healthy: Sandbox) -> None:
    ident = healthy.identities["under_test"]
    unpadded = assertion(healthy, ident)
    padded_x5t = jwt.get_unverified_header(unpadded)["x5t"] + "="
    for client_assertion in (unpadded, assertion(healthy, ident, header={"x5t": padded_x5t})):
        form = {**token_form(ident, client_assertion), "client_info": "1", "claims": "{}"}
        resp = Client(healthy).raw("POST", f"/{healthy.tenant}/oauth2/v2.0/token", data=form)
        assert resp.status_code == 200, resp.text
