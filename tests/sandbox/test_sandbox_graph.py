"""The sandbox's Microsoft Graph: reads, writes, $batch, paging, permissions and bad input."""

from __future__ import annotations

import base64
import hashlib
import json

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sandboxkit import GRAPH_SCOPE, Client, acquire, claims, token

from cbacheck import wellknown
from cbacheck.sandbox import Sandbox


def app_id(sb: Sandbox, role: str = "under_test") -> str:
    return sb.identities[role].app_id


def sp_id(sb: Sandbox, role: str = "under_test") -> str:
    sp = sb.state.service_principal(app_id=app_id(sb, role))
    assert sp is not None
    return str(sp["id"])


def exo_sp_id(sb: Sandbox) -> str:
    sp = sb.state.service_principal(app_id=wellknown.EXCHANGE_ONLINE_APP_ID)
    assert sp is not None
    return str(sp["id"])


def graph_error(resp: object, status: int, code: str) -> str:
    assert getattr(resp, "status_code", None) == status, getattr(resp, "text", "")
    body = resp.json()  # type: ignore[attr-defined]
    error = body["error"]
    assert error["code"] == code, error
    inner = error["innerError"]
    assert inner["request-id"] == resp.headers["request-id"]  # type: ignore[attr-defined]
    assert inner["client-request-id"] and inner["date"]
    return str(error["message"])


# --- applications --------------------------------------------------------------------------------


def test_filter_by_app_id_returns_the_collection_shape(healthy: Sandbox, auditor: Client) -> None:
    resp = auditor.graph("GET", "/applications", params={"$filter": f"appId eq '{app_id(healthy)}'"})
    body = resp.json()
    assert body["@odata.context"] == f"{healthy.info.graph_url}/v1.0/$metadata#applications"
    assert [a["appId"] for a in body["value"]] == [app_id(healthy)]
    app = body["value"][0]
    assert app["signInAudience"] == "AzureADMyOrg" and app["passwordCredentials"] == []
    assert app["keyCredentials"][0]["key"] is None  # key only with $select=keyCredentials
    assert app["keyCredentials"][0]["type"] == "AsymmetricX509Cert"


def test_filter_without_match_is_an_empty_collection(auditor: Client) -> None:
    resp = auditor.graph("GET", "/applications", params={"$filter": "appId eq '00000000-1111-2222-3333-444444444444'"})
    assert resp.status_code == 200 and resp.json()["value"] == []


def test_select_keycredentials_returns_the_certificate_bytes(healthy: Sandbox, auditor: Client) -> None:
    ident = healthy.identities["under_test"]
    resp = auditor.graph(
        "GET", f"/applications(appId='{ident.app_id}')", params={"$select": "id,appId,displayName,keyCredentials"}
    )
    body = resp.json()
    assert body["@odata.context"].endswith("$metadata#applications(id,appId,displayName,keyCredentials)/$entity")
    assert set(body) == {"@odata.context", "id", "appId", "displayName", "keyCredentials"}
    cred = body["keyCredentials"][0]
    der = base64.b64decode(cred["key"])

    assert hashlib.sha1(der).hexdigest().upper() == ident.thumbprint_sha1
    assert base64.b64decode(cred["customKeyIdentifier"]).hex().upper() == ident.thumbprint_sha1


def test_lists_return_key_null_even_with_select_keycredentials(auditor: Client) -> None:
    # "Returned only on $select for a single object" (https://learn.microsoft.com/graph/api/resources/keycredential)
    body = auditor.graph("GET", "/applications", params={"$select": "appId,keyCredentials"}).json()
    creds = [c for a in body["value"] for c in a["keyCredentials"]]
    assert creds and all(c["key"] is None and c["keyId"] for c in creds)
    body = auditor.graph("GET", "/applications", params={"$select": "appId,displayName"}).json()
    assert all(set(a) == {"appId", "displayName"} for a in body["value"])


def test_application_by_object_id_and_by_app_id_are_the_same(healthy: Sandbox, auditor: Client) -> None:
    by_app = auditor.graph("GET", f"/applications(appId='{app_id(healthy)}')").json()
    by_id = auditor.graph("GET", f"/applications/{by_app['id']}").json()
    assert by_app == by_id
    assert by_id["@odata.context"] == f"{healthy.info.graph_url}/v1.0/$metadata#applications/$entity"


def test_missing_application_is_404_request_resource_not_found(auditor: Client) -> None:
    missing = "11111111-2222-3333-4444-555555555555"
    for path in (f"/applications/{missing}", f"/applications(appId='{missing}')"):
        message = graph_error(auditor.graph("GET", path), 404, "Request_ResourceNotFound")
        assert message.startswith(f"Resource '{missing}' does not exist")


