"""Link 5, the directory role Exchange maps to its permissions (CBA-ROLE-*)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from cbacheck import profiles, wellknown
from cbacheck.chain import cannot_verify, follows_from, require
from cbacheck.config import Settings, accepted_role_ids, accepted_role_ids_for
from cbacheck.facts import DirectoryRoleAssignment, ExchangeRbac, ServicePrincipal, TenantFacts
from cbacheck.profiles import Profile

if TYPE_CHECKING:
    from cbacheck.evidence import Evidence

NO_SP = "the app has no service principal to hold a directory role"
# Microsoft's three ways to authorise the app in Exchange (Option 1 Entra roles, Option 2 Exchange RBAC,
# Option 3 both): https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2#step-5-assign-role-permissions-to-the-application
ENTRA_PATH = "Entra role (wids)"
RBAC_PATH = "Exchange RBAC (service principal pointer)"
RBAC_UNREAD = "effective: Exchange accepted the app; its RBAC could not be read"
AUDITOR_EXCHANGE_NEEDS = "Exchange.ManageAsApp and View-Only Organization Management (or Global Reader) for the auditor"


def accepted_for(profile: Profile, settings: Settings) -> frozenset[str]:
    """The roles that satisfy CBA-ROLE-001 for the profile (config.accepted_role_ids_for)."""
    return accepted_role_ids_for(settings, profile)


def _rbac_of(profile: Profile, tenant_facts: TenantFacts) -> tuple[ExchangeRbac | None, str]:
    """The app's RBAC in the profile's service (its own role groups when it has them), and why it could not be
    read ("" when it was)."""
    if not profile.exchange_rbac_collected:
        return None, f"the role groups of profile {profile.name} are not read by this version"
    return tenant_facts.exchange_rbac_read(profile.rbac_key)


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


def rbac_evidence(rbac: ExchangeRbac, sp_object_id: str) -> dict[str, Any]:
    """The pointers with the app's AppId, which one Exchange matches, its role groups, roles and write scopes."""
    pointer = rbac.pointer_matches(sp_object_id)
    return {
        "pointers": [p.summary() for p in rbac.pointers],
        "matching pointer (ObjectId = the service principal's object id)": pointer.object_id if pointer else None,
        "role groups": [g.name for g in rbac.groups_of(pointer)] if pointer else [],
        "roles and write scopes": rbac.write_scopes(sp_object_id),
    }


def _rbac_findings(rbac: ExchangeRbac | None, sp_object_id: str) -> list[str]:
    """Why Exchange RBAC does not authorise the app (empty when it does, or when there is nothing)."""
    if rbac is None:
        return []
    wrong = rbac.mismatched_pointers(sp_object_id)
    findings = [
        f"has an Exchange service principal pointer with ObjectId {p.object_id}, which is not its service "
        f"principal's object id {sp_object_id} (made with the app registration's object id?); Exchange never "
        "matches it"
        for p in wrong
    ]
    pointer = rbac.pointer_matches(sp_object_id)
    if pointer is not None and not rbac.assignments_of(pointer):
        findings.append(
            f"its Exchange pointer {pointer.object_id} holds no enabled role (no role group, no assignment)"
        )
    return findings


def _record_accepted(evidence: Evidence, accepted: frozenset[str], profile: Profile) -> None:
    evidence.add("accepted roles", sorted(accepted))
    unsupported = sorted(role_name(r) for r in accepted if r not in profile.supported_roles)
    if unsupported:
        evidence.add("accepted but not in Microsoft's supported list for Exchange app-only", unsupported)
    if profile.name != profiles.DEFAULT:
        evidence.add("profile", profile.name)


def _eligibilities_for_explaining(facts: TenantFacts, evidence: Evidence) -> tuple[DirectoryRoleAssignment, ...]:
    """The PIM eligibilities when they were read (shown as evidence), else none, with the reason shown."""
    eligible: tuple[DirectoryRoleAssignment, ...] | None = facts.known("role_eligibilities")
    if eligible is None:
        evidence.add("eligible assignments", f"not read ({facts.role_eligibilities}); the verdict rests on active ones")
        return ()
    evidence.observed("eligible roleEligibilitySchedules", [_assignment_summary(a) for a in eligible])
    if facts.pim_note:
        evidence.add("eligible assignments", facts.pim_note)
    return eligible


