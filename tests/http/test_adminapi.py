"""The Exchange Online Admin API probe: the documented request, both answer shapes, errors and redirects."""

from __future__ import annotations

import requests
import responses
from mockhttp import EXO, TENANT_ID, Waits, make_session
from responses import matchers

from cbacheck import profiles, wellknown
from cbacheck.collect.adminapi import probe_admin_api
from cbacheck.config import Settings
from cbacheck.facts import ExchangeProbe, Unavailable

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJyb2xlcyI6W119.c2lnbmF0dXJl"
ADMIN_API = profiles.PROFILES[profiles.EXCHANGE_ADMIN_API]
GLOBAL = wellknown.CLOUDS["global"]
URL = profiles.probe_url_in(ADMIN_API, GLOBAL, TENANT_ID)


def probe(settings: Settings, waits: Waits) -> ExchangeProbe | Unavailable:
    return probe_admin_api(make_session(settings, waits), TOKEN, URL, TENANT_ID, ADMIN_API)


def test_the_url_is_the_documented_v2_endpoint_with_the_tenant_id() -> None:
    assert profiles.probe_url_in(ADMIN_API, GLOBAL, TENANT_ID) == f"{EXO}/adminapi/v2.0/{TENANT_ID}/OrganizationConfig"
    assert ADMIN_API.token_resource == "https://outlook.office365.com"
    assert profiles.token_resource_in(ADMIN_API, "gcc") == "https://outlook.office365.com"
    assert profiles.token_resource_in(ADMIN_API, "gcchigh") == ""  # not asked there: UNCONFIRMED


def test_one_object_answers_with_the_documented_body_and_headers(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    mock.post(
        URL,
        json={"@odata.context": "ctx", "Name": "contoso", "Guid": TENANT_ID, "Big": [1] * 50},
        headers={"request-id": "api-1"},
        match=[
            matchers.json_params_matcher({"CmdletInput": {"CmdletName": "Get-OrganizationConfig"}}),
            matchers.header_matcher(
                {
                    "Authorization": f"Bearer {TOKEN}",
                    "Content-Type": "application/json",
                    "X-AnchorMailbox": f"APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{TENANT_ID}",
                }
            ),
        ],
    )
    result = probe(settings, waits)
    assert isinstance(result, ExchangeProbe) and result.ok and result.status == 200
    assert result.summary == {"objects": 1, "Name": "contoso", "Guid": TENANT_ID}
    assert TOKEN not in repr(result)


def test_a_value_list_answer_is_summarised_too(mock: responses.RequestsMock, settings: Settings, waits: Waits) -> None:
    mock.post(URL, json={"value": [{"Name": "contoso"}]})
    result = probe(settings, waits)
    assert isinstance(result, ExchangeProbe) and result.ok and result.summary == {"objects": 1, "Name": "contoso"}


def test_403_without_rbac_keeps_the_message_and_never_the_token(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    mock.post(URL, status=403, json={"error": {"code": "Forbidden", "message": f"no role for Bearer {TOKEN}"}})
    result = probe(settings, waits)
    assert isinstance(result, ExchangeProbe) and not result.ok and result.status == 403
    assert result.error_code == "Forbidden" and "[token removed]" in result.error_message
    assert TOKEN not in repr(result)


def test_a_redirect_is_followed_only_within_the_service_domains(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    inside = "https://eur01.outlook.office365.com/adminapi/v2.0/t/OrganizationConfig"
    mock.post(URL, status=307, headers={"Location": inside})
    mock.post(inside, json={"Name": "contoso"})
    result = probe(settings, waits)
    assert isinstance(result, ExchangeProbe) and result.ok and result.url == inside

    mock.replace(responses.POST, URL, status=307, headers={"Location": "https://evil.example.net/steal"})
    refused = probe(settings, waits)
    assert isinstance(refused, Unavailable) and "outside the service domains" in refused.reason


def test_no_answer_is_unavailable(mock: responses.RequestsMock, settings: Settings, waits: Waits) -> None:
    mock.post(URL, body=requests.ConnectionError("refused"))
    result = probe(settings, waits)
    assert isinstance(result, Unavailable) and "exchange_url" in result.reason