def test_startswith_and_display_name_filters(auditor: Client) -> None:
    names = [
        a["displayName"]
        for a in auditor.graph("GET", "/applications", params={"$filter": "startswith(displayName,'cbacheck')"}).json()[
            "value"
        ]
    ]
    assert sorted(names) == ["cbacheck admin", "cbacheck auditor"]
    body = auditor.graph("GET", "/applications", params={"$filter": "displayName eq 'cbacheck admin'"}).json()
    assert len(body["value"]) == 1


# --- service principals and grants -----------------------------------------------------------


def test_exchange_service_principal_has_its_app_roles(healthy: Sandbox, auditor: Client) -> None:
    body = auditor.graph(
        "GET",
        f"/servicePrincipals(appId='{wellknown.EXCHANGE_ONLINE_APP_ID}')",
        params={"$select": "id,appId,displayName,appRoles"},
    ).json()
    assert body["displayName"] == wellknown.EXCHANGE_ONLINE_DISPLAY_NAME
    roles = {r["value"]: r["id"] for r in body["appRoles"]}
    assert roles[wellknown.EXCHANGE_MANAGE_AS_APP] == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
    assert roles[wellknown.FULL_ACCESS_AS_APP] == wellknown.FULL_ACCESS_AS_APP_ROLE_ID


def test_graph_service_principal_has_every_known_permission(auditor: Client) -> None:
    body = auditor.graph("GET", f"/servicePrincipals(appId='{wellknown.MICROSOFT_GRAPH_APP_ID}')").json()
    expected = wellknown.GRAPH_PERMISSION_IDS | wellknown.GRAPH_MAILBOX_PERMISSION_IDS
    assert {r["value"]: r["id"] for r in body["appRoles"]} == expected


def test_service_principal_list_filter_and_account_enabled(healthy: Sandbox, auditor: Client) -> None:
    body = auditor.graph(
        "GET", "/servicePrincipals", params={"$filter": f"appId eq '{app_id(healthy)}'", "$select": "id,accountEnabled"}
    ).json()
    assert body["value"] == [{"id": sp_id(healthy), "accountEnabled": True}]


def test_app_role_assignments_show_the_exchange_consent(healthy: Sandbox, auditor: Client) -> None:
    body = auditor.graph("GET", f"/servicePrincipals/{sp_id(healthy)}/appRoleAssignments").json()
    assert body["@odata.context"].endswith(f"$metadata#servicePrincipals('{sp_id(healthy)}')/appRoleAssignments")
    [grant] = body["value"]
    assert grant["resourceId"] == exo_sp_id(healthy)
    assert grant["appRoleId"] == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
    assert grant["principalType"] == "ServicePrincipal"
    assert grant["resourceDisplayName"] == wellknown.EXCHANGE_ONLINE_DISPLAY_NAME
    assigned_to = auditor.graph("GET", f"/servicePrincipals/{exo_sp_id(healthy)}/appRoleAssignedTo").json()
    # The auditor holds Exchange.ManageAsApp too (it reads the app's Exchange RBAC).
    assert [a["id"] for a in assigned_to["value"] if a["principalId"] == sp_id(healthy)] == [grant["id"]]


# --- directory roles -------------------------------------------------------------------------------


def test_role_assignments_filter_by_principal_with_role_definition(healthy: Sandbox, auditor: Client) -> None:
    resp = auditor.graph(
        "GET",
        "/roleManagement/directory/roleAssignments",
        params={"$filter": f"principalId eq '{sp_id(healthy)}'", "$expand": "roleDefinition"},
    )
    body = resp.json()
    assert body["@odata.context"].endswith("$metadata#roleManagement/directory/roleAssignments(roleDefinition())")
    [assignment] = body["value"]
    assert assignment["roleDefinitionId"] == wellknown.EXCHANGE_ADMINISTRATOR
    assert assignment["directoryScopeId"] == "/" and assignment["resourceScope"] == "/"
    definition = assignment["roleDefinition"]
    assert definition["displayName"] == "Exchange Administrator"
    assert definition["templateId"] == definition["id"] == wellknown.EXCHANGE_ADMINISTRATOR


