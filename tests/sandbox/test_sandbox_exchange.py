"""The sandbox's Exchange admin API: InvokeCommand, token checks and the documented 401 texts."""

from __future__ import annotations

import pytest
from sandboxkit import GRAPH_SCOPE, Client, acquire, claims, token

from cbacheck import wellknown
from cbacheck.sandbox import Sandbox


def error_of(resp: object, status: int) -> str:
    assert getattr(resp, "status_code", None) == status, getattr(resp, "text", "")
    error = resp.json()["error"]  # type: ignore[attr-defined]
    assert error["innererror"]["type"] == "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"
    assert error["details"][0]["message"] == error["message"] == error["innererror"]["message"]
    return str(error["message"])


def test_get_organization_config_has_the_documented_success_shape(healthy: Sandbox, exchange: Client) -> None:
    resp = exchange.exchange("Get-OrganizationConfig")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json;odata.metadata=minimal")
    for header in ("Request-Id", "Rate-Limit-Limit", "Rate-Limit-Remaining", "Rate-Limit-Reset"):
        assert resp.headers[header]
    body = resp.json()
    assert body["@odata.context"].endswith(
        f"/adminapi/beta/{healthy.organization}/$metadata#Collection(Exchange.GenericHashTable)"
    )
    assert body["adminapi.warnings@odata.type"] == "#Collection(String)"
    assert body["@adminapi.warnings"] == []
    [org] = body["value"]
    assert org["Name"] == healthy.info.initial_domain and org["Guid"] == healthy.info.tenant_id


def test_tenant_in_the_path_may_be_the_id_or_the_initial_domain(healthy: Sandbox, exchange: Client) -> None:
    for tenant in (healthy.info.tenant_id, healthy.info.initial_domain):
        assert exchange.exchange("Get-AcceptedDomain", tenant=tenant).status_code == 200


def test_get_accepted_domain_lists_the_tenant_domains(healthy: Sandbox, exchange: Client) -> None:
    domains = {d["DomainName"]: d for d in exchange.exchange("Get-AcceptedDomain").json()["value"]}
    assert domains[healthy.info.initial_domain]["InitialDomain"] is True
    one = exchange.exchange("Get-AcceptedDomain", {"Identity": healthy.info.initial_domain}).json()["value"]
    assert [d["Name"] for d in one] == [healthy.info.initial_domain]


def test_get_mailbox_reads_mailboxes_from_state(healthy: Sandbox, exchange: Client) -> None:
    boxes = exchange.exchange("Get-Mailbox").json()["value"]
    assert [b["Alias"] for b in boxes] == [m["Alias"] for m in healthy.state.data["mailboxes"]]
    one = exchange.exchange("Get-Mailbox", {"Identity": boxes[0]["PrimarySmtpAddress"]}).json()["value"]
    assert [b["Alias"] for b in one] == [boxes[0]["Alias"]]
    assert len(exchange.exchange("Get-Mailbox", {"ResultSize": 1}).json()["value"]) == 1
    assert "couldn't be found" in error_of(exchange.exchange("Get-Mailbox", {"Identity": "nobody"}), 404)


def test_select_on_invoke_command(healthy: Sandbox, exchange: Client) -> None:
    url = f"{healthy.info.exchange_url}/adminapi/beta/{healthy.organization}/InvokeCommand?$select=Name,Guid"
    body = {"CmdletInput": {"CmdletName": "Get-OrganizationConfig", "Parameters": {}}}
    resp = exchange.session.post(url, json=body, headers=exchange.headers())
    assert set(resp.json()["value"][0]) == {"Name", "Guid"}


def test_unknown_cmdlet_and_bad_body_are_400(healthy: Sandbox, exchange: Client) -> None:
    assert "'Get-Nothing' is not recognized" in error_of(exchange.exchange("Get-Nothing"), 400)
    url = f"{healthy.info.exchange_url}/adminapi/beta/{healthy.organization}/InvokeCommand"
    for data in (b"{not json", b'{"CmdletInput": 3}', b"[]"):
        resp = exchange.session.post(url, data=data, headers=exchange.headers({"Content-Type": "application/json"}))
        error_of(resp, 400)


