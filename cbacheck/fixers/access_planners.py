"""Planners of links 2 to 6: the app and its service principal, the permission, consent, role, and manual steps."""

from __future__ import annotations

from typing import Final

from cbacheck import catalogue, profiles, wellknown
from cbacheck.config import role_id
from cbacheck.fixers.actions import (
    Action,
    AddRequiredResourceAccess,
    AssignDirectoryRole,
    CreateApplication,
    CreateServicePrincipal,
    EnableServicePrincipal,
    GrantAppRole,
    ManualStep,
    Ref,
)
from cbacheck.fixers.planning import CannotPlan, PlanContext, planner
from cbacheck.fixers.rbac_planners import rbac_actions, uses_exchange_rbac

DEFAULT_APP_NAME: Final = "Exchange Online automation"
PORTAL_SUBSCRIPTIONS: Final = "https://admin.microsoft.com/#/subscriptions"
# Roles cbacheck assigns without being asked: those Exchange accepts for app-only sign-in, less the
# over-privileged ones CBA-ROLE-002 reports. Any other role needs --allow-role on the command line.
SUPPORTED_ROLES: Final = wellknown.EXCHANGE_SUPPORTED_ROLES - wellknown.OVER_PRIVILEGED_ROLES


@planner("create_app")
def plan_create_app(ctx: PlanContext) -> list[Action]:
    """Register an app when the configured app id does not exist, only with --create-app (a typo looks the same)."""
    if ctx.app is not None:
        return []
    missing = ctx.unavailable("app")
    if missing is not None:
        raise CannotPlan("create_app", missing)
    absent = f"no application with appId {ctx.settings.app_id} exists in tenant {ctx.settings.tenant}"
    if not ctx.opt_ins.create_app:
        return [
            ManualStep(
                id="check-app-id",
                mends=ctx.mends("create_app"),
                reason=f"{absent}; registering a new privileged app is opt-in",
                explanation="Check app_id for a typo (and the tenant). To have cbacheck register a new app with "
                "the whole chain, run again with --create-app --fix apply.",
                portal=catalogue.PORTAL_APP,
            )
        ]
    return [
        CreateApplication(
            id="create-app",
            mends=ctx.mends("create_app"),
            reason=f"{absent}; --create-app was given",
            display_name=DEFAULT_APP_NAME,
        ),
        ManualStep(
            id="use-new-app-id",
            mends=ctx.mends("create_app"),
            reason="Entra assigns a new appId; the configured one does not exist",
            explanation="Set app_id (and the scripts' -AppId) to the new application's appId.",
            setting="app_id",
            value=Ref("create-app", "appId"),
            depends_on=("create-app",),
        ),
    ]


@planner("create_service_principal")
def plan_create_service_principal(ctx: PlanContext) -> list[Action]:
    """Create the service principal, or enable it when it is disabled."""
    sp = ctx.app_sp
    if sp is not None and not ctx.app_is_new:
        if sp.account_enabled:
            return []
        if not ctx.opt_ins.enable_service_principal:
            return [
                ManualStep(
                    id="enable-service-principal-manually",
                    mends=ctx.mends("create_service_principal"),
                    reason=f"service principal {sp.object_id} is disabled (sign-in fails with AADSTS7000112); "
                    "an admin may have disabled it on purpose, so enabling it is opt-in",
                    explanation="Find out why it was disabled. To enable it, set Enabled for users to sign-in to Yes "
                    "under Enterprise applications > Properties, or run again with --enable-service-principal "
                    "--fix apply.",
                    portal=catalogue.PORTAL_ENTERPRISE_APPS,
                )
            ]
        return [
            EnableServicePrincipal(
                id="enable-service-principal",
                mends=ctx.mends("create_service_principal"),
                reason=f"service principal {sp.object_id} is disabled (sign-in fails with AADSTS7000112); "
                "--enable-service-principal was given",
                service_principal_id=sp.object_id,
            )
        ]
    missing = ctx.unavailable("app_sp")
    if missing is not None and not ctx.app_is_new:
        raise CannotPlan("create_service_principal", missing)
    handle = ctx.app_handle("create_service_principal")
    return [
        CreateServicePrincipal(
            id="create-service-principal",
            mends=ctx.mends("create_service_principal"),
            reason="the app has no service principal in this tenant, so nothing can be granted to it",
            app_id=handle.app_id,
            depends_on=handle.depends_on,
        )
    ]