def test_role_definitions_are_built_in(auditor: Client) -> None:
    body = auditor.graph("GET", "/roleManagement/directory/roleDefinitions").json()
    assert {d["id"] for d in body["value"]} >= set(wellknown.DIRECTORY_ROLE_NAMES)
    one = auditor.graph("GET", f"/roleManagement/directory/roleDefinitions/{wellknown.SECURITY_READER}").json()
    assert one["displayName"] == "Security Reader" and one["isBuiltIn"] is True


def test_role_eligibility_schedules_are_listed() -> None:
    with Sandbox("role-eligible-only") as sb:
        client = Client(sb, token(sb, "auditor", GRAPH_SCOPE))
        body = client.graph(
            "GET",
            "/roleManagement/directory/roleEligibilitySchedules",
            params={"$filter": f"principalId eq '{sp_id(sb)}'", "$expand": "roleDefinition"},
        ).json()
        [schedule] = body["value"]
        assert schedule["roleDefinitionId"] == wellknown.EXCHANGE_ADMINISTRATOR
        assert schedule["roleDefinition"]["displayName"] == "Exchange Administrator"
        assert schedule["scheduleInfo"]["expiration"]["type"] == "noExpiration"
        active = client.graph(
            "GET", "/roleManagement/directory/roleAssignments", params={"$filter": f"principalId eq '{sp_id(sb)}'"}
        ).json()
        assert active["value"] == []


