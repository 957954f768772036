"""Token flows through real msal over mocked HTTP: the app's attempt, the auditor's and admin's credentials."""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime
from typing import Any

import pytest
import requests
import responses
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from mockhttp import (
    APP_ID,
    AUDITOR_ID,
    LOGIN,
    TENANT_ID,
    Waits,
    aadsts,
    add_identity_platform,
    assertion_header,
    fake_access_token,
    make_session,
    openid_configuration,
    token_body,
)

from cbacheck import certs
from cbacheck.collect.tokens import (
    AzureIdentityProvider,
    CertificateAppProvider,
    attempt_app_token,
    graph_token_provider,
)
from cbacheck.config import Settings
from cbacheck.errors import CertificateError, CredentialError
from cbacheck.facts import TokenAttempt, Unavailable


@pytest.fixture
def material(settings: Settings) -> certs.SigningMaterial:
    assert settings.cert is not None
    return certs.load_signing_material(settings.cert, None, "test")


def test_success_keeps_claims_and_never_the_token(
    mock: responses.RequestsMock, settings: Settings, waits: Waits, material: certs.SigningMaterial
) -> None:
    issued = fake_access_token(
        aud="https://outlook.office365.com", appid=APP_ID, tid=TENANT_ID, roles=["Exchange.ManageAsApp"]
    )
    seen: list[dict[str, str]] = []

    def answer(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        seen.append(form)
        return 200, token_body(issued)

    add_identity_platform(mock, answer)

    attempt = attempt_app_token(settings, make_session(settings, waits), material)

    assert isinstance(attempt, TokenAttempt) and attempt.acquired
    assert attempt.claims["roles"] == ["Exchange.ManageAsApp"] and attempt.claims["tid"] == TENANT_ID
    assert attempt.header["alg"] == "HS256"
    assert attempt.scope == "https://outlook.office365.com/.default"
    assert attempt.authority == f"{LOGIN}/{TENANT_ID}"
    assert issued not in repr(attempt) and issued.split(".")[2] not in repr(attempt)
    # Signed as Microsoft's certificate-credentials page says: PS256 with the SHA-256 thumbprint in x5t#S256.
    form = seen[0]
    header = assertion_header(form)
    assert header["alg"] == "PS256" and "x5t" not in header
    assert base64.urlsafe_b64decode(header["x5t#S256"] + "==").hex().upper() == material.sha256_thumbprint
    assert attempt.credential_style == "PS256 x5t#S256"
    assert form["scope"] == "https://outlook.office365.com/.default" and form["client_id"] == APP_ID


def test_aadsts_failure_keeps_code_and_microsofts_text(
    mock: responses.RequestsMock, settings: Settings, waits: Waits, material: certs.SigningMaterial
) -> None:
    text = "The certificate with identifier used to sign the client assertion is not registered on application."
    add_identity_platform(mock, lambda form: (401, aadsts(700027, text)), instance_discovery=True)

    attempt = attempt_app_token(settings, make_session(settings, waits), material)

    assert isinstance(attempt, TokenAttempt) and not attempt.acquired
    assert attempt.aadsts == 700027
    assert attempt.error == "invalid_client"
    assert attempt.error_description == f"AADSTS700027: {text}"  # first line only
    assert (attempt.correlation_id, attempt.trace_id) == ("c-1", "t-1")


def test_unknown_tenant_is_a_fact_with_aadsts90002(
    mock: responses.RequestsMock, settings: Settings, waits: Waits, material: certs.SigningMaterial
) -> None:
    unknown = dataclasses.replace(settings, tenant="nosuchtenant.onmicrosoft.com")
    url = f"{LOGIN}/nosuchtenant.onmicrosoft.com/v2.0/.well-known/openid-configuration"
    mock.get(url, status=400, json=aadsts(90002, "Tenant 'nosuchtenant.onmicrosoft.com' not found.", "invalid_tenant"))

    attempt = attempt_app_token(unknown, make_session(unknown, waits), material)

    assert isinstance(attempt, TokenAttempt) and not attempt.acquired
    assert attempt.aadsts == 90002
    assert "not found" in attempt.error_description


def test_no_answer_is_unavailable_not_a_failure(
    mock: responses.RequestsMock, settings: Settings, waits: Waits, material: certs.SigningMaterial
) -> None:
    mock.get(f"{LOGIN}/{TENANT_ID}/v2.0/.well-known/openid-configuration", json=openid_configuration(LOGIN, TENANT_ID))
    mock.post(f"{LOGIN}/{TENANT_ID}/oauth2/v2.0/token", body=requests.ConnectionError("connection reset by peer"))

    attempt = attempt_app_token(settings, make_session(settings, waits), material)

    assert isinstance(attempt, Unavailable)
    assert "login.microsoftonline.com" in attempt.reason


def test_token_endpoint_5xx_is_unavailable(
    mock: responses.RequestsMock, settings: Settings, waits: Waits, material: certs.SigningMaterial
) -> None:
    add_identity_platform(mock, lambda form: (503, {"error": "temporarily_unavailable"}))

    attempt = attempt_app_token(settings, make_session(settings, waits), material)

    assert isinstance(attempt, Unavailable)
    assert "503" in attempt.reason


def test_an_unusable_certificate_is_unavailable_with_its_reason(settings: Settings, waits: Waits) -> None:
    problem = CertificateError("app.pfx", "env CBACHECK_CERT", "wrong password", "Check the password.")

    attempt = attempt_app_token(settings, make_session(settings, waits), problem)

    assert isinstance(attempt, Unavailable)
    assert "wrong password" in attempt.reason and attempt.error is problem


def test_national_cloud_uses_its_login_host_and_exchange_scope(
    mock: responses.RequestsMock, settings: Settings, waits: Waits, material: certs.SigningMaterial
) -> None:
    gcchigh = dataclasses.replace(settings, cloud="gcchigh")
    scopes: list[str] = []

    def answer(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        scopes.append(form["scope"])
        return 200, token_body(fake_access_token(tid=TENANT_ID))

    add_identity_platform(mock, answer, login="https://login.microsoftonline.us")

    attempt = attempt_app_token(gcchigh, make_session(gcchigh, waits), material)

    assert isinstance(attempt, TokenAttempt) and attempt.acquired
    assert scopes == ["https://outlook.office365.us/.default"]
    assert attempt.authority == f"https://login.microsoftonline.us/{TENANT_ID}"


def test_a_private_login_endpoint_skips_instance_discovery(
    mock: responses.RequestsMock, settings: Settings, waits: Waits, material: certs.SigningMaterial
) -> None:
    private = dataclasses.replace(settings, login_url="https://login.sandbox.test:8443")
    add_identity_platform(
        mock, lambda form: (200, token_body(fake_access_token())), login="https://login.sandbox.test:8443"
    )

    attempt = attempt_app_token(private, make_session(private, waits), material)

    # Any call to login.microsoftonline.com/common/discovery/instance would be unmatched and fail here.
    assert isinstance(attempt, TokenAttempt) and attempt.acquired
    assert all("discovery/instance" not in c.request.url for c in mock.calls)


def test_the_auditor_certificate_app_gets_a_graph_token_once(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    issued = fake_access_token(aud="https://graph.microsoft.com")
    forms: list[dict[str, str]] = []

    def answer(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        forms.append(form)
        return 200, token_body(issued)

    add_identity_platform(mock, answer)
    session = make_session(settings, waits)
    provider = graph_token_provider(settings, session, "auditor")

    assert provider.token("https://graph.microsoft.com/.default") == issued
    assert provider.token("https://graph.microsoft.com/.default") == issued  # msal's cache, no second request
    assert [f["client_id"] for f in forms] == [AUDITOR_ID]
    assert session.stats.token_requests == 1
    assert isinstance(provider, CertificateAppProvider) and AUDITOR_ID in provider.description


def test_auditor_sign_in_failure_names_the_identity_and_aadsts(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    add_identity_platform(
        mock,
        lambda form: (400, aadsts(700016, f"Application with identifier '{AUDITOR_ID}' was not found")),
        instance_discovery=True,
    )
    provider = graph_token_provider(settings, make_session(settings, waits), "auditor")

    with pytest.raises(CredentialError) as caught:
        provider.token("https://graph.microsoft.com/.default")

    text = str(caught.value)
    assert "auditor" in text and "AADSTS700016" in text and AUDITOR_ID in text


def test_auto_auditor_falls_back_to_the_app_under_test(settings: Settings, waits: Waits) -> None:
    auto = dataclasses.replace(settings, auditor_credential="auto", auditor_app_id=None, auditor_cert=None)

    provider = graph_token_provider(auto, make_session(auto, waits), "auditor")

    assert isinstance(provider, CertificateAppProvider)
    assert provider.client_id == APP_ID and "no auditor configured" in provider.description


def test_auto_admin_without_configuration_says_what_to_set(settings: Settings, waits: Waits) -> None:
    with pytest.raises(CredentialError, match="admin_app_id and admin_cert"):
        graph_token_provider(settings, make_session(settings, waits), "admin")


def test_an_unreadable_auditor_certificate_is_a_credential_error(
    settings: Settings, waits: Waits, tmp_path: Any
) -> None:
    broken = tmp_path / "auditor.pem"
    broken.write_text("not a certificate")
    bad = dataclasses.replace(settings, auditor_cert=broken)

    with pytest.raises(CredentialError, match="auditor"):
        graph_token_provider(bad, make_session(bad, waits), "auditor")


class CountingCredential:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def get_token(self, *scopes: str) -> AccessToken:
        self.calls += 1
        if self.fail:
            raise ClientAuthenticationError("Authentication failed: AADSTS7000215: Invalid client secret provided.")
        return AccessToken(f"token-{self.calls}", int(datetime.now().timestamp()) + 3600)


def test_azure_identity_tokens_are_cached_until_near_expiry(settings: Settings, waits: Waits) -> None:
    credential = CountingCredential()
    provider = AzureIdentityProvider("auditor", "azure-identity test", credential, make_session(settings, waits))

    first = provider.token("https://graph.microsoft.com/.default")
    second = provider.token("https://graph.microsoft.com/.default")

    assert first == second == "token-1" and credential.calls == 1
    assert provider.stats.token_requests == 1


def test_azure_identity_failure_is_a_credential_error(settings: Settings, waits: Waits) -> None:
    provider = AzureIdentityProvider(
        "auditor", "azure-identity test", CountingCredential(fail=True), make_session(settings, waits)
    )

    with pytest.raises(CredentialError, match="AADSTS7000215"):
        provider.token("https://graph.microsoft.com/.default")


@pytest.mark.parametrize(
    ("kind", "class_name"),
    [
        ("default", "DefaultAzureCredential"),
        ("environment", "EnvironmentCredential"),
        ("azure_cli", "AzureCliCredential"),
        ("device_code", "DeviceCodeCredential"),
        ("managed_identity", "ManagedIdentityCredential"),
    ],
)
def test_azure_identity_kinds_build_their_credential(
    settings: Settings, waits: Waits, kind: str, class_name: str
) -> None:
    configured = dataclasses.replace(settings, auditor_credential=kind)

    provider = graph_token_provider(configured, make_session(configured, waits), "auditor")

    assert isinstance(provider, AzureIdentityProvider)
    assert type(provider.credential).__name__ == class_name
