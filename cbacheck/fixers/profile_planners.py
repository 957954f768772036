"""Fixes for a profile other than the default: its permission and consent on its own resource, or a manual step."""

from __future__ import annotations

import dataclasses

from cbacheck import catalogue, profiles, wellknown
from cbacheck.config import role_id
from cbacheck.facts import ServicePrincipal, Unavailable
from cbacheck.fixers.actions import Action, AddRequiredResourceAccess, AssignDirectoryRole, GrantAppRole, ManualStep
from cbacheck.fixers.planning import CannotPlan, PlanContext
from cbacheck.fixers.rbac_planners import rbac_actions
from cbacheck.profiles import Permission, Profile

PERMISSION_IDS = frozenset({"CBA-PERM-002", "CBA-PERM-003"})


def plan_profiles(ctx: PlanContext) -> list[Action]:
    """For each profile checked besides exchange-online: what mends its permission and its role."""
    actions: list[Action] = []
    for name in ctx.settings.profile:
        if name == profiles.DEFAULT:
            continue
        profile = profiles.profile_named(name)
        failed = profiles.failed_in(name, ctx.failed)
        try:
            actions.extend(_permission_actions(ctx, profile, failed))
        except CannotPlan as stop:
            actions.extend(stop.steps(ctx))
        if "CBA-ROLE-001" in failed:
            actions.extend(_role_actions(ctx, profile))
    return actions


def _role_actions(ctx: PlanContext, profile: Profile) -> list[Action]:
    """A profile Exchange's own RBAC authorises (the Admin API): the default chain's RBAC fix (the pointer, then
    rbac_role_group, with the opt-ins it already needs), never an Entra role. Any other profile, or one whose
    RBAC the default chain's own fix already mends in this run, gets a manual step. Another profile (Security &
    Compliance) gets its least-privileged Entra role, or a manual step (_role_action)."""
    on_exchange = profile.permission.resource_app_id == wellknown.EXCHANGE_ONLINE_APP_ID
    if not (profile.exchange_rbac_collected and on_exchange):
        try:
            return [_role_action(ctx, profile)]
        except CannotPlan as stop:
            return stop.steps(ctx)
    if "CBA-ROLE-001" in ctx.failed:
        return [_role_step(ctx, profile)]
    mends = (profiles.qualified("CBA-ROLE-001", profile.name),)
    try:
        planned = rbac_actions(ctx, "assign_directory_role")
    except CannotPlan as stop:
        planned = stop.steps(ctx)
    return [dataclasses.replace(action, mends=mends) for action in planned]


def _mends(profile: Profile, failed: frozenset[str], *ids: str) -> tuple[str, ...]:
    return tuple(profiles.qualified(req, profile.name) for req in ids if req in failed) or tuple(
        profiles.qualified(req, profile.name) for req in ids
    )


def _permission_actions(ctx: PlanContext, profile: Profile, failed: frozenset[str]) -> list[Action]:
    new_app = ctx.app_is_new
    if not (failed & PERMISSION_IDS or new_app):
        return []
    permission, documented = profiles.permission_in(profile, ctx.settings.cloud)
    resource = _resource_sp(ctx, permission)
    role_id = permission.app_role_id or (resource.role_id(permission.value) if resource is not None else None)
    if not documented or role_id is None:
        return [_unconfirmed_step(ctx, profile, permission, failed)]
    actions: list[Action] = []
    handle = ctx.app_handle("add_exchange_permission")
    app = ctx.app
    if handle.depends_on or app is None or not app.requests_app_role(permission.resource_app_id, role_id):
        actions.append(
            AddRequiredResourceAccess(
                id=f"add-{profile.name}-permission",
                mends=_mends(profile, failed, "CBA-PERM-002"),
                reason=f"the app does not request {permission.value} on {permission.resource_display_name} "
                f"(profile {profile.name})",
                app_object_id=handle.object_id,
                resource_app_id=permission.resource_app_id,
                app_role_id=role_id,
                depends_on=handle.depends_on,
            )
        )
    if resource is None:
        return actions  # CBA-PERM-001 of the profile: consent makes the resource appear only by hand
    sp = ctx.sp_handle("grant_exchange_consent")
    grants = ctx.require("grant_exchange_consent", ctx.tenant.app_role_grants) if ctx.tenant is not None else ()
    if sp.depends_on or not any(g.resource_id == resource.object_id and g.app_role_id == role_id for g in grants):
        actions.append(
            GrantAppRole(
                id=f"grant-{profile.name}-consent",
                mends=_mends(profile, failed, "CBA-PERM-003"),
                reason=f"no appRoleAssignment grants {permission.value} on {resource.display_name} to the app's "
                f"service principal (profile {profile.name})",
                principal_id=sp.object_id,
                resource_id=resource.object_id,
                app_role_id=role_id,
                app_role_name=permission.value,
                # Verified in the profile's own token when cbacheck asks for one in this cloud (else Graph's grant).
                token_carries_role=bool(profiles.token_resource_in(profile, ctx.settings.cloud)),
                token_profile=profile.name,
                depends_on=sp.depends_on,
            )
        )
    return actions


