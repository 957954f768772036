"""The sandbox's Exchange Online Admin API (preview): POST-only v2.0 endpoints, Exchange.ManageAsAppV2 and RBAC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sandboxkit import GRAPH_SCOPE, Client, token

from cbacheck import wellknown
from cbacheck.sandbox import Sandbox

ORG_CONFIG = {"CmdletInput": {"CmdletName": "Get-OrganizationConfig"}}
ANCHOR = {"X-AnchorMailbox": f"APP:{wellknown.EXCHANGE_ANCHOR_MAILBOX}@tenant"}


@pytest.fixture(scope="module")
def adminapi() -> Iterator[Sandbox]:
    with Sandbox("adminapi-healthy") as sb:
        yield sb


def post(sb: Sandbox, access_token: str, endpoint: str = "OrganizationConfig", body: Any = None, **kw: Any) -> Any:
    client = Client(sb, access_token)
    url = f"{sb.info.exchange_url}/adminapi/v2.0/{kw.pop('tenant', sb.info.tenant_id)}/{endpoint}"
    headers = client.headers({**ANCHOR, **kw.pop("headers", {})})
    return client.session.post(url, json=ORG_CONFIG if body is None else body, headers=headers, timeout=30)


def error(resp: requests.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    found: dict[str, Any] = resp.json()["error"]
    return found


def test_organization_config_answers_one_object_for_manage_as_app_v2_and_rbac(adminapi: Sandbox) -> None:
    resp = post(adminapi, token(adminapi))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["@odata.context"].endswith(
        f"/adminapi/v2.0/{adminapi.info.tenant_id}/$metadata#OrganizationConfig/$entity"
    )
    assert body["Guid"] == adminapi.info.tenant_id and "value" not in body


def test_accepted_domain_answers_a_list(adminapi: Sandbox) -> None:
    body = {"CmdletInput": {"CmdletName": "Get-AcceptedDomain"}}
    domains = post(adminapi, token(adminapi), "AcceptedDomain", body).json()["value"]
    assert adminapi.info.initial_domain in {d["DomainName"] for d in domains}


def test_a_token_without_manage_as_app_v2_is_refused_though_rbac_allows(adminapi: Sandbox) -> None:
    # The admin identity holds Exchange.ManageAsApp and Organization Management, not Exchange.ManageAsAppV2.
    assert "Exchange.ManageAsAppV2" in error(post(adminapi, token(adminapi, "admin")), 401)["message"]


def test_without_rbac_or_a_role_a_valid_token_gets_403() -> None:
    with Sandbox("adminapi-rbac-missing") as sb:
        assert error(post(sb, token(sb)), 403)["code"] == "Forbidden"


def test_only_the_endpoint_cmdlet_without_parameters_and_with_a_routing_hint(adminapi: Sandbox) -> None:
    access = token(adminapi)
    other = {"CmdletInput": {"CmdletName": "Get-Mailbox"}}
    assert "not supported by the endpoint" in error(post(adminapi, access, body=other), 400)["message"]
    with_parameters = {"CmdletInput": {"CmdletName": "Get-OrganizationConfig", "Parameters": {"Identity": "x"}}}
    assert "No parameters" in error(post(adminapi, access, body=with_parameters), 400)["message"]
    error(post(adminapi, access, body={"CmdletInput": 3}), 400)
    error(post(adminapi, access, "InvokeCommand"), 404)
    assert "X-AnchorMailbox" in error(post(adminapi, access, headers={"X-AnchorMailbox": ""}), 400)["message"]


def test_post_only_and_tokens_for_exchange_of_this_tenant(adminapi: Sandbox) -> None:
    url = f"{adminapi.info.exchange_url}/adminapi/v2.0/{adminapi.info.tenant_id}/OrganizationConfig"
    client = Client(adminapi, token(adminapi))
    assert client.session.get(url, headers=client.headers(ANCHOR), timeout=30).status_code == 405
    error(post(adminapi, token(adminapi, "auditor", GRAPH_SCOPE)), 401)
    error(post(adminapi, ""), 401)
    error(post(adminapi, token(adminapi), tenant="other.onmicrosoft.com"), 401)