def test_role_eligibility_needs_a_p2_or_governance_plan_in_the_organizations_assigned_plans() -> None:
    with Sandbox("no-p2") as sb:
        client = Client(sb, token(sb, "auditor", GRAPH_SCOPE))
        plans = client.graph("GET", "/organization").json()["value"][0]["assignedPlans"]
        assert {p["servicePlanId"] for p in plans if p["capabilityStatus"] == "Enabled"} == {
            "efb87545-963c-4e0d-99df-69c6916d9eb0",
            "41781fb2-bc02-4b7c-bd55-b576c07bb09d",
        }
        answer = client.graph(
            "GET",
            "/roleManagement/directory/roleEligibilitySchedules",
            params={"$filter": f"principalId eq '{sp_id(sb)}'"},
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "AadPremiumLicenseRequired"
        assert "Microsoft Entra ID P2 or Microsoft Entra ID Governance" in answer.json()["error"]["message"]
        assert client.graph("GET", "/roleManagement/directory/roleAssignments").status_code == 200


# --- organization and domains ----------------------------------------------------------------------


def test_organization_lists_verified_domains(healthy: Sandbox, auditor: Client) -> None:
    body = auditor.graph("GET", "/organization").json()
    [org] = body["value"]
    assert org["id"] == healthy.info.tenant_id
    initial = [d["name"] for d in org["verifiedDomains"] if d["isInitial"]]
    assert initial == [healthy.info.initial_domain]
    one = auditor.graph("GET", f"/organization/{healthy.info.tenant_id}").json()
    assert one["id"] == healthy.info.tenant_id


def test_domains_need_a_domain_permission(auditor: Client) -> None:
    message = graph_error(auditor.graph("GET", "/domains"), 403, "Authorization_RequestDenied")
    assert message == "Insufficient privileges to complete the operation."


def test_domains_readable_once_domain_read_all_is_granted(fresh: Sandbox) -> None:
    admin = Client(fresh, token(fresh, "admin", GRAPH_SCOPE))
    graph_sp = fresh.state.service_principal(app_id=wellknown.MICROSOFT_GRAPH_APP_ID)
    assert graph_sp is not None
    resp = admin.graph(
        "POST",
        f"/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo",
        json={
            "principalId": sp_id(fresh, "auditor"),
            "resourceId": graph_sp["id"],
            "appRoleId": wellknown.GRAPH_PERMISSION_IDS["Domain.Read.All"],
        },
    )
    assert resp.status_code == 201, resp.text
    auditor = Client(fresh, token(fresh, "auditor", GRAPH_SCOPE))
    body = auditor.graph("GET", "/domains").json()
    assert {d["id"]: d["isInitial"] for d in body["value"]}[fresh.info.initial_domain] is True
    one = auditor.graph("GET", f"/domains/{fresh.info.initial_domain}").json()
    assert one["isVerified"] is True


# --- paging -----------------------------------------------------------------------------------------


def test_top_pages_with_next_link_until_the_end(auditor: Client) -> None:
    everything = [s["id"] for s in auditor.graph("GET", "/servicePrincipals").json()["value"]]
    assert len(everything) >= 5
    seen: list[str] = []
    url = "/servicePrincipals?$top=2&$select=id"
    pages = 0
    while url:
        body = auditor.graph("GET", url).json()
        assert len(body["value"]) <= 2
        seen += [s["id"] for s in body["value"]]
        url = body.get("@odata.nextLink")
        if url:
            assert url.startswith(auditor.sb.info.graph_url + "/v1.0/servicePrincipals?")
            assert "%24top=2" in url or "$top=2" in url
        pages += 1
    assert seen == everything and pages == (len(everything) + 1) // 2


def test_count_is_on_the_first_page_only(auditor: Client) -> None:
    eventual = {"ConsistencyLevel": "eventual"}
    body = auditor.graph("GET", "/servicePrincipals", params={"$top": "1", "$count": "true"}, headers=eventual).json()
    assert body["@odata.count"] >= 5
    assert "@odata.count" not in auditor.graph("GET", body["@odata.nextLink"], headers=eventual).json()


def test_count_of_directory_objects_needs_consistency_level_eventual(auditor: Client) -> None:
    answer = auditor.graph("GET", "/applications", params={"$count": "true"})
    assert graph_error(answer, 400, "Request_BadRequest") == "$count is not currently supported."


@pytest.mark.parametrize("top", ["0", "1000", "ten"])
def test_page_size_outside_1_to_999_is_400(auditor: Client, top: str) -> None:
    message = graph_error(auditor.graph("GET", "/applications", params={"$top": top}), 400, "BadRequest")
    assert "Must be between 1 and 999" in message


def test_forged_skiptoken_is_400(auditor: Client) -> None:
    graph_error(auditor.graph("GET", "/applications", params={"$skiptoken": "abc"}), 400, "BadRequest")


# --- $batch -------------------------------------------------------------------------------------


def test_batch_runs_requests_with_per_item_status(healthy: Sandbox, auditor: Client) -> None:
    before = healthy.stats.snapshot()
    resp = auditor.graph(
        "POST",
        "/$batch",
        json={
            "requests": [
                {"id": "1", "method": "GET", "url": f"/applications(appId='{app_id(healthy)}')?$select=id,appId"},
                {"id": "2", "method": "GET", "url": "/organization", "dependsOn": ["1"]},
                {"id": "3", "method": "GET", "url": "/domains"},
                {"id": "4", "method": "GET", "url": "/nosuch"},
            ]
        },
    )
    assert resp.status_code == 200
    by_id = {r["id"]: r for r in resp.json()["responses"]}
    assert by_id["1"]["status"] == 200 and by_id["1"]["body"]["appId"] == app_id(healthy)
    assert by_id["2"]["status"] == 200 and by_id["2"]["body"]["value"][0]["id"] == healthy.info.tenant_id
    assert by_id["3"]["status"] == 403 and by_id["3"]["body"]["error"]["code"] == "Authorization_RequestDenied"
    assert by_id["4"]["status"] == 404
    after = healthy.stats.snapshot()
    assert after["graph_requests"] - before["graph_requests"] == 1
    assert after["graph_batch_items"] - before["graph_batch_items"] == 4


def test_batch_dependents_of_a_failed_request_are_424(auditor: Client) -> None:
    resp = auditor.graph(
        "POST",
        "/$batch",
        json={
            "requests": [
                {"id": "a", "method": "GET", "url": "/applications/11111111-2222-3333-4444-555555555555"},
                {"id": "b", "method": "GET", "url": "/organization", "dependsOn": ["a"]},
                {"id": "c", "method": "GET", "url": "organization", "dependsOn": ["b"]},
            ]
        },
    )
    statuses = {r["id"]: r["status"] for r in resp.json()["responses"]}
    assert statuses == {"a": 404, "b": 424, "c": 424}


def test_batch_of_more_than_20_is_400(auditor: Client) -> None:
    requests_ = [{"id": str(i), "method": "GET", "url": "/organization"} for i in range(21)]
    message = graph_error(auditor.graph("POST", "/$batch", json={"requests": requests_}), 400, "BadRequest")
    assert "limit is 20" in message
    ok = auditor.graph("POST", "/$batch", json={"requests": requests_[:20]})
    assert ok.status_code == 200 and len(ok.json()["responses"]) == 20


def test_batch_ids_must_be_unique_ignoring_case(auditor: Client) -> None:
    body = {
        "requests": [
            {"id": "x", "method": "GET", "url": "/organization"},
            {"id": "X", "method": "GET", "url": "/organization"},
        ]
    }
    graph_error(auditor.graph("POST", "/$batch", json=body), 400, "BadRequest")


def test_batch_writes_need_content_type_and_run_in_order(fresh: Sandbox) -> None:
    admin = Client(fresh, token(fresh, "admin", GRAPH_SCOPE))
    body = {
        "requests": [
            {"id": "1", "method": "POST", "url": "/applications", "body": {"displayName": "no header"}},
            {
                "id": "2",
                "method": "POST",
                "url": "/applications",
                "headers": {"Content-Type": "application/json"},
                "body": {"displayName": "batched"},
            },
            {"id": "3", "method": "GET", "url": "/applications?$filter=displayName eq 'batched'", "dependsOn": ["2"]},
        ]
    }
    responses = {r["id"]: r for r in admin.graph("POST", "/$batch", json=body).json()["responses"]}
    assert responses["1"]["status"] == 400
    assert responses["2"]["status"] == 201
    assert [a["displayName"] for a in responses["3"]["body"]["value"]] == ["batched"]


# --- writes -------------------------------------------------------------------------------------------


def test_demo_broken_tenant_is_fixed_through_graph_writes() -> None:
    """The fixes cbacheck plans, applied with the admin identity, make Exchange accept the app."""
    with Sandbox("demo-broken") as sb:
        ident = sb.identities["under_test"]
        admin = Client(sb, token(sb, "admin", GRAPH_SCOPE))
        app = admin.graph(
            "GET", f"/applications(appId='{ident.app_id}')", params={"$select": "id,keyCredentials"}
        ).json()
        assert app["keyCredentials"] == []

        der = x509.load_pem_x509_certificate(ident.cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
        new_key = {"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.b64encode(der).decode()}
        assert admin.graph("PATCH", f"/applications/{app['id']}", json={"keyCredentials": [new_key]}).status_code == 204
        rra = [
            {
                "resourceAppId": wellknown.EXCHANGE_ONLINE_APP_ID,
                "resourceAccess": [{"id": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID, "type": "Role"}],
            }
        ]
        patch = admin.graph("PATCH", f"/applications(appId='{ident.app_id}')", json={"requiredResourceAccess": rra})
        assert patch.status_code == 204
        grant = admin.graph(
            "POST",
            f"/servicePrincipals/{sp_id(sb)}/appRoleAssignments",
            json={
                "principalId": sp_id(sb),
                "resourceId": exo_sp_id(sb),
                "appRoleId": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
            },
        )
        assert (
            grant.status_code == 201 and grant.json()["resourceDisplayName"] == wellknown.EXCHANGE_ONLINE_DISPLAY_NAME
        )
        role = admin.graph(
            "POST",
            "/roleManagement/directory/roleAssignments",
            json={
                "@odata.type": "#microsoft.graph.unifiedRoleAssignment",
                "roleDefinitionId": wellknown.EXCHANGE_ADMINISTRATOR,
                "principalId": sp_id(sb),
                "directoryScopeId": "/",
            },
        )
        assert role.status_code == 201 and role.json()["@odata.context"].endswith("roleAssignments/$entity")
        exchange_token = token(sb)
        assert claims(exchange_token)["roles"] == [wellknown.EXCHANGE_MANAGE_AS_APP]
        assert claims(exchange_token)["wids"] == [wellknown.EXCHANGE_ADMINISTRATOR]
        assert Client(sb, exchange_token).exchange("Get-OrganizationConfig").status_code == 200
        dump = sb.dump()
        assert dump["roleAssignments"][-1]["principalId"] == sp_id(sb)


def test_patch_key_credentials_replaces_the_collection(fresh: Sandbox) -> None:
    admin = Client(fresh, token(fresh, "admin", GRAPH_SCOPE))
    ident = fresh.identities["under_test"]
    path = f"/applications(appId='{ident.app_id}')"
    other = fresh.identities["auditor"]

    der = x509.load_pem_x509_certificate(other.cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    new_key = {
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
        "key": base64.b64encode(der).decode(),
        "displayName": "CN=new",
    }
    existing = admin.graph("GET", path, params={"$select": "keyCredentials"}).json()["keyCredentials"]
    # Keep the existing key by keyId with key null (the sandbox's documented choice), add one.
    kept = {"keyId": existing[0]["keyId"], "key": None, "type": "AsymmetricX509Cert", "usage": "Verify"}
    assert admin.graph("PATCH", path, json={"keyCredentials": [kept, new_key]}).status_code == 204
    creds = admin.graph("GET", path, params={"$select": "keyCredentials"}).json()["keyCredentials"]
    assert [c["keyId"] for c in creds][0] == existing[0]["keyId"] and len(creds) == 2
    assert creds[0]["key"] == existing[0]["key"]
    assert creds[1]["displayName"] == "CN=new"
    assert base64.b64decode(creds[1]["customKeyIdentifier"]) == hashlib.sha1(der).digest()
    # Only the new key: the old one is gone and the local certificate no longer signs in.
    assert admin.graph("PATCH", path, json={"keyCredentials": [new_key]}).status_code == 204
    creds = admin.graph("GET", path, params={"$select": "keyCredentials"}).json()["keyCredentials"]
    assert len(creds) == 1 and creds[0]["keyId"] != existing[0]["keyId"]

    assert acquire(fresh)["error_codes"] == [700027]


def test_patch_rejects_bad_key_credentials(fresh: Sandbox) -> None:
    admin = Client(fresh, token(fresh, "admin", GRAPH_SCOPE))
    path = f"/applications(appId='{app_id(fresh)}')"
    bad = admin.graph(
        "PATCH",
        path,
        json={"keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Verify", "key": "bm90IGEgY2VydA=="}]},
    )
    assert "Invalid certificate" in graph_error(bad, 400, "Request_BadRequest")
    usage = admin.graph(
        "PATCH", path, json={"keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Encrypt", "key": "x"}]}
    )
    assert 'The value for the property "usage"' in graph_error(usage, 400, "Request_BadRequest")
    unknown = admin.graph("PATCH", path, json={"colour": "blue"})
    assert "The property 'colour' does not exist" in graph_error(unknown, 400, "BadRequest")


