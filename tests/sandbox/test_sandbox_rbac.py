"""Exchange RBAC in the sandbox: the service principal pointer, role groups, assignments and the cmdlet table."""

from __future__ import annotations

import pytest
from sandboxkit import Client, claims, token

from cbacheck import wellknown
from cbacheck.sandbox import Sandbox, SandboxError

APP_SP = "b1c2d3e4-0001-4f5a-9b8c-000000000011"


def message_of(resp: object) -> str:
    return str(resp.json()["error"]["message"])  # type: ignore[attr-defined]


def test_rbac_path_without_wids_is_accepted_for_the_roles_cmdlets_only() -> None:
    with Sandbox("rbac-only") as sb:
        access = token(sb)
        assert "wids" not in claims(access)
        app = Client(sb, access)
        assert app.exchange("Get-OrganizationConfig").status_code == 200
        refused = app.exchange("Get-Mailbox")
        assert refused.status_code == 401
        assert message_of(refused) == wellknown.EXCHANGE_CMDLET_NOT_ALLOWED.format(cmdlet="Get-Mailbox")


def test_pointer_with_the_app_registrations_object_id_never_matches() -> None:
    with Sandbox("rbac-wrong-object-id") as sb:
        resp = Client(sb, token(sb)).exchange("Get-OrganizationConfig")
        app_id = sb.identities["under_test"].app_id
        assert message_of(resp) == wellknown.EXCHANGE_ROLE_NOT_SUPPORTED.format(app_id=app_id)


def test_role_assignee_returns_direct_and_role_group_assignments() -> None:
    with Sandbox("option3-combined") as sb:
        auditor = Client(sb, token(sb, "auditor"))
        found = auditor.exchange("Get-ManagementRoleAssignment", {"RoleAssignee": APP_SP}).json()["value"]
        assert {(a["Role"], a["RoleAssigneeType"]) for a in found} == {
            ("View-Only Recipients", "ServicePrincipal"),
            ("View-Only Configuration", "RoleGroup"),
        }
        direct = next(a for a in found if a["RoleAssigneeType"] == "ServicePrincipal")
        assert direct["CustomRecipientWriteScope"] == "Automation mailboxes"
        roles = auditor.exchange("Get-ManagementRole", {"Cmdlet": "Get-Mailbox"}).json()["value"]
        assert "View-Only Recipients" in {r["Name"] for r in roles}


def test_writes_need_role_management_and_add_the_member() -> None:
    with Sandbox("rbac-wrong-object-id") as sb:
        pointer = {"AppId": sb.identities["under_test"].app_id, "ObjectId": APP_SP, "DisplayName": "automation"}
        auditor = Client(sb, token(sb, "auditor"))
        assert message_of(auditor.exchange("New-ServicePrincipal", pointer)) == (
            wellknown.EXCHANGE_CMDLET_NOT_ALLOWED.format(cmdlet="New-ServicePrincipal")
        )
        admin = Client(sb, token(sb, "admin"))
        assert admin.exchange("New-ServicePrincipal", pointer).status_code == 200
        assert admin.exchange("New-ServicePrincipal", pointer).status_code == 400  # the same ObjectId twice
        group = {"Identity": "Exchange automation readers", "Member": APP_SP}
        assert admin.exchange("Add-RoleGroupMember", group).status_code == 200
        members = admin.exchange("Get-RoleGroupMember", {"Identity": "Exchange automation readers"}).json()["value"]
        assert APP_SP in {m["ObjectId"] for m in members}
        assert Client(sb, token(sb)).exchange("Get-OrganizationConfig").status_code == 200
        assert sb.dump()["exchange"]["servicePrincipals"][-1]["ObjectId"] == APP_SP


def test_state_validation_names_the_bad_exchange_element(tmp_path: object) -> None:
    from cbacheck.sandbox.validation import validate

    doc = {
        "organization": [{"id": "3c6f9a2e-51d4-4b8e-9f07-2a1d5c8e4b60"}],
        "domains": [{"id": "x.onmicrosoft.com", "isInitial": True}],
        "exchange": {"roleGroups": [{"Name": "g", "Roles": ["No Such Role"]}]},
    }
    with pytest.raises(SandboxError, match=r"\$\.exchange\.roleGroups\[0\]\.Roles: no management role 'No Such Role'"):
        validate(doc, "test")
    doc["exchange"] = {"servicePrincipals": [{"AppId": "not-a-guid", "ObjectId": APP_SP}]}
    with pytest.raises(SandboxError, match=r"\$\.exchange\.servicePrincipals\[0\]"):
        validate(doc, "test")


def test_an_identity_that_names_nothing_returns_every_pointer_and_group_as_documented() -> None:
    with Sandbox("option3-combined") as sb:
        auditor = Client(sb, token(sb, "auditor"))
        every = auditor.exchange("Get-ServicePrincipal").json()["value"]
        assert len(every) == 3  # the app's, the auditor's and the admin's pointers
        assert auditor.exchange("Get-ServicePrincipal", {"Identity": "nobody"}).json()["value"] == every
        one = auditor.exchange("Get-ServicePrincipal", {"Identity": APP_SP}).json()["value"]
        assert [p["ObjectId"] for p in one] == [APP_SP]
        groups = auditor.exchange("Get-RoleGroup", {"Identity": "no such group"}).json()["value"]
        assert "Organization Management" in {g["Name"] for g in groups} and len(groups) > 1
