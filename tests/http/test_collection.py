"""collect(): every fact of links 2 to 6 from a mocked tenant, in two Graph round trips, with faults kept apart."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import responses
from mockhttp import (
    APP_ID,
    AUDITOR_ID,
    EXO,
    GRAPH,
    LOGIN,
    TENANT_ID,
    Waits,
    aadsts,
    add_identity_platform,
    fake_access_token,
    make_session,
    token_body,
)

from cbacheck import certs, wellknown
from cbacheck.collect import collect, fetch
from cbacheck.collect.graph import permission_for
from cbacheck.collect.parse import parse_organization, parse_time
from cbacheck.config import Settings
from cbacheck.facts import (
    AppRegistration,
    ExchangeProbe,
    Organization,
    ServicePrincipal,
    TenantFacts,
    TokenAttempt,
    Unavailable,
)

SP_ID = "5p000000-0000-0000-0000-000000000001"
EXO_SP_ID = "e0000000-0000-0000-0000-000000000002"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DENIED = {
    "error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}
}
NOT_FOUND = {"error": {"code": "Request_ResourceNotFound", "message": "Resource does not exist."}}


def application(cert: certs.GeneratedCertificate) -> dict[str, Any]:
    return {
        "id": "0b000000-0000-0000-0000-000000000001",
        "appId": APP_ID,
        "displayName": "Exchange automation",
        "signInAudience": "AzureADMyOrg",
        "keyCredentials": [
            {
                "keyId": "k-1",
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
                "displayName": "CN=cbacheck-http-test",
                "startDateTime": "2026-01-01T00:00:00Z",
                "endDateTime": "2027-01-01T00:00:00.1234567Z",
                "customKeyIdentifier": cert.sha1_thumbprint,
                "key": cert.der_base64,
            }
        ],
        "passwordCredentials": [],
        "requiredResourceAccess": [
            {
                "resourceAppId": wellknown.EXCHANGE_ONLINE_APP_ID,
                "resourceAccess": [{"id": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID, "type": "Role"}],
            }
        ],
    }


def first_answers(cert: certs.GeneratedCertificate) -> dict[str, tuple[int, Any]]:
    return {
        "app": (200, application(cert)),
        "app_sp": (200, {"id": SP_ID, "appId": APP_ID, "displayName": "Exchange automation", "accountEnabled": True}),
        "exchange_sp": (
            200,
            {
                "id": EXO_SP_ID,
                "appId": wellknown.EXCHANGE_ONLINE_APP_ID,
                "displayName": "Office 365 Exchange Online",
                "appRoles": [
                    {
                        "id": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
                        "value": "Exchange.ManageAsApp",
                        "displayName": "Manage Exchange As Application",
                        "allowedMemberTypes": ["Application"],
                    }
                ],
            },
        ),
        "organization": (
            200,
            {
                "value": [
                    {
                        "id": TENANT_ID,
                        "displayName": "Contoso",
                        "verifiedDomains": [
                            {"name": "contoso.com", "isInitial": False},
                            {"name": "contoso.onmicrosoft.com", "isInitial": True},
                        ],
                    }
                ]
            },
        ),
    }


def second_answers() -> dict[str, tuple[int, Any]]:
    return {
        "app_role_grants": (
            200,
            {
                "value": [
                    {
                        "id": "g-1",
                        "principalId": SP_ID,
                        "resourceId": EXO_SP_ID,
                        "resourceDisplayName": "Office 365 Exchange Online",
                        "appRoleId": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
                        "createdDateTime": "2026-01-02T00:00:00Z",
                    }
                ]
            },
        ),
        "role_assignments": (
            200,
            {
                "value": [
                    {
                        "id": "ra-1",
                        "principalId": SP_ID,
                        "roleDefinitionId": wellknown.EXCHANGE_ADMINISTRATOR,
                        "directoryScopeId": "/",
                        "roleDefinition": {
                            "id": wellknown.EXCHANGE_ADMINISTRATOR,
                            "templateId": wellknown.EXCHANGE_ADMINISTRATOR,
                            "displayName": "Exchange Administrator",
                        },
                    }
                ]
            },
        ),
        "role_eligibilities": (200, {"value": []}),
    }


class Tenant:
    """A mocked tenant: the identity platform, Graph $batch keyed by request id, and Exchange."""

    def __init__(self, mock: responses.RequestsMock, cert: certs.GeneratedCertificate) -> None:
        self.mock = mock
        self.answers = {**first_answers(cert), **second_answers()}
        self.batches: list[list[dict[str, Any]]] = []
        self.exchange_token = fake_access_token(
            aud="https://outlook.office365.com",
            appid=APP_ID,
            tid=TENANT_ID,
            oid=SP_ID,
            roles=["Exchange.ManageAsApp"],
            wids=[wellknown.EXCHANGE_ADMINISTRATOR],
        )
        self.graph_token = fake_access_token(aud="https://graph.microsoft.com", appid=AUDITOR_ID, tid=TENANT_ID)
        self.token_failure: dict[str, dict[str, Any]] = {}

    def identity_platform(self, *, instance_discovery: bool = False) -> None:
        def answer(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
            if form["client_id"] in self.token_failure:
                return 401, self.token_failure[form["client_id"]]
            if form["scope"] == "https://graph.microsoft.com/.default":
                return 200, token_body(self.graph_token)
            return 200, token_body(self.exchange_token)

        add_identity_platform(self.mock, answer, instance_discovery=instance_discovery)

    def graph(self, batches: int = 2) -> None:
        def batch(request: Any) -> tuple[int, dict[str, str], str]:
            items = json.loads(request.body)["requests"]
            self.batches.append(items)
            assert request.headers["Authorization"] == f"Bearer {self.graph_token}"
            out = []
            for item in items:
                status, body = self.answers[item["id"]]
                out.append(
                    {"id": item["id"], "status": status, "headers": {"request-id": f"r-{item['id']}"}, "body": body}
                )
            return 200, {"request-id": "outer"}, json.dumps({"responses": out})

        self.mock.add_callback(responses.POST, f"{GRAPH}/$batch", callback=batch)

    def exchange(self, status: int = 200, body: Any = None) -> None:
        self.mock.post(
            f"{EXO}/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand",
            status=status,
            json=body if body is not None else {"value": [{"Name": "contoso", "Identity": "contoso"}]},
        )

    def rbac(self) -> None:
        """The auditor's RBAC reads: the admin API by tenant id (they run beside Graph), no pointer, no group."""
        self.mock.post(f"{EXO}/adminapi/beta/{TENANT_ID}/InvokeCommand", json={"value": []})

    def everything(self) -> None:
        self.identity_platform()
        self.graph()
        self.exchange()
        self.rbac()