def test_create_application_and_service_principal(fresh: Sandbox) -> None:
    admin = Client(fresh, token(fresh, "admin", GRAPH_SCOPE))
    created = admin.graph("POST", "/applications", json={"displayName": "new app", "signInAudience": "AzureADMyOrg"})
    assert created.status_code == 201
    body = created.json()
    assert body["@odata.context"].endswith("$metadata#applications/$entity")
    assert body["displayName"] == "new app" and body["publisherDomain"] == fresh.info.initial_domain
    sp = admin.graph("POST", "/servicePrincipals", json={"appId": body["appId"]})
    assert sp.status_code == 201 and sp.json()["appId"] == body["appId"]
    again = admin.graph("POST", "/servicePrincipals", json={"appId": body["appId"]})
    graph_error(again, 409, "Request_MultipleObjectsWithSameKeyValue")
    with_key_id = admin.graph(
        "POST",
        "/applications",
        json={"displayName": "x", "keyCredentials": [{"keyId": "11111111-2222-3333-4444-555555555555", "key": "x"}]},
    )
    assert (
        graph_error(with_key_id, 400, "Request_BadRequest")
        == "The property KeyId is not supported for Create Application flow."
    )


def test_disable_and_delete_change_what_the_token_endpoint_says(fresh: Sandbox) -> None:
    admin = Client(fresh, token(fresh, "admin", GRAPH_SCOPE))

    assert admin.graph("PATCH", f"/servicePrincipals/{sp_id(fresh)}", json={"accountEnabled": False}).status_code == 204
    assert acquire(fresh)["error_codes"] == [7000112]
    app = admin.graph("GET", f"/applications(appId='{app_id(fresh)}')").json()
    assert admin.graph("DELETE", f"/applications/{app['id']}").status_code == 204
    assert acquire(fresh)["error_codes"] == [700016]  # the application is gone, not only its principal
    graph_error(admin.graph("GET", f"/applications/{app['id']}"), 404, "Request_ResourceNotFound")


