"""The tenant audit's rules over facts in memory: EWS policy, rule choice by what a principal holds, the verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cbacheck import wellknown
from cbacheck.auditfacts import AccessPolicy, ApplicationRoleAssignment, AuditFacts, EwsPolicy, Holder
from cbacheck.collect.application_rbac import access_policies, application_assignments
from cbacheck.config import Settings
from cbacheck.facts import (
    AppRegistration,
    DirectoryRoleAssignment,
    ExchangeServicePrincipal,
    KeyCredential,
    ServicePrincipal,
)
from cbacheck.report import audit

NOW = datetime(2026, 12, 1, tzinfo=UTC)
EXO = wellknown.EXCHANGE_ONLINE_DISPLAY_NAME


@pytest.mark.parametrize(
    ("enabled", "allowed", "app_id", "accepted"),
    [
        (None, [], "a", True),  # not configured: nobody restricted by app id
        (None, ["b"], "a", True),  # the list has no effect while EwsEnabled is $null
        (True, [], "a", True),  # an empty list restricts nobody
        (True, ["A"], "a", True),
        (True, ["b"], "a", False),
        (False, ["a"], "a", False),  # $false blocks every app
    ],
)
def test_ews_allow_list_restricts_only_when_enabled_and_not_empty(
    enabled: bool | None, allowed: list[str], app_id: str, accepted: bool
) -> None:
    policy = EwsPolicy(enabled, frozenset(a.lower() for a in allowed))
    assert policy.accepts(app_id) is accepted


def _holder(permissions: tuple[str, ...], *, managed: bool = False, keys: tuple[KeyCredential, ...] = ()) -> Holder:
    sp = ServicePrincipal("sp-1", "app-1", "app one", True, ())
    app = None if managed else AppRegistration("obj-1", "app-1", "app one", "AzureADMyOrg", keys, (), (), {})
    return Holder(sp, "ManagedIdentity" if managed else "Application", permissions, app)


def _facts(holder: Holder, roles: tuple[DirectoryRoleAssignment, ...] = ()) -> AuditFacts:
    return AuditFacts(NOW, "t", (holder,), {"sp-1": roles} if roles else {})


def test_managed_identities_get_roles_and_permissions_only() -> None:
    holder = _holder((f"{EXO}/Exchange.ManageAsApp",), managed=True)
    assert [rule.__name__ for rule in audit.rules_for(holder)] == ["not_over_privileged", "authorised"]


def test_a_key_expiring_within_expiry_days_fails_and_later_passes() -> None:
    key = KeyCredential(
        "k1", "AsymmetricX509Cert", "Verify", "", NOW - timedelta(days=30), NOW + timedelta(days=10), None, None
    )
    holder = _holder((f"{EXO}/Exchange.ManageAsApp",), keys=(key,))
    assert audit.key_expiry(holder, _facts(holder), Settings(expiry_days=30)).outcome == "failed"
    assert audit.key_expiry(holder, _facts(holder), Settings(expiry_days=5)).outcome == "passed"


def test_global_administrator_authorises_but_is_over_privileged() -> None:
    holder = _holder((f"{EXO}/Exchange.ManageAsApp",))
    role = DirectoryRoleAssignment("r", "sp-1", wellknown.GLOBAL_ADMINISTRATOR, "", "Global Administrator", "/", None)
    facts = _facts(holder, (role,))
    assert audit.authorised(holder, facts, Settings()).outcome == "passed"
    assert audit.not_over_privileged(holder, facts, Settings()).outcome == "failed"


def test_unread_role_assignments_make_authorisation_an_error_never_a_pass() -> None:
    holder = _holder((f"{EXO}/Exchange.ManageAsApp",))
    facts = AuditFacts(NOW, "t", (holder,), {}, not_read={"directory role active assignments": "403"})
    assert audit.authorised(holder, facts, Settings()).outcome == "error"


def test_application_role_assignments_are_mapped_to_principals_with_their_scope() -> None:
    pointers = [ExchangeServicePrincipal("app-1", "SP-1", "SP-1", "app one")]
    items = [
        {"Role": "Application Mail.Read", "RoleAssignee": "sp-1", "CustomResourceScope": "Canadian users"},
        {"Role": "Application Calendars.Read", "RoleAssignee": "app one", "RecipientAdministrativeUnitScope": "au-1"},
        {"Role": "Application Contacts.Read", "RoleAssignee": "SP-1"},  # the whole organization
        {"Role": "Application Mail.Send", "RoleAssignee": "SP-1", "Enabled": False},
        {"Role": "Application Mail.Read", "RoleAssignee": "another pointer"},
        {"Role": "View-Only Configuration", "RoleAssignee": "SP-1"},  # not an Application role
    ]
    scopes = [{"Name": "Canadian Users", "RecipientFilter": "CustomAttribute1 -eq '012332'"}]
    found = application_assignments(items, pointers, scopes)
    assert [a.describe() for a in found["sp-1"]] == [
        "Application Mail.Read over management scope Canadian users (CustomAttribute1 -eq '012332')",
        "Application Calendars.Read over administrative unit au-1",
        "Application Contacts.Read over the whole organization (no scope)",
    ]
    assert set(found) == {"sp-1"}


def _mail_facts(holder: Holder, scoped: bool | None, policies: tuple[AccessPolicy, ...] = ()) -> AuditFacts:
    if scoped is None:
        unread = {"RBAC for Applications": "not read: 403 (needs X)"}
        return AuditFacts(NOW, "t", (holder,), {}, not_read=unread, access_policies=policies)
    grant = ApplicationRoleAssignment("a", "Application Mail.Read", "sp-1", "management scope S" if scoped else None)
    return AuditFacts(NOW, "t", (holder,), {}, application_rbac={"sp-1": (grant,)}, access_policies=policies)


def test_an_entra_mailbox_grant_fails_whatever_rbac_for_applications_adds() -> None:
    holder = _holder(("Microsoft Graph/Mail.Read", f"{wellknown.RBAC_FOR_APPLICATIONS}/Application Mail.Read"))
    rules = [rule.__name__ for rule in audit.rules_for(holder)]
    assert "graph_mailbox" in rules and "application_rbac_scoped" in rules
    both = audit.graph_mailbox(holder, _mail_facts(holder, True), Settings())
    assert (
        both.outcome == "failed" and "management scope S" in both.message and "remove the Entra grant" in both.message
    )
    unread = audit.graph_mailbox(holder, _mail_facts(holder, None), Settings())
    assert unread.outcome == "failed" and "RBAC for Applications not read: 403 (needs X)" in unread.message
    assert audit.application_rbac_scoped(holder, _mail_facts(holder, True), Settings()).outcome == "passed"
    assert audit.application_rbac_scoped(holder, _mail_facts(holder, False), Settings()).outcome == "failed"


def test_a_principal_with_mailbox_access_only_through_rbac_for_applications_is_judged_by_its_scope() -> None:
    holder = _holder((f"{wellknown.RBAC_FOR_APPLICATIONS}/Application Mail.Read",))
    rules = [rule.__name__ for rule in audit.rules_for(holder)]
    assert "application_rbac_scoped" in rules and "graph_mailbox" not in rules


def test_an_application_access_policy_decides_whether_an_entra_grant_is_scoped() -> None:
    holder = _holder(("Microsoft Graph/Mail.Read",))
    restrict = AccessPolicy("app-1", "RestrictAccess", "Sales")
    deny = AccessPolicy("*", "DenyAccess", "Executives")  # "*" names every app
    other = AccessPolicy("app-2", "RestrictAccess", "Elsewhere")
    limited = audit.graph_mailbox(holder, _mail_facts(holder, False, (restrict, deny)), Settings())
    assert limited.outcome == "passed" and "Sales (RestrictAccess)" in limited.message
    denied = audit.graph_mailbox(holder, _mail_facts(holder, False, (deny, other)), Settings())
    assert denied.outcome == "failed" and "every mailbox of the tenant but Executives (DenyAccess)" in denied.message
    unread = AuditFacts(NOW, "t", (holder,), {}, not_read={"Application Access Policies": "not read: 401 (needs Y)"})
    unknown = audit.graph_mailbox(holder, unread, Settings())
    assert unknown.outcome == "error" and "not read: 401 (needs Y)" in unknown.message


def test_access_policies_are_read_one_per_app_they_name() -> None:
    items = [
        {"AppId": "APP-1", "AccessRight": "RestrictAccess", "ScopeName": "Sales"},
        {"AppId": ["app-2", "app-3"], "AccessRight": "DenyAccess", "ScopeName": "Executives"},
    ]
    assert [(p.app_id, p.access_right) for p in access_policies(items)] == [
        ("app-1", "RestrictAccess"),
        ("app-2", "DenyAccess"),
        ("app-3", "DenyAccess"),
    ]