def test_missing_or_graph_token_is_401(healthy: Sandbox) -> None:
    assert error_of(Client(healthy).exchange("Get-OrganizationConfig"), 401) == "Access token is empty."
    graph_token = token(healthy, "under_test", GRAPH_SCOPE)
    assert "Invalid audience" in error_of(Client(healthy, graph_token).exchange("Get-OrganizationConfig"), 401)


def test_consent_missing_is_401_without_manage_as_app() -> None:
    with Sandbox("consent-missing") as sb:
        access = token(sb)
        assert "roles" not in claims(access)
        message = error_of(Client(sb, access).exchange("Get-OrganizationConfig"), 401)
        assert "Exchange.ManageAsApp" in message


@pytest.mark.parametrize("scenario", ["role-missing", "role-unsupported", "role-scoped-to-unit", "role-eligible-only"])
def test_no_supported_active_role_is_401_role_not_supported(scenario: str) -> None:
    with Sandbox(scenario) as sb:
        ident = sb.identities["under_test"]
        access = token(sb)
        wids = claims(access).get("wids", [])
        assert not set(wids) & wellknown.EXCHANGE_SUPPORTED_ROLES
        message = error_of(Client(sb, access).exchange("Get-OrganizationConfig"), 401)
        assert message == wellknown.EXCHANGE_ROLE_NOT_SUPPORTED.format(app_id=ident.app_id)


def test_role_too_weak_reads_configuration_but_not_mailboxes() -> None:
    with Sandbox("role-too-weak") as sb:
        client = Client(sb, token(sb))
        assert claims(client.access_token or "")["wids"] == [wellknown.SECURITY_READER]
        assert client.exchange("Get-OrganizationConfig").status_code == 200
        resp = client.exchange("Get-Mailbox")
        assert error_of(resp, 401) == "User is not allowed to call Get-Mailbox"
        assert resp.json()["error"]["code"] == "Unauthorized"


def test_wrong_organization_is_refused_by_the_admin_api() -> None:
    with Sandbox("wrong-organization") as sb:
        assert sb.organization != sb.info.initial_domain
        client = Client(sb, token(sb))
        assert "does not match the tenant" in error_of(client.exchange("Get-OrganizationConfig"), 401)
        ok = client.exchange("Get-OrganizationConfig", tenant=sb.info.initial_domain)
        assert ok.status_code == 200


def test_full_access_and_global_admin_scenarios_still_work() -> None:
    for scenario, role, wid in (
        ("full-access-as-app", wellknown.FULL_ACCESS_AS_APP, wellknown.EXCHANGE_ADMINISTRATOR),
        ("global-admin", wellknown.EXCHANGE_MANAGE_AS_APP, wellknown.GLOBAL_ADMINISTRATOR),
    ):
        with Sandbox(scenario) as sb:
            body = claims(token(sb))
            assert role in body["roles"] and wid in body["wids"]
            assert Client(sb, token(sb)).exchange("Get-Mailbox").status_code == 200


SC_SCOPE = f"{wellknown.SECURITY_COMPLIANCE_RESOURCE}/.default"


def test_security_compliance_token_runs_only_its_probe_cmdlet_with_a_supported_role() -> None:
    with Sandbox("sc-healthy") as sb:
        client = Client(sb, token(sb, scope=SC_SCOPE))
        resp = client.exchange(wellknown.SECURITY_COMPLIANCE_PROBE_CMDLET)
        assert resp.status_code == 200 and resp.json()["value"] == []
        # An S&C token is not an Exchange Online token: Exchange's cmdlets are not on its endpoint.
        assert "is not recognized" in error_of(client.exchange("Get-OrganizationConfig"), 400)