def _unconfirmed_in_cloud(ctx: PlanContext, fix: str) -> ManualStep | None:
    """In a cloud where Microsoft does not document Exchange Online's permission (GCC High, DoD: fidelity D3),
    cbacheck writes none of it: a manual step instead."""
    _, documented = profiles.permission_in(profiles.PROFILES[profiles.DEFAULT], ctx.settings.cloud)
    if documented:
        return None
    return ManualStep(
        id=f"{fix.replace('_', '-')}-unconfirmed-in-cloud",
        mends=ctx.mends(fix),
        reason=f"which Exchange Online permission the app needs in cloud {ctx.settings.cloud} is unconfirmed "
        "(Microsoft documents only Security & Compliance PowerShell's there), so cbacheck does not write it",
        explanation="Confirm the permission for your cloud in Microsoft's documentation, add it to the app's manifest "
        "and grant admin consent by hand (docs/profiles.md); then run again.",
        portal=catalogue.PORTAL_APP,
    )


@planner("add_exchange_permission")
def plan_add_exchange_permission(ctx: PlanContext) -> list[Action]:
    """Add Exchange.ManageAsApp (Role) to the app's requiredResourceAccess."""
    unconfirmed = _unconfirmed_in_cloud(ctx, "add_exchange_permission")
    if unconfirmed is not None:
        return [unconfirmed]
    handle = ctx.app_handle("add_exchange_permission")
    app = ctx.app
    if (
        not handle.depends_on
        and app is not None
        and app.requests_app_role(wellknown.EXCHANGE_ONLINE_APP_ID, wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID)
    ):
        return []
    return [
        AddRequiredResourceAccess(
            id="add-exchange-permission",
            mends=ctx.mends("add_exchange_permission"),
            reason="the app does not request Exchange.ManageAsApp (configured permission)",
            app_object_id=handle.object_id,
            depends_on=handle.depends_on,
        )
    ]


@planner("grant_exchange_consent")
def plan_grant_exchange_consent(ctx: PlanContext) -> list[Action]:
    """Grant admin consent for Exchange.ManageAsApp: the appRoleAssignment on the app's SP."""
    if ctx.tenant is None:
        return []
    fix = "grant_exchange_consent"
    unconfirmed = _unconfirmed_in_cloud(ctx, fix)
    if unconfirmed is not None:
        return [unconfirmed]
    exchange_sp = ctx.require(fix, ctx.tenant.exchange_sp)
    if exchange_sp is None:
        return [
            ManualStep(
                id="exchange-licence",
                mends=("CBA-PERM-001", *ctx.mends(fix)),
                reason="the Office 365 Exchange Online service principal is missing, so consent has nothing to name",
                explanation=catalogue.EXCHANGE_SP_REMEDY + " Licensing is never changed by cbacheck; then run again.",
                portal=catalogue.PORTAL_APP,
            )
        ]
    handle = ctx.sp_handle(fix)
    if not handle.depends_on:
        grants = ctx.require(fix, ctx.tenant.app_role_grants)
        if any(
            grant.resource_id == exchange_sp.object_id and grant.app_role_id == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
            for grant in grants
        ):
            return []
    return [
        GrantAppRole(
            id="grant-exchange-consent",
            mends=ctx.mends(fix),
            reason="no appRoleAssignment grants Exchange.ManageAsApp to the app's service principal",
            principal_id=handle.object_id,
            resource_id=exchange_sp.object_id,
            app_role_id=wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
            app_role_name=wellknown.EXCHANGE_MANAGE_AS_APP,
            depends_on=handle.depends_on,
        )
    ]


def _role_refused(ctx: PlanContext, role: str, role_name: str) -> ManualStep | None:
    """Why cbacheck does not assign this role itself (None when it may)."""
    if role in wellknown.OVER_PRIVILEGED_ROLES:
        reason = f"{role_name} is over-privileged (CBA-ROLE-002); cbacheck never assigns it"
        step = f"Set required_role to a least-privileged role Exchange accepts ({_supported_names()})."
    elif role not in SUPPORTED_ROLES and role not in ctx.opt_ins.allow_roles:
        reason = f"{role_name} is not among the roles cbacheck assigns by default"
        step = (
            f"Assign {role_name} yourself, set required_role to one of {_supported_names()}, or run again with "
            f"--allow-role '{role_name}' --fix apply."
        )
    else:
        return None
    return ManualStep(
        id="assign-role-manually",
        mends=ctx.mends("assign_directory_role"),
        reason=reason,
        explanation=step,
        portal=catalogue.PORTAL_ROLES,
    )


