"""CBA-AUD-013: an app holding Exchange app-only access that has not signed in for `unused_days` is unused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cbacheck import wellknown
from cbacheck.auditfacts import AuditFacts, Holder
from cbacheck.catalogue import AUDIT_CATALOGUE
from cbacheck.config import Settings, resolve
from cbacheck.errors import ConfigError
from cbacheck.facts import AppRegistration, ServicePrincipal
from cbacheck.report import audit

NOW = datetime(2026, 12, 1, tzinfo=UTC)
EXO = wellknown.EXCHANGE_ONLINE_DISPLAY_NAME


def _holder(*, created: datetime | None = None, managed: bool = False, registered: bool = True) -> Holder:
    sp = ServicePrincipal("sp-1", "APP-1", "app one", True, ())
    app = AppRegistration("obj-1", "app-1", "app one", "AzureADMyOrg", (), (), (), {}, created=created)
    kind = "ManagedIdentity" if managed else "Application"
    return Holder(sp, kind, (f"{EXO}/Exchange.ManageAsApp",), None if managed or not registered else app)


def _facts(holder: Holder, sign_ins: dict[str, str] | None, not_read: dict[str, str] | None = None) -> AuditFacts:
    return AuditFacts(NOW, "t", (holder,), {}, last_sign_in=sign_ins, not_read=not_read or {})


def _ago(days: int) -> str:
    return (NOW - timedelta(days=days, hours=1)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("days", "window", "outcome"), [(10, 90, "passed"), (90, 90, "passed"), (91, 90, "failed"), (40, 30, "failed")]
)
def test_a_sign_in_older_than_unused_days_fails(days: int, window: int, outcome: str) -> None:
    holder = _holder(created=NOW - timedelta(days=400))
    result = audit.unused(holder, _facts(holder, {"app-1": _ago(days)}), Settings(unused_days=window))
    assert result.outcome == outcome, result
    assert f"{days} days ago" in result.message


def test_graphs_seven_fraction_digits_are_read() -> None:
    holder = _holder()
    stamp = (NOW - timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%S.1234567Z")
    assert audit.unused(holder, _facts(holder, {"app-1": stamp}), Settings()).outcome == "failed"


@pytest.mark.parametrize(("created_days", "outcome"), [(45, "passed"), (400, "failed"), (None, "failed")])
def test_an_app_that_never_signed_in_counts_from_its_creation(created_days: int | None, outcome: str) -> None:
    created = None if created_days is None else NOW - timedelta(days=created_days)
    holder = _holder(created=created)
    assert audit.unused(holder, _facts(holder, {}), Settings()).outcome == outcome


def test_another_tenants_app_that_never_signed_in_is_unused() -> None:
    holder = _holder(registered=False)
    assert audit.unused(holder, _facts(holder, {}), Settings()).outcome == "failed"
    assert "unused" in [rule.__name__ for rule in audit.rules_for(holder)]


def test_an_unread_sign_in_report_is_an_error_naming_the_permission_never_a_pass() -> None:
    holder = _holder(created=NOW)
    facts = _facts(
        holder, None, {"last sign-in": "not read: 403 Authorization_RequestDenied (needs AuditLog.Read.All)"}
    )
    result = audit.unused(holder, facts, Settings())
    assert result.outcome == "error" and "needs AuditLog.Read.All" in result.message
    assert audit.verdict_of([result], "high") == "error"


def test_managed_identities_are_not_judged_for_use() -> None:
    assert "unused" not in [rule.__name__ for rule in audit.rules_for(_holder(managed=True))]


def test_the_requirement_is_in_the_audit_catalogue_with_its_severity() -> None:
    assert AUDIT_CATALOGUE["CBA-AUD-013"].severity == "medium"


def test_unused_days_is_policy_a_found_file_may_not_set(tmp_path: Path) -> None:
    (tmp_path / "cbacheck.toml").write_text("unused_days = 9999\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unused_days"):
        resolve(env={}, cwd=tmp_path, app_under_test=False)
    assert resolve({"unused_days": 30}, env={}, cwd=tmp_path / "elsewhere").unused_days == 30
    assert Settings().unused_days == 90