def test_grant_and_revoke_consent_and_roles(fresh: Sandbox) -> None:
    admin = Client(fresh, token(fresh, "admin", GRAPH_SCOPE))
    grants = admin.graph("GET", f"/servicePrincipals/{sp_id(fresh)}/appRoleAssignments").json()["value"]
    duplicate = admin.graph(
        "POST",
        f"/servicePrincipals/{exo_sp_id(fresh)}/appRoleAssignedTo",
        json={
            "principalId": sp_id(fresh),
            "resourceId": exo_sp_id(fresh),
            "appRoleId": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
        },
    )
    graph_error(duplicate, 400, "Request_BadRequest")
    gone = admin.graph("DELETE", f"/servicePrincipals/{sp_id(fresh)}/appRoleAssignments/{grants[0]['id']}")
    assert gone.status_code == 204
    assert "roles" not in claims(token(fresh))
    roles = admin.graph(
        "GET", "/roleManagement/directory/roleAssignments", params={"$filter": f"principalId eq '{sp_id(fresh)}'"}
    ).json()
    rid = roles["value"][0]["id"]
    assert admin.graph("GET", f"/roleManagement/directory/roleAssignments/{rid}").json()["id"] == rid
    assert admin.graph("DELETE", f"/roleManagement/directory/roleAssignments/{rid}").status_code == 204
    assert "wids" not in claims(token(fresh))
    scoped = admin.graph(
        "POST",
        "/roleManagement/directory/roleAssignments",
        json={
            "roleDefinitionId": wellknown.EXCHANGE_ADMINISTRATOR,
            "principalId": sp_id(fresh),
            "directoryScopeId": "/administrativeUnits/c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e44",
        },
    )
    assert scoped.status_code == 201
    assert "wids" not in claims(token(fresh))  # an administrative-unit scope is not tenant-wide


