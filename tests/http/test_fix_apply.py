"""Applying fix actions against Graph mocked with responses: bodies, idempotence, failures, journal and resume."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from cbacheck import certs, wellknown
from cbacheck.collect.graph import GraphClient
from cbacheck.config import Settings
from cbacheck.errors import FixError
from cbacheck.fixers.actions import (
    AddKeyCredential,
    AddRequiredResourceAccess,
    AssignDirectoryRole,
    CreateApplication,
    CreateServicePrincipal,
    GrantAppRole,
    ManualStep,
    Ref,
    RemoveKeyCredentials,
)
from cbacheck.fixers.apply import admin_graph_client, apply_plan
from cbacheck.fixers.handlers import keys as key_handlers
from cbacheck.fixers.journal import Journal
from cbacheck.fixers.outcomes import (
    ALREADY_DONE,
    APPLIED,
    FAILED,
    SKIPPED_DEPENDENCY_FAILED,
    WAITING_FOR_VERIFICATION,
    ActionResult,
)

G = "https://graph.microsoft.com/v1.0"
TENANT = "contoso.onmicrosoft.com"
APP_ID = "11111111-2222-3333-4444-555555555555"
APP_OBJECT = "aaaaaaaa-0000-0000-0000-000000000001"
SP_OBJECT = "bbbbbbbb-0000-0000-0000-000000000002"
EXO_SP = "cccccccc-0000-0000-0000-000000000003"
ROLE = wellknown.EXCHANGE_ADMINISTRATOR
BEARER = "bearer-value-that-must-never-be-recorded"


class StaticToken:
    def token(self, scope: str) -> str:
        return BEARER


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def graph() -> GraphClient:
    return GraphClient("https://graph.microsoft.com", StaticToken(), requests.Session(), batching=False)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.jsonl")


def settings() -> Settings:
    return Settings(tenant=TENANT, app_id=APP_ID)


def der_of(tmp_path: Path, name: str) -> str:
    return certs.generate_certificate(f"CN={name}", tmp_path / name).der_base64


def key_entry(key_id: str, der_base64: str) -> dict[str, Any]:
    return {
        "keyId": key_id,
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
        "displayName": f"CN={key_id}",
        "customKeyIdentifier": "QUJD",
        "startDateTime": "2025-01-01T00:00:00Z",
        "endDateTime": "2026-01-01T00:00:00Z",
        "key": der_base64,
    }


def app_body(**collections: Any) -> dict[str, Any]:
    """An application as GET /applications/{id}?$select=id,appId,<collection> returns it."""
    return {"id": APP_OBJECT, "appId": APP_ID, **collections}


def graph_error(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": request_id, "date": "2025-06-01"}}}


def all_text(results: list[Any], journal: Journal) -> str:
    return json.dumps([r.as_dict() for r in results]) + journal.path.read_text(encoding="utf-8")


def progress_lines() -> tuple[list[str], Any]:
    lines: list[str] = []
    return lines, lines.append


# --- keys ------------------------------------------------------------------------------------------------


def test_upload_sends_back_every_existing_key_with_its_bytes(
    tmp_path: Path, mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    old_a, old_b, new = der_of(tmp_path, "old-a"), der_of(tmp_path, "old-b"), der_of(tmp_path, "new")
    existing = [key_entry("key-a", old_a), key_entry("key-b", old_b)]
    # The upload carries the certificate's own window (it is under a year, Graph's limit).
    start, end = key_handlers.key_window(new, datetime.now(UTC))
    new_key = {
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
        "key": new,
        "displayName": "CN=new",
        "startDateTime": key_handlers.graph_time(start),
        "endDateTime": key_handlers.graph_time(end),
    }
    select = matchers.query_param_matcher({"$select": "id,appId,keyCredentials"})
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=existing), match=[select])
    mock.patch(
        f"{G}/applications/{APP_OBJECT}",
        status=204,
        headers={"request-id": "req-patch-1"},
        match=[matchers.json_params_matcher({"keyCredentials": [*existing, new_key]})],
    )
    mock.get(
        f"{G}/applications/{APP_OBJECT}",
        json=app_body(keyCredentials=[*existing, {**new_key, "keyId": "k-new"}]),
        match=[select],
    )
    action = AddKeyCredential(
        id="add-key",
        mends=("CBA-KEY-001",),
        reason="r",
        app_object_id=APP_OBJECT,
        certificate=new,
        display_name="CN=new",
    )
    lines, progress = progress_lines()
    [result] = apply_plan([action], graph, settings(), journal=journal, progress=progress)
    assert result.status == APPLIED
    assert result.response_status == 204 and result.request_id == "req-patch-1"
    assert [k["keyId"] for k in result.before["keyCredentials"]] == ["key-a", "key-b"]
    assert [k["keyId"] for k in result.after["keyCredentials"]] == ["key-a", "key-b", "k-new"]
    assert result.request is not None and result.request["method"] == "PATCH"
    text = all_text([result], journal)
    for der in (old_a, old_b, new):
        assert der[:40] not in text
    assert BEARER not in text
    assert "add-key: PATCH /applications/" + APP_OBJECT in lines
    assert lines[-1] == "add-key: applied"


def der_valid(tmp_path: Path, name: str, not_before: datetime, days: int) -> str:
    return certs.generate_certificate(f"CN={name}", tmp_path / name, days=days, now=not_before).der_base64


def test_an_uploaded_key_carries_the_certificate_window_within_graphs_one_year_limit(tmp_path: Path) -> None:
    now = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    short = der_valid(tmp_path, "short", now - timedelta(days=10), 200)
    start, end = key_handlers.key_window(short, now)
    assert (end - start).days == 200 and start <= now
    # Three years, issued a month ago: the usable year from now, never more than a year.
    long_ahead = der_valid(tmp_path, "ahead", now - timedelta(days=30), 3 * 365)
    start, end = key_handlers.key_window(long_ahead, now)
    assert start == now and end - start == timedelta(days=365)
    # Three years with four months left: the last year, ending with the certificate.
    long_behind = der_valid(tmp_path, "behind", now - timedelta(days=3 * 365 - 120), 3 * 365)
    start, end = key_handlers.key_window(long_behind, now)
    assert end - start == timedelta(days=365) and start <= now < end
    assert end - now < timedelta(days=121)


def test_a_stored_window_other_than_the_one_sent_fails_the_upload(
    tmp_path: Path, mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    new = der_of(tmp_path, "new")
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=[]))
    mock.patch(f"{G}/applications/{APP_OBJECT}", status=204)
    other_window = {**key_entry("k-new", new), "startDateTime": "2020-01-01T00:00:00Z"}
    mock.add(responses.GET, f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=[other_window]))
    action = AddKeyCredential(
        id="add-key", mends=(), reason="r", app_object_id=APP_OBJECT, certificate=new, display_name="CN=new"
    )
    [result] = apply_plan([action], graph, settings(), journal=journal, progress=lambda line: None)
    assert result.status == FAILED
    assert "Graph stored the new key with the window 2020-01-01T00:00:00Z" in result.error


def test_key_already_uploaded_is_not_written_again(
    tmp_path: Path, mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    der = der_of(tmp_path, "here")
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=[key_entry("key-here", der)]))
    action = AddKeyCredential(
        id="add-key", mends=(), reason="r", app_object_id=APP_OBJECT, certificate=der, display_name="CN=here"
    )
    [result] = apply_plan([action], graph, settings(), journal=journal, progress=lambda line: None)
    assert result.status == ALREADY_DONE
    assert result.output["key_id"] == "key-here"
    assert len(mock.calls) == 1


def test_a_key_returned_without_its_bytes_is_never_patched_away(
    tmp_path: Path, mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    without_bytes = {**key_entry("key-a", der_of(tmp_path, "a")), "key": None}
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=[without_bytes]))
    action = AddKeyCredential(
        id="add-key",
        mends=(),
        reason="r",
        app_object_id=APP_OBJECT,
        certificate=der_of(tmp_path, "n"),
        display_name="CN=n",
    )
    [result] = apply_plan([action], graph, settings(), journal=journal, progress=lambda line: None)
    assert result.status == FAILED
    assert "key-a" in result.error and "nothing was sent" in result.error
    assert all(call.request.method == "GET" for call in mock.calls)


def test_old_key_waits_for_proof_then_goes_keeping_every_other_key(
    tmp_path: Path, mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    old, new, other = der_of(tmp_path, "old"), der_of(tmp_path, "new"), der_of(tmp_path, "other")
    keys = [key_entry("key-old", old), key_entry("key-new", new), key_entry("key-other", other)]
    action = RemoveKeyCredentials(
        id="remove-old-key",
        mends=("CBA-CERT-004",),
        reason="r",
        app_object_id=APP_OBJECT,
        key_ids=("key-old",),
        requires_verified=("add-key-new-certificate",),
        depends_on=("add-key-new-certificate",),
    )
    [waiting] = apply_plan([action], graph, settings(), journal=journal, progress=lambda line: None)
    assert waiting.status == WAITING_FOR_VERIFICATION
    assert len(mock.calls) == 0

    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=keys))
    mock.patch(
        f"{G}/applications/{APP_OBJECT}", status=204, match=[matchers.json_params_matcher({"keyCredentials": keys[1:]})]
    )
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=keys[1:]))
    [removed] = apply_plan(
        [action], graph, settings(), journal=journal, progress=lambda line: None, verified={"add-key-new-certificate"}
    )
    assert removed.status == APPLIED


def rotation_removal() -> RemoveKeyCredentials:
    return RemoveKeyCredentials(
        id="remove-old-key",
        mends=("CBA-CERT-004",),
        reason="r",
        app_object_id=APP_OBJECT,
        key_ids=("key-old",),
        requires_verified=("add-key-new-certificate",),
        keeps_key_of="add-key-new-certificate",
        depends_on=("add-key-new-certificate",),
    )


def uploaded_this_run(journal: Journal, der_base64: str) -> None:
    sha1 = hashlib.sha1(base64.b64decode(der_base64)).hexdigest().upper()
    output = {"sha1_thumbprint": sha1}
    journal.finished(ActionResult("add-key-new-certificate", "AddKeyCredential", APPLIED, output=output), TENANT)


def test_a_stale_read_without_the_new_key_is_read_again_before_the_old_key_goes(
    tmp_path: Path, mock: responses.RequestsMock, graph: GraphClient, journal: Journal, monkeypatch: Any
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(key_handlers, "pause", pauses.append)
    old, new = der_of(tmp_path, "old"), der_of(tmp_path, "new")
    uploaded_this_run(journal, new)
    stale = [key_entry("key-old", old)]
    fresh = [key_entry("key-old", old), key_entry("key-new", new)]
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=stale))  # read before the write
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=stale))  # still stale
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=fresh))
    kept = matchers.json_params_matcher({"keyCredentials": fresh[1:]})
    mock.patch(f"{G}/applications/{APP_OBJECT}", status=204, match=[kept])
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=fresh[1:]))
    [removed] = apply_plan(
        [rotation_removal()],
        graph,
        settings(),
        journal=journal,
        progress=lambda line: None,
        verified={"add-key-new-certificate"},
    )
    assert removed.status == APPLIED
    assert pauses == list(key_handlers.KEY_READ_RETRY_S[:2])


def test_the_old_key_stays_when_no_read_holds_the_key_added_in_this_run(
    tmp_path: Path, mock: responses.RequestsMock, graph: GraphClient, journal: Journal, monkeypatch: Any
) -> None:
    monkeypatch.setattr(key_handlers, "pause", lambda seconds: None)
    old, new = der_of(tmp_path, "old"), der_of(tmp_path, "new")
    uploaded_this_run(journal, new)
    stale = app_body(keyCredentials=[key_entry("key-old", old)])
    mock.add(responses.GET, f"{G}/applications/{APP_OBJECT}", json=stale)
    [refused] = apply_plan(
        [rotation_removal()],
        graph,
        settings(),
        journal=journal,
        progress=lambda line: None,
        verified={"add-key-new-certificate"},
    )
    assert refused.status == FAILED
    assert "nothing was sent" in refused.error and "added in this run" in refused.error
    assert all(call.request.method == "GET" for call in mock.calls)


# --- permission, consent, role ----------------------------------------------------------------------------


def test_permission_is_merged_into_the_existing_required_resource_access(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    graph_access = {
        "resourceAppId": wellknown.MICROSOFT_GRAPH_APP_ID,
        "resourceAccess": [{"id": "e1fe6dd8-ba31-4d61-89e7-88639da4683d", "type": "Scope"}],
    }
    exchange_other = {
        "resourceAppId": wellknown.EXCHANGE_ONLINE_APP_ID,
        "resourceAccess": [{"id": "3b5f3d61-589b-4a3c-a359-5dd4b5ee5bd5", "type": "Scope"}],
    }
    wanted = {"id": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID, "type": "Role"}
    merged = [graph_access, {**exchange_other, "resourceAccess": [*exchange_other["resourceAccess"], wanted]}]
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(requiredResourceAccess=[graph_access, exchange_other]))
    mock.patch(
        f"{G}/applications/{APP_OBJECT}",
        status=204,
        match=[matchers.json_params_matcher({"requiredResourceAccess": merged})],
    )
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(requiredResourceAccess=merged))
    action = AddRequiredResourceAccess(
        id="add-exchange-permission", mends=("CBA-PERM-002",), reason="r", app_object_id=APP_OBJECT
    )
    [result] = apply_plan([action], graph, settings(), journal=journal, progress=lambda line: None)
    assert result.status == APPLIED


def grant(principal: str | Ref = SP_OBJECT, depends: tuple[str, ...] = ()) -> GrantAppRole:
    return GrantAppRole(
        id="grant-exchange-consent",
        mends=("CBA-PERM-003",),
        reason="r",
        principal_id=principal,
        resource_id=EXO_SP,
        app_role_id=wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
        app_role_name=wellknown.EXCHANGE_MANAGE_AS_APP,
        depends_on=depends,
    )


def role(principal: str | Ref = SP_OBJECT, depends: tuple[str, ...] = ()) -> AssignDirectoryRole:
    return AssignDirectoryRole(
        id="assign-role",
        mends=("CBA-ROLE-001",),
        reason="r",
        principal_id=principal,
        role_definition_id=ROLE,
        role_name="Exchange Administrator",
        depends_on=depends,
    )


GRANTED = {
    "id": "grant-1",
    "principalId": SP_OBJECT,
    "resourceId": EXO_SP,
    "appRoleId": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
}
ASSIGNED = {"id": "ra-1", "principalId": SP_OBJECT, "roleDefinitionId": ROLE, "directoryScopeId": "/"}


def test_consent_and_role_already_present_are_skipped_without_writes(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    mock.get(f"{G}/servicePrincipals/{SP_OBJECT}/appRoleAssignments", json={"value": [GRANTED]})
    mock.get(
        f"{G}/roleManagement/directory/roleAssignments",
        json={"value": [ASSIGNED]},
        match=[matchers.query_param_matcher({"$filter": f"principalId eq '{SP_OBJECT}'"})],
    )
    results = apply_plan([grant(), role()], graph, settings(), journal=journal, progress=lambda line: None)
    assert [r.status for r in results] == [ALREADY_DONE, ALREADY_DONE]
    assert all(call.request.method == "GET" for call in mock.calls)


def test_role_scoped_to_an_administrative_unit_does_not_count_as_done(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    scoped = {**ASSIGNED, "id": "ra-au", "directoryScopeId": "/administrativeUnits/au-1"}
    body = {
        "@odata.type": "#microsoft.graph.unifiedRoleAssignment",
        "roleDefinitionId": ROLE,
        "principalId": SP_OBJECT,
        "directoryScopeId": "/",
    }
    mock.get(f"{G}/roleManagement/directory/roleAssignments", json={"value": [scoped]})
    mock.post(
        f"{G}/roleManagement/directory/roleAssignments",
        status=201,
        json={**ASSIGNED, "id": "ra-new"},
        match=[matchers.json_params_matcher(body)],
    )
    mock.get(f"{G}/roleManagement/directory/roleAssignments", json={"value": [scoped, {**ASSIGNED, "id": "ra-new"}]})
    [result] = apply_plan([role()], graph, settings(), journal=journal, progress=lambda line: None)
    assert result.status == APPLIED
    assert result.output["id"] == "ra-new"
    assert [a["id"] for a in result.after["roleAssignments"]] == ["ra-au", "ra-new"]


def test_a_failure_midway_skips_its_dependents_and_the_rest_go_on(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    create_sp = CreateServicePrincipal(id="create-service-principal", mends=("CBA-APP-002",), reason="r", app_id=APP_ID)
    permission = AddRequiredResourceAccess(
        id="add-exchange-permission", mends=("CBA-PERM-002",), reason="r", app_object_id=APP_OBJECT
    )
    sp_ref = Ref("create-service-principal", "id")
    actions = [
        create_sp,
        grant(sp_ref, ("create-service-principal",)),
        role(sp_ref, ("create-service-principal",)),
        permission,
    ]
    mock.get(f"{G}/servicePrincipals", json={"value": []})
    mock.post(
        f"{G}/servicePrincipals",
        status=403,
        json=graph_error(
            "Authorization_RequestDenied", "Insufficient privileges to complete the operation.", "req-403"
        ),
        headers={"request-id": "req-403"},
    )
    wanted = [
        {
            "resourceAppId": wellknown.EXCHANGE_ONLINE_APP_ID,
            "resourceAccess": [{"id": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID, "type": "Role"}],
        }
    ]
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(requiredResourceAccess=[]))
    mock.patch(
        f"{G}/applications/{APP_OBJECT}",
        status=204,
        match=[matchers.json_params_matcher({"requiredResourceAccess": wanted})],
    )
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(requiredResourceAccess=wanted))
    results = {
        r.action_id: r for r in apply_plan(actions, graph, settings(), journal=journal, progress=lambda line: None)
    }
    failed = results["create-service-principal"]
    assert failed.status == FAILED
    assert failed.error_code == "Authorization_RequestDenied"
    assert failed.request_id == "req-403"
    assert failed.response_status == 403
    assert "Insufficient privileges" in failed.error and "req-403" in failed.error
    assert results["grant-exchange-consent"].status == SKIPPED_DEPENDENCY_FAILED
    assert results["assign-role"].status == SKIPPED_DEPENDENCY_FAILED
    assert "create-service-principal failed" in results["assign-role"].error
    assert results["add-exchange-permission"].status == APPLIED
    assert not any(
        "appRoleAssignments" in call.request.url or "roleManagement" in call.request.url for call in mock.calls
    )


def test_created_objects_flow_into_the_requests_that_reference_them(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    new_sp = "dddddddd-0000-0000-0000-000000000004"
    create_sp = CreateServicePrincipal(id="create-service-principal", mends=(), reason="r", app_id=APP_ID)
    sp_ref = Ref("create-service-principal", "id")
    mock.get(f"{G}/servicePrincipals", json={"value": []})
    mock.post(
        f"{G}/servicePrincipals",
        status=201,
        json={"id": new_sp, "appId": APP_ID},
        match=[matchers.json_params_matcher({"appId": APP_ID})],
    )
    mock.get(f"{G}/servicePrincipals", json={"value": [{"id": new_sp, "appId": APP_ID, "accountEnabled": True}]})
    body = {"principalId": new_sp, "resourceId": EXO_SP, "appRoleId": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID}
    mock.get(f"{G}/servicePrincipals/{new_sp}/appRoleAssignments", json={"value": []})
    mock.post(
        f"{G}/servicePrincipals/{new_sp}/appRoleAssignments",
        status=201,
        json={**body, "id": "g-new"},
        match=[matchers.json_params_matcher(body)],
    )
    mock.get(f"{G}/servicePrincipals/{new_sp}/appRoleAssignments", json={"value": [{**body, "id": "g-new"}]})
    results = apply_plan(
        [create_sp, grant(sp_ref, ("create-service-principal",))],
        graph,
        settings(),
        journal=journal,
        progress=lambda line: None,
    )
    assert [r.status for r in results] == [APPLIED, APPLIED]
    assert results[0].output["id"] == new_sp
    assert (
        results[1].request is not None
        and results[1].request["path"] == f"/servicePrincipals/{new_sp}/appRoleAssignments"
    )


def test_a_refused_duplicate_whose_effect_is_present_is_already_done(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    mock.get(f"{G}/servicePrincipals/{SP_OBJECT}/appRoleAssignments", json={"value": []})
    mock.post(
        f"{G}/servicePrincipals/{SP_OBJECT}/appRoleAssignments",
        status=400,
        json=graph_error("Request_BadRequest", "Permission being assigned already exists on the object", "req-dup"),
    )
    mock.get(f"{G}/servicePrincipals/{SP_OBJECT}/appRoleAssignments", json={"value": [GRANTED]})
    [result] = apply_plan([grant()], graph, settings(), journal=journal, progress=lambda line: None)
    assert result.status == ALREADY_DONE
    assert result.error_code == "Request_BadRequest" and result.request_id == "req-dup"


def test_manual_steps_are_reported_with_their_values_and_never_sent(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    step = ManualStep(
        id="use-initial-domain",
        mends=("CBA-ORG-001",),
        reason="r",
        explanation="use it",
        setting="organization",
        value=TENANT,
    )
    [result] = apply_plan([step], graph, settings(), journal=journal, progress=lambda line: None)
    assert result.status == "manual"
    assert result.output == {"setting": "organization", "value": TENANT}
    assert len(mock.calls) == 0


# --- journal and resume -------------------------------------------------------------------------------------


class Killed(BaseException):
    """Stands for the process being killed: nothing in cbacheck catches it."""


def kill(request: Any) -> Any:
    raise Killed


def test_a_rerun_after_a_kill_mid_apply_converges_without_duplicates(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    # Run 1: the consent POST reaches Graph, then the process dies before recording the answer.
    mock.get(f"{G}/servicePrincipals/{SP_OBJECT}/appRoleAssignments", json={"value": []})
    mock.post(f"{G}/servicePrincipals/{SP_OBJECT}/appRoleAssignments", status=201, json=GRANTED)
    mock.add_callback(responses.GET, f"{G}/servicePrincipals/{SP_OBJECT}/appRoleAssignments", callback=kill)
    with pytest.raises(Killed):
        apply_plan([grant(), role()], graph, settings(), journal=journal, progress=lambda line: None)
    assert journal.unfinished(TENANT) == {"grant-exchange-consent"}
    mock.reset()

    # Run 2: the same plan (the facts were collected before the kill) finds the grant and adds only the role.
    mock.get(f"{G}/servicePrincipals/{SP_OBJECT}/appRoleAssignments", json={"value": [GRANTED]})
    mock.get(f"{G}/roleManagement/directory/roleAssignments", json={"value": []})
    mock.post(f"{G}/roleManagement/directory/roleAssignments", status=201, json=ASSIGNED)
    mock.get(f"{G}/roleManagement/directory/roleAssignments", json={"value": [ASSIGNED]})
    results = apply_plan([grant(), role()], graph, settings(), journal=journal, progress=lambda line: None)
    assert [r.status for r in results] == [ALREADY_DONE, APPLIED]
    assert [c.request.method for c in mock.calls].count("POST") == 1
    assert journal.unfinished(TENANT) == set()
    events = [(r["event"], r["action"]) for r in journal.records()]
    assert events[0] == ("started", "grant-exchange-consent")
    assert ("finished", "assign-role") in events


CREATE = CreateApplication(
    id="create-app", mends=("CBA-APP-001",), reason="r", display_name="Exchange Online automation"
)
NEW_APP = {"id": "app-obj-new", "appId": "99999999-0000-0000-0000-000000000000", "displayName": CREATE.display_name}


def graph_now(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + offset).isoformat().replace("+00:00", "Z")


def created_then_killed(mock: responses.RequestsMock, graph: GraphClient, journal: Journal) -> None:
    """Run 1: Graph answers the POST with the new app, then the process dies before the write is finished."""
    mock.post(f"{G}/applications", status=201, json=NEW_APP, match=[matchers.json_params_matcher(CREATE.body())])
    mock.add_callback(responses.GET, f"{G}/applications/app-obj-new", callback=kill)
    with pytest.raises(Killed):
        apply_plan([CREATE], graph, settings(), journal=journal, progress=lambda line: None)
    mock.reset()


def test_an_app_created_before_a_kill_is_adopted_by_the_id_its_create_request_returned(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    created_then_killed(mock, graph, journal)
    select = matchers.query_param_matcher({"$select": "id,appId,displayName,createdDateTime"})
    mock.get(f"{G}/applications/app-obj-new", json={**NEW_APP, "createdDateTime": graph_now()}, match=[select])
    [result] = apply_plan([CREATE], graph, settings(), journal=journal, progress=lambda line: None)
    assert result.status == ALREADY_DONE
    assert result.output == {"id": "app-obj-new", "appId": "99999999-0000-0000-0000-000000000000"}
    assert [call.request.method for call in mock.calls] == ["GET"]


def test_a_recorded_app_created_at_another_time_is_not_adopted(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    created_then_killed(mock, graph, journal)
    # The object behind the recorded id was not made by that request (the journal was edited, or the id reused).
    mock.get(f"{G}/applications/app-obj-new", json={**NEW_APP, "createdDateTime": graph_now(-timedelta(days=400))})
    [result] = apply_plan([CREATE], graph, settings(), journal=journal, progress=lambda line: None)
    assert result.status == FAILED
    assert "adopts only the app its own request created" in result.error
    assert "POST" not in [call.request.method for call in mock.calls]


def test_an_interrupted_create_is_never_adopted_by_its_display_name(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    # Run 1: the POST is sent and the process dies before any answer: the new app's id is unknown.
    mock.add_callback(responses.POST, f"{G}/applications", callback=kill)
    with pytest.raises(Killed):
        apply_plan([CREATE], graph, settings(), journal=journal, progress=lambda line: None)
    mock.reset()
    # An app carrying the fixed display name proves nothing: its owner may have named it so.
    mock.assert_all_requests_are_fired = False
    mock.get(f"{G}/applications", json={"value": [NEW_APP]})
    for _ in range(2):  # and the stop holds on the next run too
        [result] = apply_plan([CREATE], graph, settings(), journal=journal, progress=lambda line: None)
        assert result.status == FAILED
        assert "set app_id" in result.error and "journal" in result.error
    assert [call.request.url for call in mock.calls] == []  # neither adopted by name nor registered again


def test_the_journal_is_created_readable_by_its_owner_only(
    mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    mock.get(f"{G}/servicePrincipals/{SP_OBJECT}/appRoleAssignments", json={"value": [GRANTED]})
    apply_plan([grant()], graph, settings(), journal=journal, progress=lambda line: None)
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600


@pytest.mark.parametrize("planted", ["readable or writable by others", "a symbolic link", "owned by another user"])
def test_a_journal_others_could_have_written_is_not_trusted(
    tmp_path: Path, graph: GraphClient, journal: Journal, planted: str
) -> None:
    record = {"event": "finished", "tenant": TENANT, "action": "create-app", "result": {"status": "applied"}}
    target = journal.path if planted != "a symbolic link" else tmp_path / "elsewhere.jsonl"
    target.write_text(json.dumps(record) + "\n", encoding="utf-8")
    target.chmod(0o644 if planted == "readable or writable by others" else 0o600)
    if planted == "a symbolic link":
        journal.path.symlink_to(target)
    elif planted == "owned by another user":
        if os.geteuid() != 0:
            pytest.skip("only root can give a file to another user")
        os.chown(target, 65534, -1)
    with pytest.raises(FixError, match=f"is {planted}"):
        apply_plan([grant()], graph, settings(), journal=journal, progress=lambda line: None)


def test_the_journal_records_each_action_without_key_bytes_or_tokens(
    tmp_path: Path, mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    der = der_of(tmp_path, "j")
    start, end = (key_handlers.graph_time(t) for t in key_handlers.key_window(der, datetime.now(UTC)))
    stored = {**key_entry("k", der), "startDateTime": start, "endDateTime": end}
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=[]))
    mock.patch(f"{G}/applications/{APP_OBJECT}", status=204)
    mock.get(f"{G}/applications/{APP_OBJECT}", json=app_body(keyCredentials=[stored]))
    action = AddKeyCredential(
        id="add-key", mends=(), reason="r", app_object_id=APP_OBJECT, certificate=der, display_name="CN=j"
    )
    apply_plan([action], graph, settings(), journal=journal, progress=lambda line: None)
    records = journal.records()
    assert [r["event"] for r in records] == ["started", "answered", "finished"]
    assert records[2]["result"]["status"] == APPLIED
    text = journal.path.read_text(encoding="utf-8")
    assert der[:40] not in text and BEARER not in text
    sent = json.loads(mock.calls[1].request.body)
    assert base64.b64decode(sent["keyCredentials"][0]["key"])  # the real request carries the bytes


def test_apply_without_an_admin_identity_refuses_naming_the_settings() -> None:
    with pytest.raises(FixError) as refused:
        admin_graph_client(settings(), requests.Session())
    message = str(refused.value)
    assert "nothing was changed" in message
    assert "admin_app_id" in message and "admin_cert" in message


def test_a_created_certificate_is_uploaded_by_reference_and_reused_on_a_rerun(
    tmp_path: Path, mock: responses.RequestsMock, graph: GraphClient, journal: Journal
) -> None:
    from cbacheck.fixers.actions import CreateCertificate

    def rotation(stamp: str) -> list[Any]:
        create = CreateCertificate(
            id="create-certificate",
            mends=("CBA-CERT-004",),
            reason="r",
            subject="CN=exo-new",
            out_dir=tmp_path / stamp,
            days=90,
        )
        upload = AddKeyCredential(
            id="add-key-new-certificate",
            mends=("CBA-CERT-004",),
            reason="r",
            app_object_id=APP_OBJECT,
            certificate=Ref("create-certificate", "der_base64"),
            display_name="CN=exo-new",
            depends_on=("create-certificate",),
        )
        return [create, upload]

    old = key_entry("key-old", der_of(tmp_path, "old"))
    stored: list[dict[str, Any]] = [old]
    uploaded: list[dict[str, Any]] = []

    def get(request: Any) -> tuple[int, dict[str, str], str]:
        return 200, {}, json.dumps(app_body(keyCredentials=stored))

    def patch(request: Any) -> tuple[int, dict[str, str], str]:
        uploaded[:] = json.loads(request.body)["keyCredentials"]
        stored[:] = [*uploaded[:-1], {**uploaded[-1], "keyId": "key-new"}]
        return 204, {}, ""

    mock.add_callback(responses.GET, f"{G}/applications/{APP_OBJECT}", callback=get)
    mock.add_callback(responses.PATCH, f"{G}/applications/{APP_OBJECT}", callback=patch)
    first = apply_plan(rotation("run-1"), graph, settings(), journal=journal, progress=lambda line: None)
    assert [r.status for r in first] == [APPLIED, APPLIED]
    assert uploaded[0] == old
    pem = Path(first[0].output["pem_path"])
    assert uploaded[1]["key"] == certs.read_certificate(pem, None, "test").der_base64
    # A re-run (another stamp, as fresh facts give) reuses the certificate and finds its key uploaded.
    second = apply_plan(rotation("run-2"), graph, settings(), journal=journal, progress=lambda line: None)
    assert [r.status for r in second] == [ALREADY_DONE, ALREADY_DONE]
    assert second[0].output["pem_path"] == str(pem)
    assert not (tmp_path / "run-2").exists()
    assert [call.request.method for call in mock.calls].count("PATCH") == 1