def test_security_compliance_refuses_exchange_administrator_and_a_missing_eop_grant() -> None:
    with Sandbox("sc-exchange-admin-only") as sb:
        ident = sb.identities["under_test"]
        message = error_of(Client(sb, token(sb, scope=SC_SCOPE)).exchange("Get-Label"), 401)
        assert message == wellknown.EXCHANGE_ROLE_NOT_SUPPORTED.format(app_id=ident.app_id)
    with Sandbox("sc-permission-missing") as sb:
        message = error_of(Client(sb, token(sb, scope=SC_SCOPE)).exchange("Get-Label"), 401)
        assert "Exchange.ManageAsApp" in message


def test_security_compliance_serves_its_own_role_groups_apart_from_exchanges() -> None:
    with Sandbox("sc-exchange-admin-only") as sb:
        auditor = sb.identities["auditor"]
        client = Client(sb, token(sb, "auditor", scope=SC_SCOPE))
        pointers = client.exchange("Get-ServicePrincipal").json()["value"]
        assert [p["AppId"] for p in pointers] == [auditor.app_id]
        groups = {g["Name"]: g for g in client.exchange("Get-RoleGroup").json()["value"]}
        assert "Compliance Administrator" in groups  # a built-in group of Security & Compliance
        assert "View-Only Organization Management" not in groups  # Exchange's, not here
        assert groups["Global Reader"]["Members"] == [pointers[0]["ObjectId"]]
        # Exchange Online's RBAC reads answer from Exchange's objects, not these.
        exchange = Client(sb, token(sb, "auditor")).exchange("Get-RoleGroup").json()["value"]
        assert "Global Reader" not in {g["Name"] for g in exchange}
        # Exchange Online's writes are not on the Security & Compliance endpoint.
        assert "is not recognized" in error_of(client.exchange("Add-RoleGroupMember"), 400)


def test_a_security_compliance_role_group_membership_lets_the_app_run_what_its_roles_hold() -> None:
    with Sandbox("sc-exchange-admin-only") as sb:
        app = sb.identities["under_test"]
        sp_id = next(sp["id"] for sp in sb.dump()["servicePrincipals"] if sp["appId"] == app.app_id)
        sb.state.compliance["servicePrincipals"].append(
            {"AppId": app.app_id, "ObjectId": sp_id, "DisplayName": "automation", "Identity": sp_id, "Name": sp_id}
        )
        client = Client(sb, token(sb, scope=SC_SCOPE))
        assert client.exchange("Get-Label").status_code == 401  # a pointer alone holds nothing
        sb.state.compliance["roleGroups"].append(
            {"Name": "Label readers", "Roles": ["Sensitivity Label Reader"], "Members": [sp_id]}
        )
        assert client.exchange("Get-Label").status_code == 200
        assert "not allowed to call Get-RoleGroup" in error_of(client.exchange("Get-RoleGroup"), 401)


def test_a_gcc_high_tenant_answers_the_us_government_resource_names_only() -> None:
    with Sandbox("gcchigh-sc-healthy") as sb:
        assert sb.dump()["cloud"] == "gcchigh"
        graph = token(sb, "auditor", scope="https://graph.microsoft.us/.default")
        assert claims(graph)["aud"] == "https://graph.microsoft.us"
        assert Client(sb, graph).graph("GET", "/applications?$select=appId").status_code == 200
        sc = token(sb, scope=f"{wellknown.SECURITY_COMPLIANCE_RESOURCE_GCCHIGH}/.default")
        assert claims(sc)["roles"] == [wellknown.EXCHANGE_MANAGE_AS_APP]
        assert Client(sb, sc).exchange("Get-Label").status_code == 200  # -Organization contosolab.onmicrosoft.us
        # The global cloud's names are not this tenant's.
        for scope in (GRAPH_SCOPE, f"{wellknown.SECURITY_COMPLIANCE_RESOURCE}/.default"):
            assert "AADSTS500011" in str(acquire(sb, "auditor", scope).get("error_description")), scope