# --- authentication and permissions ----------------------------------------------------------------


def test_no_token_is_401_invalid_authentication_token(healthy: Sandbox) -> None:
    resp = Client(healthy).graph("GET", "/applications")
    assert graph_error(resp, 401, "InvalidAuthenticationToken") == "Access token is empty."


def test_exchange_token_is_refused_by_graph(healthy: Sandbox, exchange: Client) -> None:
    client = Client(healthy, exchange.access_token)
    assert "Invalid audience" in graph_error(client.graph("GET", "/applications"), 401, "InvalidAuthenticationToken")


def test_tampered_or_expired_token_is_401(healthy: Sandbox, auditor_token: str) -> None:
    head, body, sig = auditor_token.split(".")
    forged_claims = json.loads(base64.urlsafe_b64decode(body + "==")) | {"roles": ["Directory.ReadWrite.All"]}
    forged_body = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).decode().rstrip("=")
    forged = Client(healthy, f"{head}.{forged_body}.{sig}")
    graph_error(forged.graph("GET", "/applications"), 401, "InvalidAuthenticationToken")
    expired_claims = dict(claims(auditor_token), exp=1_000_000, nbf=900_000, iat=900_000)
    expired = Client(healthy, healthy.signer.sign(expired_claims))
    assert "expired" in graph_error(expired.graph("GET", "/applications"), 401, "InvalidAuthenticationToken")
    other_key = jwt.encode(
        claims(auditor_token),
        "a-shared-secret-that-is-long-enough!",
        algorithm="HS256",
        headers={"kid": healthy.signer.kid},
    )
    graph_error(Client(healthy, other_key).graph("GET", "/applications"), 401, "InvalidAuthenticationToken")


def test_identity_without_graph_permissions_is_403_but_reads_itself(healthy: Sandbox) -> None:
    client = Client(healthy, token(healthy, "under_test", GRAPH_SCOPE))
    graph_error(client.graph("GET", "/applications"), 403, "Authorization_RequestDenied")
    graph_error(client.graph("GET", "/roleManagement/directory/roleAssignments"), 403, "Authorization_RequestDenied")
    graph_error(client.graph("GET", "/organization"), 403, "Authorization_RequestDenied")
    own = client.graph("GET", f"/applications(appId='{app_id(healthy)}')")
    assert own.status_code == 200 and own.json()["appId"] == app_id(healthy)
    assert client.graph("GET", f"/servicePrincipals/{sp_id(healthy)}").status_code == 200
    graph_error(
        client.graph("GET", f"/applications(appId='{app_id(healthy, 'admin')}')"), 403, "Authorization_RequestDenied"
    )


def test_auditor_cannot_write(healthy: Sandbox, auditor: Client) -> None:
    resp = auditor.graph("PATCH", f"/applications(appId='{app_id(healthy)}')", json={"displayName": "x"})
    graph_error(resp, 403, "Authorization_RequestDenied")
    resp = auditor.graph("POST", "/roleManagement/directory/roleAssignments", json={})
    graph_error(resp, 403, "Authorization_RequestDenied")


# --- bad input ------------------------------------------------------------------------------------


