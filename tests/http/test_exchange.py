"""The Exchange admin API probe: the request Connect-ExchangeOnline's REST mode sends, and every answer shape."""

from __future__ import annotations

import dataclasses

import requests
import responses
from mockhttp import EXO, TENANT_ID, Waits, make_session
from responses import matchers

from cbacheck.collect.exchange import probe_exchange
from cbacheck.config import Settings
from cbacheck.facts import ExchangeProbe, Unavailable

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJyb2xlcyI6W119.c2lnbmF0dXJl"
URL = f"{EXO}/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"


def probe(settings: Settings, waits: Waits) -> ExchangeProbe | Unavailable:
    return probe_exchange(
        settings, make_session(settings, waits), TOKEN, "contoso.onmicrosoft.com", anchor_tenant=TENANT_ID
    )


def test_success_sends_the_module_headers_and_summarises(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    mock.post(
        URL,
        json={"value": [{"Name": "contoso", "Identity": "contoso.onmicrosoft.com", "Guid": "g-1", "Big": [1] * 50}]},
        headers={"request-id": "exo-req-1"},
        match=[
            matchers.json_params_matcher({"CmdletInput": {"CmdletName": "Get-OrganizationConfig", "Parameters": {}}}),
            matchers.header_matcher(
                {
                    "Authorization": f"Bearer {TOKEN}",
                    "X-AnchorMailbox": f"APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{TENANT_ID}",
                    "X-ResponseFormat": "json",
                    "X-ClientApplication": "ExoManagementModule",
                    "Prefer": "odata.maxpagesize=1000",
                }
            ),
        ],
    )

    result = probe(settings, waits)

    assert isinstance(result, ExchangeProbe) and result.ok
    assert result.summary == {"objects": 1, "Name": "contoso", "Identity": "contoso.onmicrosoft.com", "Guid": "g-1"}
    assert result.request_id == "exo-req-1" and result.status == 200
    assert TOKEN not in repr(result)


def test_not_allowed_cmdlet_keeps_exchanges_message(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    mock.post(
        URL,
        status=401,
        json={
            "error": {
                "code": "Unauthorized",
                "message": "Unauthorized",
                "innererror": {
                    "message": "x",
                    "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                    "internalException": {"message": "User is not allowed to call Get-OrganizationConfig"},
                },
            }
        },
    )

    result = probe(settings, waits)

    assert isinstance(result, ExchangeProbe) and not result.ok
    assert (result.status, result.error_code) == (401, "Unauthorized")
    assert result.error_message == "User is not allowed to call Get-OrganizationConfig"


def test_details_message_comes_first(mock: responses.RequestsMock, settings: Settings, waits: Waits) -> None:
    text = "The role assigned to application x isn't supported in this scenario."
    mock.post(URL, status=403, json={"error": {"code": "Forbidden", "message": "m", "details": [{"message": text}]}})

    result = probe(settings, waits)

    assert isinstance(result, ExchangeProbe) and result.error_message == text


def test_garbage_is_a_failed_probe_with_an_excerpt(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    no_retries = dataclasses.replace(settings, retries=0)
    mock.post(URL, status=502, body="<html>Bad gateway</html>")

    result = probe(no_retries, waits)

    assert isinstance(result, ExchangeProbe) and not result.ok
    assert result.error_code == "InvalidResponse" and "Bad gateway" in result.error_message


def test_a_server_echoing_the_token_never_leaks_it(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    mock.post(URL, status=400, json={"error": {"code": "BadRequest", "message": f"bad header Bearer {TOKEN}"}})

    result = probe(settings, waits)

    assert isinstance(result, ExchangeProbe)
    assert TOKEN not in repr(result) and "[token removed]" in result.error_message


def test_no_answer_is_unavailable(mock: responses.RequestsMock, settings: Settings, waits: Waits) -> None:
    mock.post(URL, body=requests.ConnectionError("refused"))

    result = probe(settings, waits)

    assert isinstance(result, Unavailable) and "exchange_url" in result.reason


def test_national_cloud_exchange_host(mock: responses.RequestsMock, settings: Settings, waits: Waits) -> None:
    gcchigh = dataclasses.replace(settings, cloud="gcchigh")
    mock.post("https://outlook.office365.us/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand", json={"value": []})

    result = probe(gcchigh, waits)

    assert isinstance(result, ExchangeProbe) and result.ok and result.summary == {"objects": 0}