def _exchange_accepts(ctx: PlanContext) -> ManualStep:
    """Exchange already runs the probe's cmdlet for the app: adding an Entra role would only widen its rights."""
    return ManualStep(
        id="role-exchange-accepts",
        mends=ctx.mends("assign_directory_role"),
        reason=f"Exchange already accepts the app ({ctx.settings.exchange_cmdlet} succeeded), so cbacheck adds no "
        "Entra role over what authorises it now",
        explanation="If the automation needs more than it holds, give it the least Exchange role group that holds "
        "its cmdlets (list them in exchange_cmdlets; set rbac_role_group and run --fix apply), or assign "
        "required_role yourself.",
        portal=catalogue.PORTAL_ROLES,
    )


def _supported_names() -> str:
    return ", ".join(sorted(wellknown.DIRECTORY_ROLE_NAMES.get(role, role) for role in SUPPORTED_ROLES))


@planner("assign_directory_role")
def plan_assign_directory_role(ctx: PlanContext) -> list[Action]:
    """Assign settings.required_role, active and at tenant scope "/", when it is a role cbacheck may assign."""
    if ctx.tenant is None:
        return []
    fix = "assign_directory_role"
    role = role_id(ctx.settings.required_role)
    if role is None:
        return []  # config.validate rejects an unknown required_role before any plan is made
    role_name = wellknown.DIRECTORY_ROLE_NAMES.get(role, role)
    handle = ctx.sp_handle(fix)
    if not handle.depends_on:
        assignments = ctx.require(fix, ctx.tenant.role_assignments)
        if any(assignment.grants_tenant_wide({role}) for assignment in assignments):
            return []
    if uses_exchange_rbac(ctx):
        # Never an Entra role for an app Exchange accepts or that uses Exchange RBAC: that would undo a
        # deliberate least-privilege design. Its own path gets its own fix.
        return [_exchange_accepts(ctx)] if ctx.tenant.exchange_accepted() else rbac_actions(ctx, fix)
    refused = _role_refused(ctx, role, role_name)
    if refused is not None:
        return [refused]
    return [
        AssignDirectoryRole(
            id=f"assign-role-{role[:8]}",
            mends=ctx.mends(fix),
            reason=f"the service principal holds no active tenant-wide {role_name} assignment",
            principal_id=handle.object_id,
            role_definition_id=role,
            role_name=role_name,
            depends_on=handle.depends_on,
        )
    ]


@planner("use_initial_domain")
def plan_use_initial_domain(ctx: PlanContext) -> list[Action]:
    """Show the corrected -Organization value (a setting of the scripts, not of the tenant)."""
    organization = ctx.tenant.known("organization") if ctx.tenant is not None else None
    corrected = organization.initial_domain if organization is not None else ""
    return [
        ManualStep(
            id="use-initial-domain",
            mends=ctx.mends("use_initial_domain"),
            reason=f"organization = {ctx.settings.organization!r} is not the tenant's initial domain",
            explanation="Use the initial *.onmicrosoft.com domain for Connect-ExchangeOnline -Organization "
            "and for cbacheck's organization setting.",
            setting="organization" if corrected else "",
            value=corrected,
        )
    ]


@planner("manual")
def plan_manual(ctx: PlanContext) -> list[Action]:
    """One explained step per failed requirement cbacheck never changes itself."""
    steps: list[Action] = []
    for req_id in ctx.mends("manual"):
        if req_id not in ctx.failed:
            continue
        requirement = catalogue.CATALOGUE[req_id]
        steps.append(
            ManualStep(
                id=f"manual-{req_id.lower()}",
                mends=(req_id,),
                reason=f"{req_id} failed: {requirement.title.lower()} does not hold",
                explanation=requirement.remediation,
                portal=_portal_for(requirement.link, req_id),
            )
        )
    return steps


def _portal_for(link: int, req_id: str) -> str:
    if req_id.startswith("CBA-ROLE"):
        return catalogue.PORTAL_ROLES
    if req_id in ("CBA-PERM-004", "CBA-PERM-005"):
        return catalogue.PORTAL_ENTERPRISE_APPS
    if req_id == "CBA-PERM-001":
        return PORTAL_SUBSCRIPTIONS
    if link == 1:
        return catalogue.DOC_CERT_CREDENTIALS
    return catalogue.PORTAL_APP


@planner("follows")
def plan_follows(ctx: PlanContext) -> list[Action]:
    """No action: these requirements are mended by the fixes of the links they follow from."""
    return []