@pytest.mark.requirement("CBA-ROLE-001")
def test_supported_role_assigned_at_tenant_scope(
    app_sp: ServicePrincipal | None,
    role_assignments: tuple[DirectoryRoleAssignment, ...],
    tenant_facts: TenantFacts,
    cba_settings: Settings,
    cba_profile: Profile,
    evidence: Evidence,
) -> None:
    """Exchange authorises the app: a supported directory role at tenant scope, or Exchange RBAC

    Microsoft documents three ways: an Entra role, which reaches Exchange through the token's wids only
    when actively assigned at directory scope "/" (not an administrative unit, not only eligible);
    Exchange role groups or management role assignments given to the app's service principal pointer
    (New-ServicePrincipal with the service principal's object id); or both.
    """
    principal = require(app_sp, "CBA-APP-002", NO_SP)
    accepted = accepted_for(cba_profile, cba_settings)
    accepted_names = ", ".join(sorted(role_name(r) for r in accepted))
    evidence.observed("active roleAssignments", [_assignment_summary(a) for a in role_assignments])
    # The verdict rests on the active assignments; eligibilities only explain a failure, so a tenant whose
    # PIM cannot be read still gets one (https://learn.microsoft.com/graph/api/resources/privilegedidentitymanagementv3-overview).
    role_eligibilities = _eligibilities_for_explaining(tenant_facts, evidence)
    _record_accepted(evidence, accepted, cba_profile)
    rbac, unread = _rbac_of(cba_profile, tenant_facts)
    if rbac is not None:
        evidence.observed("Exchange RBAC", rbac_evidence(rbac, principal.object_id))
    elif unread:
        evidence.add("Exchange RBAC", unread)
    evidence.expected(
        f"an active assignment of {accepted_names} with directoryScopeId '/', or {cba_profile.rbac_grant} of the "
        "app's service principal pointer, or both"
    )
    paths = [ENTRA_PATH] if any(a.grants_tenant_wide(accepted) for a in role_assignments) else []
    if rbac is not None and rbac.authorised(principal.object_id):
        paths.append(RBAC_PATH.replace("Exchange", cba_profile.rbac_service, 1))
    if not paths and unread:
        if tenant_facts.exchange_accepted(cba_profile.probe_key):
            evidence.add("authorised by", [RBAC_UNREAD])
            return
        held = "; and ".join(_why_no_tenant_wide_role(role_assignments, role_eligibilities, accepted))
        cannot_verify(
            f"whether profile {cba_profile.name} authorises the app",
            f"service principal {principal.object_id} {held}, none of {accepted_names} at tenant scope; "
            f"{cba_profile.rbac_service} RBAC: {unread}, so a role group there cannot be ruled out",
            permission=cba_profile.auditor_rbac_needs,
        )
    evidence.add("authorised by", paths)
    service = cba_profile.rbac_service
    no_rbac = [f"has no {service} RBAC role through a service principal pointer"]
    reasons = _why_no_tenant_wide_role(role_assignments, role_eligibilities, accepted)
    reasons += _rbac_findings(rbac, principal.object_id) or no_rbac
    assert paths, (
        f"service principal {principal.object_id} of app {principal.app_id} {'; and '.join(reasons)}; expected an "
        f"active assignment of {accepted_names} at tenant scope '/', or {cba_profile.rbac_grant} for its service "
        "principal pointer"
    )


@pytest.mark.requirement("CBA-ROLE-003")
def test_exchange_roles_grant_the_cmdlets_the_automation_runs(
    app_sp: ServicePrincipal | None, tenant_facts: TenantFacts, cba_settings: Settings, evidence: Evidence
) -> None:
    """Each cmdlet the automation runs is granted by a role the app holds in Exchange

    exchange_cmdlets names the cmdlets the automation runs; they are never executed. Which of the app's
    assigned Exchange roles holds each is read with Get-ManagementRole -Cmdlet (custom roles included),
    so a least-privilege role group that lacks one is found before the script meets "User is not
    allowed to call ...".
    """
    cmdlets = cba_settings.exchange_cmdlets
    evidence.observed("exchange_cmdlets", list(cmdlets))
    evidence.expected("each cmdlet in exchange_cmdlets is held by a role assigned to the app in Exchange")
    if not cmdlets:
        evidence.add("verdict", "no cmdlets are listed (exchange_cmdlets), so none can lack a role")
        return
    principal = require(app_sp, "CBA-APP-002", NO_SP)
    rbac, unread = tenant_facts.exchange_rbac_read()
    if unread:
        cannot_verify("the app's Exchange roles", unread, permission=AUDITOR_EXCHANGE_NEEDS)
    if rbac is None or not rbac.authorised(principal.object_id):
        if tenant_facts.holds_role_tenant_wide(accepted_role_ids(cba_settings)):
            cannot_verify(
                "which Entra role grants each cmdlet",
                "the app is authorised by an Entra role only; Get-ManagementRole -Cmdlet names Exchange roles",
            )
        follows_from("CBA-ROLE-001", "the app holds no Exchange role through its service principal pointer")
    granted = {cmdlet: list(rbac.roles_for(cmdlet, principal.object_id)) for cmdlet in cmdlets}
    evidence.observed("roles holding each cmdlet (Get-ManagementRole -Cmdlet)", dict(rbac.cmdlet_roles))
    evidence.observed("assigned roles granting each cmdlet", granted)
    missing = [cmdlet for cmdlet, roles in granted.items() if not roles]
    if missing and tenant_facts.holds_role_tenant_wide(accepted_role_ids(cba_settings)):
        cannot_verify(
            f"whether the app's Entra role grants {', '.join(missing)}",
            "no assigned Exchange role holds it, and Get-ManagementRole -Cmdlet does not name Entra roles",
        )
    assert not missing, (
        f"no Exchange role assigned to app {principal.app_id} holds {', '.join(missing)} (assigned: "
        f"{', '.join(rbac.roles_of(principal.object_id))}); expected a role holding each cmdlet in exchange_cmdlets"
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
