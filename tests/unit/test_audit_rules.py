"""The tenant audit's rules over facts in memory: EWS policy, rule choice by what a principal holds, the verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cbacheck import wellknown
from cbacheck.auditfacts import AuditFacts, EwsPolicy, Holder
from cbacheck.config import Settings
from cbacheck.facts import AppRegistration, DirectoryRoleAssignment, KeyCredential, ServicePrincipal
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