@pytest.fixture
def tenant(mock: responses.RequestsMock, app_cert: certs.GeneratedCertificate) -> Tenant:
    return Tenant(mock, app_cert)


def run(settings: Settings, waits: Waits) -> TenantFacts:
    return collect(settings, now=NOW, session=make_session(settings, waits))


def test_a_healthy_tenant_gives_every_fact_in_one_graph_round_trip(
    tenant: Tenant, settings: Settings, waits: Waits, app_cert: certs.GeneratedCertificate
) -> None:
    tenant.everything()

    facts = run(settings, waits)

    assert isinstance(facts.app, AppRegistration)
    key = facts.app.key_credentials[0]
    assert key.matches_thumbprint(app_cert.sha1_thumbprint)
    assert key.key_der == base64.b64decode(app_cert.der_base64)
    assert key.end == datetime(2027, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert facts.app.required_resource_access[0].access[0].id == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
    assert isinstance(facts.app_sp, ServicePrincipal) and facts.app_sp.account_enabled
    assert isinstance(facts.exchange_sp, ServicePrincipal)
    assert facts.exchange_sp.role_value(wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID) == "Exchange.ManageAsApp"
    assert isinstance(facts.organization, Organization)
    assert facts.organization.initial_domain == "contoso.onmicrosoft.com"
    assert facts.app_role_grants and facts.app_role_grants[0].resource_id == EXO_SP_ID  # type: ignore[index]
    assert not isinstance(facts.role_assignments, Unavailable)
    assert facts.role_assignments[0].role_display_name == "Exchange Administrator"
    assert facts.role_assignments[0].tenant_wide
    assert facts.role_eligibilities == ()
    assert isinstance(facts.token, TokenAttempt) and facts.token.claims["roles"] == ["Exchange.ManageAsApp"]
    assert isinstance(facts.exchange, ExchangeProbe) and facts.exchange.ok
    assert facts.collected_at == NOW
    assert facts.auditor.startswith("certificate app")
    # One Graph round trip: the app's token names the service principal (oid), so the grants ride along.
    assert facts.stats.graph_round_trips == 1
    assert [[i["id"] for i in b] for b in tenant.batches] == [
        ["app", "app_sp", "exchange_sp", "organization", "app_role_grants", "role_assignments", "role_eligibilities"],
    ]
    assert f"principalId eq '{SP_ID}'" in tenant.batches[0][5]["url"]
    assert facts.stats.graph_requests == 7
    assert facts.stats.token_requests == 3  # the auditor reads RBAC with its own Exchange token
    assert facts.stats.exchange_requests == 3, facts.exchange_rbac
    assert facts.app.source is not None and facts.app.source.batched and facts.app.source.request_id == "r-app"
    assert len([s for s in facts.requests if s.batched]) == 7


def test_without_the_apps_token_the_grants_follow_in_a_second_round_trip(
    tenant: Tenant, settings: Settings, waits: Waits
) -> None:
    tenant.identity_platform(instance_discovery=True)
    tenant.graph()
    tenant.token_failure[APP_ID] = {"error": "invalid_client", "error_codes": [700027], "error_description": "x"}

    facts = run(settings, waits)

    assert isinstance(facts.token, TokenAttempt) and not facts.token.acquired
    assert facts.stats.graph_round_trips == 2
    assert [[i["id"] for i in b] for b in tenant.batches] == [
        ["app", "app_sp", "exchange_sp", "organization"],
        ["app_role_grants", "role_assignments", "role_eligibilities"],
    ]
    assert f"principalId eq '{SP_ID}'" in tenant.batches[1][1]["url"]
    assert not isinstance(facts.role_assignments, Unavailable) and facts.role_assignments


def test_a_token_naming_another_principal_is_not_trusted_for_the_grants(
    tenant: Tenant, settings: Settings, waits: Waits
) -> None:
    tenant.everything()
    other = "99999999-8888-7777-6666-555555555555"
    tenant.exchange_token = fake_access_token(
        aud="https://outlook.office365.com", appid=APP_ID, tid=TENANT_ID, oid=other, roles=["Exchange.ManageAsApp"]
    )

    facts = run(settings, waits)

    # The grants Graph gives for the principal Graph names count; the batch for `other` is not used.
    assert facts.stats.graph_round_trips == 2
    assert f"principalId eq '{other}'" in tenant.batches[0][5]["url"]
    assert f"principalId eq '{SP_ID}'" in tenant.batches[1][1]["url"]


def test_the_request_log_lists_the_auditor_first_whatever_finished_first(
    tenant: Tenant, settings: Settings, waits: Waits
) -> None:
    tenant.everything()

    facts = run(settings, waits)

    urls = [source.url for source in facts.requests]
    last_graph = max(i for i, url in enumerate(urls) if url.startswith(GRAPH))
    exchange = urls.index(f"{EXO}/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand")
    assert last_graph < exchange


def test_no_token_string_anywhere_in_the_facts(tenant: Tenant, settings: Settings, waits: Waits) -> None:
    tenant.everything()

    text = repr(run(settings, waits))

    for token in (tenant.exchange_token, tenant.graph_token):
        assert token not in text and token.split(".")[2] not in text


def test_a_403_makes_only_that_fact_unavailable_naming_the_permission(
    tenant: Tenant, settings: Settings, waits: Waits
) -> None:
    tenant.answers["role_assignments"] = (403, DENIED)
    tenant.answers["organization"] = (403, DENIED)
    tenant.everything()

    facts = run(settings, waits)

    assert isinstance(facts.role_assignments, Unavailable)
    assert facts.role_assignments.missing_permission == "RoleManagement.Read.Directory"
    assert "Insufficient privileges" in str(facts.role_assignments)
    assert isinstance(facts.organization, Unavailable)
    assert facts.organization.missing_permission == "Organization.Read.All"
    assert isinstance(facts.app, AppRegistration) and not isinstance(facts.app_role_grants, Unavailable)


def test_eligibility_schedules_unreadable_affect_only_eligibilities(
    tenant: Tenant, settings: Settings, waits: Waits
) -> None:
    tenant.answers["role_eligibilities"] = (404, {"error": {"code": "NotFound", "message": "no PIM"}})
    tenant.everything()

    facts = run(settings, waits)

    assert isinstance(facts.role_eligibilities, Unavailable) and "no PIM" in facts.role_eligibilities.reason
    assert not isinstance(facts.role_assignments, Unavailable) and not isinstance(facts.app_role_grants, Unavailable)


def test_a_tenant_id_reads_the_organization_by_id_and_a_domain_lists_it() -> None:
    by_id = fetch.first_round_trip(APP_ID, TENANT_ID.upper())[-1]
    assert by_id.url.startswith(f"/organization/{TENANT_ID.lower()}?$select=")
    assert permission_for("GET", by_id.url) == "Organization.Read.All"
    listed = fetch.first_round_trip(APP_ID, "contoso.onmicrosoft.com")[-1]
    assert listed.url.startswith("/organization?$select=")
    assert "Directory.Read.All" in permission_for("GET", listed.url)
    single = {"id": TENANT_ID, "verifiedDomains": [{"name": "contoso.onmicrosoft.com", "isInitial": True}]}
    assert parse_organization(single).initial_domain == "contoso.onmicrosoft.com"


def test_a_tenant_without_pim_licence_has_no_eligibilities_and_says_why(
    tenant: Tenant, settings: Settings, waits: Waits
) -> None:
    message = "The tenant needs to have Microsoft Entra ID P2 or Microsoft Entra ID Governance license."
    tenant.answers["role_eligibilities"] = (400, {"error": {"code": "AadPremiumLicenseRequired", "message": message}})
    tenant.everything()

    facts = run(settings, waits)

    assert facts.role_eligibilities == ()
    assert "no eligible role assignment can exist" in facts.pim_note and message in facts.pim_note


def test_another_400_on_eligibilities_stays_unavailable(tenant: Tenant, settings: Settings, waits: Waits) -> None:
    tenant.answers["role_eligibilities"] = (400, {"error": {"code": "BadRequest", "message": "bad filter"}})
    tenant.everything()

    facts = run(settings, waits)

    assert isinstance(facts.role_eligibilities, Unavailable) and facts.pim_note == ""


def test_absent_app_and_service_principal_are_none(tenant: Tenant, settings: Settings, waits: Waits) -> None:
    tenant.answers["app"] = (404, NOT_FOUND)
    tenant.answers["app_sp"] = (404, NOT_FOUND)
    tenant.token_failure[APP_ID] = aadsts(
        700016, f"Application with identifier '{APP_ID}' was not found", "unauthorized_client"
    )
    tenant.identity_platform(instance_discovery=True)
    tenant.graph()

    facts = run(settings, waits)

    assert facts.app is None and facts.app_sp is None
    assert facts.app_role_grants == () and facts.role_assignments == ()
    assert isinstance(facts.token, TokenAttempt) and facts.token.aadsts == 700016
    assert facts.exchange is None  # not attempted without a token
    assert facts.stats.graph_round_trips == 1


def test_a_403_on_the_service_principal_leaves_its_dependents_unavailable(
    tenant: Tenant, settings: Settings, waits: Waits
) -> None:
    tenant.answers["app_sp"] = (403, DENIED)
    tenant.identity_platform()
    tenant.graph()
    tenant.exchange()

    facts = run(settings, waits)

    assert isinstance(facts.app_sp, Unavailable) and facts.app_sp.missing_permission == "Application.Read.All"
    for fact in (facts.app_role_grants, facts.role_assignments, facts.role_eligibilities):
        assert isinstance(fact, Unavailable) and "object id" in fact.reason


def test_paging_inside_a_batch_item_is_followed(tenant: Tenant, settings: Settings, waits: Waits) -> None:
    next_link = f"{GRAPH}/servicePrincipals/{SP_ID}/appRoleAssignments?$skiptoken=abc"
    status, body = tenant.answers["app_role_grants"]
    tenant.answers["app_role_grants"] = (status, {**body, "@odata.nextLink": next_link})
    tenant.everything()
    tenant.mock.get(
        next_link,
        json={"value": [{"id": "g-2", "principalId": SP_ID, "resourceId": "other", "appRoleId": "r"}]},
    )

    facts = run(settings, waits)

    assert not isinstance(facts.app_role_grants, Unavailable)
    assert [g.id for g in facts.app_role_grants] == ["g-1", "g-2"]


def test_auditor_sign_in_failure_makes_graph_facts_unavailable_but_token_still_runs(
    tenant: Tenant, settings: Settings, waits: Waits
) -> None:
    tenant.token_failure[AUDITOR_ID] = aadsts(
        700027, "The certificate with identifier used to sign the client assertion"
    )
    tenant.identity_platform(instance_discovery=True)
    tenant.exchange()

    facts = run(settings, waits)

    for fact in (facts.app, facts.app_sp, facts.exchange_sp, facts.organization, facts.role_assignments):
        assert isinstance(fact, Unavailable)
        assert "AADSTS700027" in fact.reason and "auditor" in fact.reason
    assert isinstance(facts.token, TokenAttempt) and facts.token.acquired
    assert isinstance(facts.exchange, ExchangeProbe) and facts.exchange.ok
    assert facts.stats.graph_round_trips == 0


def test_a_failed_batch_makes_every_graph_fact_unavailable(tenant: Tenant, settings: Settings, waits: Waits) -> None:
    tenant.identity_platform()
    tenant.mock.post(f"{GRAPH}/$batch", body="<html>gateway</html>", status=200)
    tenant.exchange()

    facts = run(settings, waits)

    assert isinstance(facts.app, Unavailable) and "InvalidResponse" in facts.app.reason
    assert isinstance(facts.token, TokenAttempt) and facts.token.acquired


def test_an_unreadable_local_certificate_leaves_token_and_exchange_unavailable(
    tenant: Tenant, settings: Settings, waits: Waits, tmp_path: Any
) -> None:
    broken = tmp_path / "app.pem"
    broken.write_text("garbage")
    tenant.identity_platform()
    tenant.graph()

    facts = run(dataclasses.replace(settings, cert=broken), waits)

    assert isinstance(facts.token, Unavailable) and str(broken) in facts.token.reason
    assert isinstance(facts.exchange, Unavailable)
    assert isinstance(facts.app, AppRegistration)


def test_batching_off_sends_seven_single_requests(tenant: Tenant, settings: Settings, waits: Waits) -> None:
    tenant.identity_platform()
    tenant.exchange()
    for url, key in [
        (f"{GRAPH}/applications(appId='{APP_ID}')", "app"),
        (f"{GRAPH}/servicePrincipals(appId='{APP_ID}')", "app_sp"),
        (f"{GRAPH}/servicePrincipals(appId='{wellknown.EXCHANGE_ONLINE_APP_ID}')", "exchange_sp"),
        (f"{GRAPH}/organization/{TENANT_ID}", "organization"),
        (f"{GRAPH}/servicePrincipals/{SP_ID}/appRoleAssignments", "app_role_grants"),
        (f"{GRAPH}/roleManagement/directory/roleAssignments", "role_assignments"),
        (f"{GRAPH}/roleManagement/directory/roleEligibilitySchedules", "role_eligibilities"),
    ]:
        status, body = tenant.answers[key]
        tenant.mock.get(url, status=status, json=body)

    facts = run(dataclasses.replace(settings, batching=False), waits)

    assert isinstance(facts.app, AppRegistration) and not isinstance(facts.role_assignments, Unavailable)
    assert facts.stats.graph_round_trips == 7


def test_national_cloud_endpoints_and_scopes(
    mock: responses.RequestsMock, settings: Settings, waits: Waits, app_cert: certs.GeneratedCertificate
) -> None:
    gcchigh = dataclasses.replace(settings, cloud="gcchigh")
    scopes: list[str] = []

    def answer(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        scopes.append(form["scope"])
        return 200, token_body(fake_access_token(tid=TENANT_ID))

    add_identity_platform(mock, answer, login="https://login.microsoftonline.us")
    batch_answers = first_answers(app_cert)
    batch_answers["app_sp"] = (404, NOT_FOUND)

    def batch(request: Any) -> tuple[int, dict[str, str], str]:
        items = json.loads(request.body)["requests"]
        out = [{"id": i["id"], "status": batch_answers[i["id"]][0], "body": batch_answers[i["id"]][1]} for i in items]
        return 200, {}, json.dumps({"responses": out})

    mock.add_callback(responses.POST, "https://graph.microsoft.us/v1.0/$batch", callback=batch)
    mock.post("https://outlook.office365.us/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand", json={"value": []})

    facts = run(gcchigh, waits)

    # The auditor's Graph and Exchange (RBAC reads) tokens and the app's Exchange token, side by side.
    assert sorted(scopes) == [
        "https://graph.microsoft.us/.default",
        "https://outlook.office365.us/.default",
        "https://outlook.office365.us/.default",
    ]
    assert isinstance(facts.app, AppRegistration)
    assert isinstance(facts.exchange, ExchangeProbe) and facts.exchange.url.startswith("https://outlook.office365.us/")
    assert LOGIN not in repr([s.url for s in facts.requests])


def test_graph_times_are_aware_utc() -> None:
    assert parse_time("2026-03-04T05:06:07.1234567Z") == datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    assert parse_time("2026-03-04T05:06:07+02:00") == datetime(2026, 3, 4, 3, 6, 7, tzinfo=UTC)
    assert parse_time(None) is None


def test_a_429_storm_ends_after_bounded_retries_as_unavailable(
    tenant: Tenant, settings: Settings, waits: Waits
) -> None:
    tenant.identity_platform()
    throttled = {"error": {"code": "TooManyRequests", "message": "Too many requests. Please try again later."}}
    tenant.mock.post(f"{GRAPH}/$batch", status=429, headers={"Retry-After": "7"}, json=throttled)
    tenant.exchange()

    facts = run(settings, waits)

    assert isinstance(facts.app, Unavailable) and "429 TooManyRequests" in facts.app.reason
    assert waits.seconds == [7.0, 7.0]  # settings.retries == 2, each after the server's Retry-After
    assert facts.stats.retries == 2
    assert isinstance(facts.exchange, ExchangeProbe) and facts.exchange.ok


def test_each_private_key_is_parsed_once_per_run(
    tenant: Tenant, settings: Settings, waits: Waits, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jwt.algorithms
    from cryptography.hazmat.primitives import serialization

    from cbacheck.certs import reading

    reading._parsed.clear()
    parsed: list[bytes] = []
    real = serialization.load_pem_private_key

    def counting(data: bytes, *args: Any, **kwargs: Any) -> Any:
        parsed.append(bytes(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(serialization, "load_pem_private_key", counting)
    monkeypatch.setattr(jwt.algorithms, "load_pem_private_key", counting)
    tenant.everything()
    assert settings.cert is not None

    certs.read_certificate(settings.cert, None, "link 1")
    facts = run(settings, waits)

    assert isinstance(facts.exchange, ExchangeProbe) and facts.exchange.ok
    # Link 1, the app's token and the auditor: two files, two parses (and msal/PyJWT none of their own).
    assert len(parsed) == len(set(parsed)) == 2


def test_discovery_is_fetched_once_a_run_and_not_again_the_next_run(
    tenant: Tenant, settings: Settings, waits: Waits, mock: responses.RequestsMock
) -> None:
    tenant.everything()
    tenant.exchange()  # the second run probes Exchange again

    def discoveries() -> int:
        return len([call for call in mock.calls if "openid-configuration" in str(call.request.url)])

    run(settings, waits)
    assert discoveries() == 1  # the auditor and the app share one http_cache
    second = run(settings, waits)
    assert discoveries() == 1  # kept in the user's cache directory between runs
    assert isinstance(second.exchange, ExchangeProbe) and second.exchange.ok


def test_the_rbac_reads_ask_for_role_groups_beside_the_pointers_and_log_them_in_a_fixed_order(
    tenant: Tenant, settings: Settings, waits: Waits
) -> None:
    import threading

    tenant.identity_platform()
    tenant.graph()
    tenant.exchange()
    role_groups_asked = threading.Event()

    def rbac(request: Any) -> tuple[int, dict[str, str], str]:
        cmdlet = json.loads(request.body)["CmdletInput"]["CmdletName"]
        if cmdlet == "Get-RoleGroup":
            role_groups_asked.set()
        else:
            # The pointers answer only once the role groups were asked for: read one after the other,
            # they would answer after the wait runs out, and the role groups would come after them.
            role_groups_asked.wait(timeout=5)
        return 200, {"request-id": f"{cmdlet}-asked-{role_groups_asked.is_set()}"}, json.dumps({"value": []})

    tenant.mock.add_callback(responses.POST, f"{EXO}/adminapi/beta/{TENANT_ID}/InvokeCommand", callback=rbac)

    facts = run(settings, waits)

    rbac_ids = [source.request_id for source in facts.requests if TENANT_ID in source.url and "adminapi" in source.url]
    # Get-RoleGroup went out while Get-ServicePrincipal was waiting, yet the log lists the pointers first.
    assert rbac_ids == ["Get-ServicePrincipal-asked-True", "Get-RoleGroup-asked-True"]
    assert facts.stats.token_requests == 3  # the auditor's Exchange token was asked for once