def test_malformed_json_is_400(fresh: Sandbox) -> None:
    admin = Client(fresh, token(fresh, "admin", GRAPH_SCOPE))
    resp = admin.graph(
        "PATCH",
        f"/applications(appId='{app_id(fresh)}')",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert "Unable to read JSON request payload" in graph_error(resp, 400, "BadRequest")
    resp = admin.graph("POST", "/$batch", data=b"[1,2", headers={"Content-Type": "application/json"})
    graph_error(resp, 400, "BadRequest")


def test_unknown_route_is_404_and_wrong_method_405(auditor: Client) -> None:
    assert "'nosuch'" in graph_error(auditor.graph("GET", "/nosuch/things"), 404, "BadRequest")
    graph_error(auditor.graph("PUT", "/organization"), 405, "Request_BadRequest")
    resp = auditor.session.get(f"{auditor.sb.info.login_url}/nothing/here")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "BadRequest"


@pytest.mark.parametrize(
    ("params", "code", "needle"),
    [
        ({"$orderby": "displayName"}, "Request_UnsupportedQuery", "$orderby"),
        ({"$foo": "1"}, "BadRequest", "$foo"),
        ({"$filter": "keyCredentials/any(k:k/keyId eq 'x')"}, "Request_UnsupportedQuery", "keyCredentials"),
        ({"$filter": "colour eq 'blue'"}, "Request_UnsupportedQuery", "colour"),
        ({"$filter": "appId eq"}, "BadRequest", "filter"),
        ({"$select": "id,colour"}, "BadRequest", "Could not find a property named 'colour'"),
        ({"$expand": "owners"}, "BadRequest", "owners"),
    ],
)
def test_unsupported_or_malformed_query_is_400(auditor: Client, params: dict[str, str], code: str, needle: str) -> None:
    assert needle in graph_error(auditor.graph("GET", "/applications", params=params), 400, code)


def test_oversized_body_is_413_and_the_server_keeps_serving(fresh: Sandbox) -> None:
    admin = Client(fresh, token(fresh, "admin", GRAPH_SCOPE))
    big = b'{"displayName": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    resp = admin.graph("POST", "/applications", data=big, headers={"Content-Type": "application/json"})
    graph_error(resp, 413, "RequestEntityTooLarge")
    assert admin.graph("GET", "/applications").status_code == 200


def test_every_response_carries_request_ids(healthy: Sandbox, auditor: Client) -> None:
    resp = auditor.graph("GET", "/organization", headers={"client-request-id": "abc-123"})
    assert resp.headers["client-request-id"] == "abc-123" and resp.headers["request-id"]
    resp = Client(healthy).raw("GET", f"/{healthy.tenant}/v2.0/.well-known/openid-configuration")
    assert resp.headers["request-id"]


def test_unexpected_errors_become_500_and_the_server_survives(fresh: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    auditor = Client(fresh, token(fresh, "auditor", GRAPH_SCOPE))

    def boom(request: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setitem(fresh.app.graph.handlers["organizations"], "GET", boom)
    graph_error(auditor.graph("GET", "/organization"), 500, "InternalServerError")
    assert auditor.graph("GET", "/applications").status_code == 200


# --- reports and policies (cbacheck audit) ------------------------------------------------------


def test_sign_in_activities_and_the_app_management_policy_need_their_permissions(fresh: Sandbox) -> None:
    reports = f"{fresh.info.graph_url}/beta/reports/servicePrincipalSignInActivities"
    auditor = Client(fresh, token(fresh, "auditor", GRAPH_SCOPE))
    assert "AuditLog" not in str(claims(token(fresh, "auditor", GRAPH_SCOPE)).get("roles"))
    graph_error(auditor.graph("GET", reports), 403, "Authorization_RequestDenied")
    graph_error(auditor.graph("GET", "/policies/defaultAppManagementPolicy"), 403, "Authorization_RequestDenied")
    fresh.state.sign_in_activities.append(
        {"appId": app_id(fresh), "lastSignInActivity": {"lastSignInDateTime": "2026-11-30T08:00:00Z"}}
    )
    admin = Client(fresh, token(fresh, "admin", GRAPH_SCOPE))
    graph_sp = fresh.state.service_principal(app_id=wellknown.MICROSOFT_GRAPH_APP_ID)
    assert graph_sp is not None
    for permission in ("AuditLog.Read.All", "Policy.Read.All"):
        grant = {
            "principalId": sp_id(fresh, "auditor"),
            "resourceId": graph_sp["id"],
            "appRoleId": wellknown.GRAPH_PERMISSION_IDS[permission],
        }
        resp = admin.graph("POST", f"/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo", json=grant)
        assert resp.status_code == 201, resp.text
    auditor = Client(fresh, token(fresh, "auditor", GRAPH_SCOPE))
    body = auditor.graph("GET", reports).json()
    assert body["@odata.context"].endswith("/beta/$metadata#reports/servicePrincipalSignInActivities")
    assert [item["appId"] for item in body["value"]] == [app_id(fresh)]
    policy = auditor.graph("GET", "/policies/defaultAppManagementPolicy").json()
    assert policy["isEnabled"] is False and policy["applicationRestrictions"]["passwordCredentials"] == []
