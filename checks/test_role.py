"""Link 5, the directory role Exchange maps to its permissions (CBA-ROLE-*)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from cbacheck import wellknown
from cbacheck.chain import require
from cbacheck.config import Settings, accepted_role_ids
from cbacheck.facts import DirectoryRoleAssignment, ServicePrincipal, TenantFacts

if TYPE_CHECKING:
    from cbacheck.evidence import Evidence

NO_SP = "the app has no service principal to hold a directory role"


def role_name(template_id: str, fallback: str = "") -> str:
    return wellknown.DIRECTORY_ROLE_NAMES.get(template_id, fallback or template_id)


def _assignment_summary(assignment: DirectoryRoleAssignment) -> dict[str, Any]:
    template = assignment.template_id
    return {
        "id": assignment.id,
        "role": role_name(template, assignment.role_display_name),
        "roleTemplateId": template,
        "directoryScopeId": assignment.directory_scope_id,
        "appScopeId": assignment.app_scope_id,
        "status": assignment.status,
    }


def _scope_text(assignment: DirectoryRoleAssignment) -> str:
    if assignment.app_scope_id:
        return f"app scope {assignment.app_scope_id!r}"
    if assignment.directory_scope_id.startswith("/administrativeUnits/"):
        return f"administrative unit scope {assignment.directory_scope_id!r}"
    return f"scope {assignment.directory_scope_id!r}"


def _why_no_tenant_wide_role(
    active: tuple[DirectoryRoleAssignment, ...], eligible: tuple[DirectoryRoleAssignment, ...], accepted: frozenset[str]
) -> list[str]:
    """What the app holds instead of an accepted role at tenant scope: a narrower scope, PIM eligibility, or others."""
    reasons = [
        f"holds {role_name(a.template_id)} at {_scope_text(a)}, which Exchange does not honour "
        "(not the tenant scope '/')"
        for a in active
        if a.template_id in accepted
    ]
    only_eligible = [a for a in eligible if a.template_id in accepted]
    if only_eligible:
        names = ", ".join(role_name(a.template_id) for a in only_eligible)
        reasons.append(
            f"is only eligible for {names} (PIM), not actively assigned; eligible roles never appear in an app "
            "token's wids"
        )
    if not reasons:
        held = ", ".join(role_name(a.template_id, a.role_display_name) for a in active) or "no role"
        reasons.append(f"holds {held}")
    return reasons


@pytest.mark.requirement("CBA-ROLE-001")
def test_supported_role_assigned_at_tenant_scope(
    app_sp: ServicePrincipal | None,
    role_assignments: tuple[DirectoryRoleAssignment, ...],
    role_eligibilities: tuple[DirectoryRoleAssignment, ...],
    tenant_facts: TenantFacts,
    cba_settings: Settings,
    evidence: Evidence,
) -> None:
    """A supported directory role is actively assigned at tenant scope

    Exchange builds the app's permissions from the directory roles in the token's wids claim. Only an
    active assignment at directory scope "/" reaches the token: an assignment scoped to an
    administrative unit, or one that is only eligible (PIM), does not.
    """
    principal = require(app_sp, "CBA-APP-002", NO_SP)
    accepted = accepted_role_ids(cba_settings)
    accepted_names = ", ".join(sorted(role_name(r) for r in accepted))
    evidence.observed("active roleAssignments", [_assignment_summary(a) for a in role_assignments])
    evidence.observed("eligible roleEligibilitySchedules", [_assignment_summary(a) for a in role_eligibilities])
    if tenant_facts.pim_note:
        evidence.add("eligible assignments", tenant_facts.pim_note)
    evidence.add("accepted roles", sorted(accepted))
    unsupported = sorted(role_name(r) for r in accepted if r not in wellknown.EXCHANGE_SUPPORTED_ROLES)
    if unsupported:
        evidence.add("accepted but not in Microsoft's supported list for Exchange app-only", unsupported)
    evidence.expected(f"an active assignment of {accepted_names} with directoryScopeId '/'")

    assert any(a.grants_tenant_wide(accepted) for a in role_assignments), (
        f"service principal {principal.object_id} of app {principal.app_id} "
        f"{'; and '.join(_why_no_tenant_wide_role(role_assignments, role_eligibilities, accepted))}; "
        f"expected an active assignment of {accepted_names} at tenant scope '/'"
    )


@pytest.mark.requirement("CBA-ROLE-002")
def test_no_over_privileged_role(
    app_sp: ServicePrincipal | None,
    role_assignments: tuple[DirectoryRoleAssignment, ...],
    role_eligibilities: tuple[DirectoryRoleAssignment, ...],
    tenant_facts: TenantFacts,
    evidence: Evidence,
) -> None:
    """The app holds no role above what it needs

    Global Administrator and Privileged Role Administrator let a stolen certificate take over the
    whole tenant; Exchange automation never needs them. Eligible assignments count: the app can
    activate them.
    """
    principal = require(app_sp, "CBA-APP-002", NO_SP)
    over = [a for a in (*role_assignments, *role_eligibilities) if a.template_id in wellknown.OVER_PRIVILEGED_ROLES]
    evidence.observed("roles", [_assignment_summary(a) for a in (*role_assignments, *role_eligibilities)])
    if tenant_facts.pim_note:
        evidence.add("eligible assignments", tenant_facts.pim_note)
    evidence.expected("none of " + ", ".join(sorted(role_name(r) for r in wellknown.OVER_PRIVILEGED_ROLES)))
    findings = ", ".join(f"{role_name(a.template_id)} ({a.status}, {_scope_text(a)})" for a in over)
    assert not over, (
        f"service principal {principal.object_id} of app {principal.app_id} holds {findings}; expected no role "
        "above what Exchange automation needs (Exchange Administrator, or Global Reader for read-only use)"
    )
