"""The session: CA bundle per request over REQUESTS_CA_BUNDLE, timeouts, Retry-After, bounded retries."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
import responses
from mockhttp import Waits, make_session

from cbacheck.collect import FACT_NAMES
from cbacheck.collect.fetch import WHAT
from cbacheck.collect.transport import MAX_RETRY_AFTER_S, build_session, is_token_request, utc_stamp
from cbacheck.config import Settings

URL = "https://graph.microsoft.com/v1.0/organization"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "private-ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return path


def test_ca_bundle_wins_over_requests_ca_bundle(
    mock: responses.RequestsMock, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    mock.get(URL, json={"value": []})
    session = build_session(Settings(ca_bundle=bundle))

    session.get(URL)

    assert mock.calls[0].request.req_kwargs["verify"] == str(bundle)


def test_plain_session_verify_loses_to_the_environment(
    mock: responses.RequestsMock, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the bundle is passed per request: requests prefers REQUESTS_CA_BUNDLE over Session.verify."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    mock.get(URL, json={"value": []})
    plain = requests.Session()
    plain.verify = str(bundle)

    plain.get(URL)

    assert mock.calls[0].request.req_kwargs["verify"] == "/etc/ssl/certs/ca-certificates.crt"


def test_without_ca_bundle_the_environment_applies(
    mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    mock.get(URL, json={"value": []})

    build_session(Settings()).get(URL)

    assert mock.calls[0].request.req_kwargs["verify"] == "/etc/ssl/certs/ca-certificates.crt"


def test_every_request_gets_the_default_timeout_and_environment_proxies(
    mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    mock.get(URL, json={"value": []})

    build_session(Settings(timeout_s=7.5)).get(URL)

    kwargs = mock.calls[0].request.req_kwargs
    assert kwargs["timeout"] == 7.5
    assert kwargs["proxies"].get("https") == "http://proxy.example:3128"


def test_429_waits_for_retry_after_then_succeeds(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.get(URL, status=429, headers={"Retry-After": "3"}, json={"error": {"code": "TooManyRequests"}})
    mock.get(URL, json={"value": [1]})
    session = make_session(Settings(retries=3), waits)

    response = session.get(URL)

    assert response.status_code == 200
    assert waits.seconds == [3.0]
    assert session.stats.retries == 1


def test_503_retry_after_is_honoured(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.get(URL, status=503, headers={"Retry-After": "1"}, body="busy")
    mock.get(URL, json={"value": []})

    assert make_session(Settings(retries=3), waits).get(URL).status_code == 200
    assert waits.seconds == [1.0]


def test_a_huge_retry_after_is_capped(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.get(URL, status=429, headers={"Retry-After": "86400"}, json={})
    mock.get(URL, json={"value": []})

    make_session(Settings(retries=1), waits).get(URL)

    assert waits.seconds == [MAX_RETRY_AFTER_S]


def test_retries_are_bounded_and_the_last_answer_is_returned(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.get(URL, status=503, body="still busy")
    session = make_session(Settings(retries=2), waits)

    response = session.get(URL)

    assert response.status_code == 503
    assert len(mock.calls) == 3  # the first try and two retries
    assert session.stats.retries == 2


def test_writes_are_not_repeated_after_an_answer(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.post(URL, status=503, body="busy")
    session = make_session(Settings(retries=3), waits)

    response = session.for_writes().post(URL, json={"x": 1})

    assert response.status_code == 503
    assert len(mock.calls) == 1
    assert session.for_writes().stats is session.stats


def test_token_requests_are_counted(mock: responses.RequestsMock, waits: Waits) -> None:
    token_url = "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
    mock.post(token_url, json={"access_token": "x"})
    session = make_session(Settings(), waits)

    session.post(token_url, data={"grant_type": "client_credentials"})

    assert session.stats.token_requests == 1
    assert is_token_request("POST", token_url)
    assert not is_token_request("GET", "https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration")


def test_utc_stamp_has_milliseconds_and_z() -> None:
    moment = datetime(2026, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))

    assert utc_stamp(moment) == "2026-05-01T12:00:00.123Z"
    assert utc_stamp().endswith("Z") and len(utc_stamp()) == len("2026-05-01T12:00:00.123Z")


def test_fact_names_are_the_collected_fields_of_tenant_facts() -> None:
    assert FACT_NAMES == (
        "organization",
        "app",
        "app_sp",
        "exchange_sp",
        "app_role_grants",
        "role_assignments",
        "role_eligibilities",
        "token",
        "exchange",
        "exchange_rbac",
    )
    assert set(WHAT) <= set(FACT_NAMES)
