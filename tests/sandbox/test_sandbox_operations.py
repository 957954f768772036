"""The tenant's operations without HTTP: the fake's rules raise domain faults, each with a Graph error row."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from cbacheck import wellknown
from cbacheck.sandbox.faults import Conflict, InvalidRequest, ObjectNotFound, SandboxFault
from cbacheck.sandbox.graph.errors import GRAPH_ERRORS, GraphFault
from cbacheck.sandbox.scenario import build, load_scenario
from cbacheck.sandbox.state import TenantState
from cbacheck.sandbox.values import JsonObject

OTHER_GUID = "11111111-2222-3333-4444-555555555555"
SANDBOX = Path(__file__).resolve().parents[2] / "cbacheck" / "sandbox"


@pytest.fixture(scope="module")
def built() -> JsonObject:
    return build(load_scenario("demo-broken")).state


@pytest.fixture
def tenant(built: JsonObject) -> TenantState:
    return TenantState(copy.deepcopy(built))


def test_a_duplicate_grant_and_an_unknown_role_are_refused_without_http(tenant: TenantState) -> None:
    exchange = tenant.find_service_principal(app_id=wellknown.EXCHANGE_ONLINE_APP_ID)
    client = next(sp for sp in tenant.data["servicePrincipals"] if sp["id"] != exchange["id"])
    body = {
        "principalId": client["id"],
        "resourceId": exchange["id"],
        "appRoleId": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
    }
    created = tenant.grant_app_role(client, "appRoleAssignments", body)
    assert created in tenant.data["appRoleAssignments"]
    with pytest.raises(InvalidRequest) as again:
        tenant.grant_app_role(client, "appRoleAssignments", body)
    assert again.value.key == "duplicate_app_role_assignment"
    with pytest.raises(InvalidRequest) as unknown:
        tenant.grant_app_role(client, "appRoleAssignments", {**body, "appRoleId": OTHER_GUID})
    assert unknown.value.key == "app_role_not_found"
    with pytest.raises(ObjectNotFound):
        tenant.grant_app_role(client, "appRoleAssignments", {**body, "resourceId": OTHER_GUID})


def test_an_uploaded_key_ends_at_most_a_year_after_it_starts(tenant: TenantState) -> None:
    app = tenant.data["applications"][0]
    existing = [{"keyId": k["keyId"], "key": None} for k in app["keyCredentials"]]
    der = next(k["key"] for a in tenant.data["applications"] for k in a["keyCredentials"] if k.get("key"))
    two_years = {"key": der, "startDateTime": "2026-01-01T00:00:00Z", "endDateTime": "2028-01-01T00:00:00Z"}
    with pytest.raises(InvalidRequest) as refused:
        tenant.update_application(app, {"keyCredentials": [*existing, two_years]})
    assert refused.value.key == "invalid_key_window"
    # Without an end, Graph assigns one a year after the start.
    one_start = {"key": der, "startDateTime": "2026-01-01T00:00:00Z"}
    tenant.update_application(app, {"keyCredentials": [*existing, one_start]})
    added = app["keyCredentials"][-1]
    assert added["startDateTime"].startswith("2026-01-01T00:00:00") and added["endDateTime"].startswith("2027-01-01")


def test_a_duplicate_role_assignment_and_service_principal_conflict(tenant: TenantState) -> None:
    sp = tenant.data["servicePrincipals"][0]
    body = {"principalId": sp["id"], "roleDefinitionId": wellknown.EXCHANGE_ADMINISTRATOR, "directoryScopeId": "/"}
    tenant.assign_directory_role(body)
    with pytest.raises(Conflict) as again:
        tenant.assign_directory_role(body)
    assert GraphFault.of(again.value).status == 409
    app = tenant.data["applications"][0]
    if tenant.service_principal(app_id=app["appId"]) is None:
        tenant.create_service_principal({"appId": app["appId"]})
    with pytest.raises(Conflict):
        tenant.create_service_principal({"appId": app["appId"]})


def test_deleting_an_application_removes_its_service_principal_and_grants(tenant: TenantState) -> None:
    app = next(a for a in tenant.data["applications"] if tenant.service_principal(app_id=a["appId"]) is not None)
    sp = tenant.find_service_principal(app_id=app["appId"])
    tenant.delete_application(app)
    assert tenant.application(app["id"]) is None and tenant.service_principal(sp["id"]) is None
    assert not [a for a in tenant.data["appRoleAssignments"] if sp["id"] in (a["principalId"], a["resourceId"])]
    assert not [a for a in tenant.data["roleAssignments"] if a["principalId"] == sp["id"]]


def test_every_fault_the_model_raises_has_a_row_in_the_graph_error_table() -> None:
    source = "\n".join(p.read_text() for p in SANDBOX.glob("*.py"))
    keys = set(re.findall(r"(?:InvalidRequest|Conflict|SandboxFault)\(\s*\"(\w+)\"", source))
    assert keys, "no fault keys found"
    assert keys <= set(GRAPH_ERRORS), keys - set(GRAPH_ERRORS)
    assert issubclass(ObjectNotFound, SandboxFault) and "not_found" in GRAPH_ERRORS


def test_unconfirmed_rows_are_marked_in_the_table() -> None:
    unconfirmed = {key for key, spec in GRAPH_ERRORS.items() if spec.unconfirmed}
    assert {"duplicate_app_role_assignment", "duplicate_role_assignment", "duplicate_service_principal"} <= unconfirmed
    assert "denied" not in unconfirmed and "not_found" not in unconfirmed
