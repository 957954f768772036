"""The token and Exchange links of an audited app whose certificate was supplied, judged by `cbacheck run`'s own checks.

CBA-TOKEN-001..003 and CBA-EXO-001 are the functions of checks/test_connect.py, called here over the app's facts
(one definition each): the audit builds the app's `TenantFacts` from what it read tenant-wide plus the app's own
token attempt and probe, passes the fixtures each check names, and reads the outcome the way the plugin does
(returned: passed; `UpstreamFailure`: blocked; other `AssertionError`: failed; `FactUnavailable`: error).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Final

from cbacheck import profiles, wellknown
from cbacheck.auditfacts import AppLinks, AuditFacts, Holder
from cbacheck.chain import UpstreamFailure
from cbacheck.config import Settings, setting_fields
from cbacheck.evidence import Evidence, redacted
from cbacheck.facts import (
    AppRoleAssignment,
    DirectoryRoleAssignment,
    ExchangeRbac,
    FactUnavailable,
    TenantFacts,
    Unavailable,
    available,
)

NOT_READ_BY_THE_AUDIT: Final = "not read by the audit"


def _roles(facts: AuditFacts, holder: Holder, status: str) -> tuple[DirectoryRoleAssignment, ...] | Unavailable:
    unread = facts.not_read.get(f"directory role {status} assignments")
    if unread:
        return Unavailable(f"the app's {status} directory role assignments", unread)
    return tuple(r for r in facts.roles_of(holder.sp.object_id) if r.status == status)


def _grants(holder: Holder) -> tuple[AppRoleAssignment, ...]:
    """Exchange.ManageAsApp on Office 365 Exchange Online, as the audit found it on that resource (by value)."""
    if f"{wellknown.EXCHANGE_ONLINE_DISPLAY_NAME}/{wellknown.EXCHANGE_MANAGE_AS_APP}" not in holder.permissions:
        return ()
    return (
        AppRoleAssignment(
            "read by the audit",
            holder.sp.object_id,
            "",
            wellknown.EXCHANGE_ONLINE_DISPLAY_NAME,
            wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
        ),
    )


def _rbac(facts: AuditFacts, holder: Holder) -> ExchangeRbac | Unavailable:
    """The audit's Exchange RBAC cut down to this app's pointers, as `cbacheck run` reads one app's."""
    rbac = facts.exchange_rbac
    if rbac is None:
        return Unavailable("the app's Exchange RBAC", facts.not_read.get("Exchange RBAC", NOT_READ_BY_THE_AUDIT))
    pointers = tuple(p for p in rbac.pointers if p.app_id.lower() == holder.sp.app_id.lower())
    names = {p.object_id.lower() for p in pointers}
    return ExchangeRbac(pointers, tuple(a for a in rbac.assignments if a.pointer.lower() in names), rbac.role_groups)


def tenant_facts_of(holder: Holder, facts: AuditFacts, links: AppLinks) -> TenantFacts:
    """The facts `cbacheck run` would hold for this app, from the audit's reads and the app's own links."""
    return TenantFacts(
        collected_at=facts.collected_at,
        tenant=facts.tenant,
        app_id=holder.sp.app_id,
        organization_setting=None,
        organization=Unavailable("the organization (tenant)", NOT_READ_BY_THE_AUDIT),
        app=holder.app,
        app_sp=holder.sp,
        exchange_sp=Unavailable("the Office 365 Exchange Online service principal", NOT_READ_BY_THE_AUDIT),
        app_role_grants=_grants(holder),
        role_assignments=_roles(facts, holder, "active"),
        role_eligibilities=_roles(facts, holder, "eligible"),
        token=links.token,
        exchange=links.exchange,
        auditor="the audit's auditor",
        exchange_rbac=_rbac(facts, holder),
    )


# `cbacheck run`'s upstream requirements and the audit's for the same link, named beside a blocked outcome.
AUDIT_EQUIVALENT: Final = {"CBA-ROLE-001": "CBA-AUD-008", "CBA-KEY-003": "CBA-AUD-004"}


def _judged(check: Callable[..., None], fixtures: dict[str, Any], links: AppLinks) -> tuple[str, str]:
    """(outcome, message) of one check over the fixtures it names."""
    import pytest  # the checks' own dependency, loaded only when there are links to judge

    try:
        values = dict(fixtures)
        wanted = inspect.signature(check).parameters
        if "token_attempt" in wanted:
            values["token_attempt"] = available(links.token)
        if "exchange_probe" in wanted:
            values["exchange_probe"] = available(links.exchange)
        check(**{name: values[name] for name in wanted})
    except UpstreamFailure as err:
        equivalent = AUDIT_EQUIVALENT.get(err.upstream)
        return "blocked", f"{err}" + (f" (in this audit: {equivalent})" if equivalent else "")
    except AssertionError as err:
        return "failed", str(err)
    except FactUnavailable as err:
        return "error", f"could not verify: {err}"
    except pytest.skip.Exception as err:
        return "skipped", str(err.msg)
    return "passed", f"with the supplied certificate {links.certificate} (SHA-1 {links.thumbprint})"


def link_outcomes(holder: Holder, facts: AuditFacts, settings: Settings) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(requirement ID, outcome, message, evidence) of the token and Exchange links; none without a certificate.

    The evidence is what the check recorded (the token's decoded claims, Exchange's answer), with every string
    holding a secret setting's value withheld, as `cbacheck run`'s reports do."""
    links = facts.links.get(holder.sp.app_id.lower())
    if links is None:
        return []
    # Imported here: the checks import pytest, which `cbacheck audit --help` must not load (test_startup.py).
    from cbacheck.checks import test_connect

    link_checks: tuple[tuple[str, Callable[..., None]], ...] = (
        ("CBA-TOKEN-001", test_connect.test_app_obtains_exchange_token),
        ("CBA-TOKEN-002", test_connect.test_token_claims_are_right),
        ("CBA-TOKEN-003", test_connect.test_local_clock_agrees_with_entra),
        ("CBA-EXO-001", test_connect.test_exchange_accepts_token),
    )
    fixtures: dict[str, Any] = {
        "tenant_facts": tenant_facts_of(holder, facts, links),
        "cba_settings": settings,
        "cba_profile": profiles.PROFILES[profiles.DEFAULT],
    }
    secrets = [
        str(getattr(settings, spec.name) or "") for spec in setting_fields() if spec.metadata["kind"] == "secret"
    ]
    found = []
    for req_id, check in link_checks:
        evidence = Evidence(req_id)
        outcome, message = _judged(check, {**fixtures, "evidence": evidence}, links)
        found.append((req_id, outcome, redacted(message, secrets), redacted(evidence.as_dict(), secrets)))
    return found