def _resource_sp(ctx: PlanContext, permission: Permission) -> ServicePrincipal | None:
    if ctx.tenant is None:
        return None
    value = ctx.tenant.resource_sp(permission.resource_app_id)
    if isinstance(value, Unavailable):
        raise CannotPlan("grant_exchange_consent", value)
    return value


def _unconfirmed_step(ctx: PlanContext, profile: Profile, permission: Permission, failed: frozenset[str]) -> Action:
    """A permission whose id or cloud mapping Microsoft does not document is never written by cbacheck."""
    return ManualStep(
        id=f"{profile.name}-permission-unconfirmed",
        mends=_mends(profile, failed, "CBA-PERM-002", "CBA-PERM-003"),
        reason=f"which permission profile {profile.name} needs in cloud {ctx.settings.cloud} "
        f"({permission.value} on {permission.resource_display_name}) is not documented where cbacheck could "
        "confirm it, so cbacheck does not write it (docs/profiles.md)",
        explanation="Confirm the permission in Microsoft's documentation for your cloud, add it to the app's manifest "
        "and grant admin consent by hand; then run again.",
        portal=catalogue.PORTAL_APP,
    )


def _least_role(ctx: PlanContext, profile: Profile) -> str:
    """The Entra role to assign for the profile: required_role when the profile supports it, else its least privilege;
    never an over-privileged one ("" when there is none to assign)."""
    configured = role_id(ctx.settings.required_role)
    usable = configured in profile.supported_roles and configured not in wellknown.OVER_PRIVILEGED_ROLES
    role = configured if usable and configured else profile.least_privileged_role
    return "" if role in wellknown.OVER_PRIVILEGED_ROLES else role


def _role_action(ctx: PlanContext, profile: Profile) -> Action:
    """Assign the profile's least-privileged Entra role (Compliance Administrator for Security & Compliance), active
    at tenant scope; a manual step when there is none, or when the profile's own RBAC is meant to authorise the app
    or its service already accepts it (an Entra role would only widen its rights)."""
    role = _least_role(ctx, profile)
    tenant = ctx.tenant
    if not role or tenant is None or tenant.rbac_path(profile.rbac_key) or tenant.exchange_accepted(profile.probe_key):
        return _role_step(ctx, profile)
    handle = ctx.sp_handle("assign_directory_role")
    role_name = wellknown.DIRECTORY_ROLE_NAMES.get(role, role)
    return AssignDirectoryRole(
        id=f"assign-{profile.name}-role",
        mends=(profiles.qualified("CBA-ROLE-001", profile.name),),
        reason=f"the service principal holds no role profile {profile.name} supports; {role_name} is its least "
        "privilege",
        principal_id=handle.object_id,
        role_definition_id=role,
        role_name=role_name,
        depends_on=handle.depends_on,
    )


def _role_step(ctx: PlanContext, profile: Profile) -> Action:
    """The least privilege named, the assignment (or the role group membership) left to an admin."""
    least = wellknown.DIRECTORY_ROLE_NAMES.get(profile.least_privileged_role, "an Exchange RBAC role group")
    return ManualStep(
        id=f"{profile.name}-role",
        mends=(profiles.qualified("CBA-ROLE-001", profile.name),),
        reason=f"the app holds no role profile {profile.name} supports",
        explanation=f"Assign {least} (active, at tenant scope) or add the app's service principal pointer to a "
        f"role group of {profile.rbac_service}; cbacheck does not assign a role over a role group meant to authorise "
        "the app.",
        portal=catalogue.PORTAL_ROLES,
    )
