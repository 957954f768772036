"""Planners of the Exchange RBAC path: the service principal pointer and its role group, never an Entra role.

Option 2 of Microsoft's app-only article: `New-ServicePrincipal -AppId <appId> -ObjectId <the service
principal's object id>`, then `Add-RoleGroupMember -Identity <group> -Member <pointer>`
(https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2#step-5-assign-role-permissions-to-the-application).
"""

from __future__ import annotations

from typing import Final

from cbacheck.facts import ExchangeRbac, RoleGroup
from cbacheck.fixers.actions import Action, AddRoleGroupMember, CreateExchangeServicePrincipal, ManualStep, Ref
from cbacheck.fixers.planning import PlanContext, planner

DOC_ROLE_OPTIONS: Final = (
    "https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2"
    "#step-5-assign-role-permissions-to-the-application"
)
POINTER_ACTION: Final = "create-exchange-pointer"


def uses_exchange_rbac(ctx: PlanContext) -> bool:
    """Exchange accepts the app, or RBAC is its path (or meant to be): never plan an Entra role then."""
    if ctx.tenant is None:
        return False
    return bool(ctx.tenant.exchange_accepted() or ctx.tenant.rbac_path() or ctx.settings.rbac_role_group)


@planner("add_rbac_role_group")
def plan_add_rbac_role_group(ctx: PlanContext) -> list[Action]:
    """A cmdlet in exchange_cmdlets lacks a role: add the pointer to rbac_role_group when its roles hold it."""
    return rbac_actions(ctx, "add_rbac_role_group")


def rbac_actions(ctx: PlanContext, fix: str) -> list[Action]:
    """The pointer (when Exchange has none it matches) and its membership of the target role group."""
    if ctx.tenant is None:
        return []
    rbac = ctx.require(fix, ctx.tenant.exchange_rbac)
    handle = ctx.sp_handle(fix)
    sp_id = handle.object_id
    if rbac is None:
        rbac = ExchangeRbac((), (), ())
    pointer = rbac.pointer_matches(sp_id) if isinstance(sp_id, str) else None
    actions: list[Action] = []
    depends = handle.depends_on
    if pointer is None:
        actions.append(
            CreateExchangeServicePrincipal(
                id=POINTER_ACTION,
                mends=ctx.mends(fix),
                reason="Exchange has no service principal pointer whose ObjectId is the app's service principal "
                f"object id {sp_id}, so no Exchange role can reach the app",
                app_id=ctx.settings.app_id or "",
                object_id=sp_id,
                display_name=ctx.app.display_name if ctx.app is not None else (ctx.settings.app_id or ""),
                depends_on=depends,
            )
        )
        depends = (*depends, POINTER_ACTION)
    actions += _cleanup_steps(ctx, fix, rbac, sp_id)
    group, refusal = _target_group(ctx, rbac, sp_id)
    if group is None:
        return [*actions, _manual(ctx, fix, "rbac-role-group", refusal)]
    if pointer is not None and group.has_member(pointer):
        reason = f"the pointer is already in {group.name!r}, whose roles ({', '.join(group.roles)}) do not hold "
        return [*actions, _manual(ctx, fix, "rbac-role-group", reason + "every cmdlet in exchange_cmdlets")]
    member = sp_id if pointer is None else pointer.object_id
    actions.append(
        AddRoleGroupMember(
            id="add-exchange-role-group",
            mends=ctx.mends(fix),
            reason=f"the app's service principal pointer is not a member of the Exchange role group {group.name!r}",
            group=group.name,
            member=member if isinstance(member, str) else Ref(POINTER_ACTION, "ObjectId"),
            roles=group.roles,
            depends_on=depends,
        )
    )
    return actions


def _target_group(ctx: PlanContext, rbac: ExchangeRbac, sp_id: object) -> tuple[RoleGroup | None, str]:
    """rbac_role_group, else the group a mismatched pointer is in (the admin's evident intent); why not otherwise."""
    wanted = ctx.settings.rbac_role_group
    if not wanted and isinstance(sp_id, str):
        intended = sorted({g.name for p in rbac.mismatched_pointers(sp_id) for g in rbac.groups_of(p)})
        wanted = intended[0] if intended else None
    if not wanted:
        return None, "no Exchange role group is named: set rbac_role_group to the least-privileged group the app needs"
    group = rbac.role_group(wanted)
    if group is None:
        return None, f"the organization has no Exchange role group {wanted!r} (rbac_role_group)"
    if group.manages_roles and group.name.lower() not in ctx.opt_ins.allow_role_groups:
        return None, (
            f"{group.name!r} manages roles (Organization Management or Role Management): its members can grant "
            f"themselves any permission, so cbacheck adds the app only with --allow-role-group '{group.name}'"
        )
    missing = _cmdlets_not_held(ctx, rbac, group)
    if missing:
        return None, f"the roles of {group.name!r} ({', '.join(group.roles)}) do not hold {', '.join(missing)}"
    return group, ""


def _cmdlets_not_held(ctx: PlanContext, rbac: ExchangeRbac, group: RoleGroup) -> list[str]:
    roles = {r.lower() for r in group.roles}
    return [
        cmdlet
        for cmdlet in ctx.settings.exchange_cmdlets
        if cmdlet in rbac.cmdlet_roles and not roles & {r.lower() for r in rbac.cmdlet_roles[cmdlet]}
    ]


def _cleanup_steps(ctx: PlanContext, fix: str, rbac: ExchangeRbac, sp_id: object) -> list[Action]:
    """A pointer made with another object id matches nothing: removing it is left to a person."""
    if not isinstance(sp_id, str):
        return []
    return [
        ManualStep(
            id=f"remove-exchange-pointer-{pointer.object_id[:8]}",
            mends=ctx.mends(fix),
            reason=f"the Exchange pointer {pointer.object_id} has the app's AppId but not its service principal's "
            "object id (the app registration's?); Exchange never matches it",
            explanation=f"Once the new pointer works, remove the old one: Remove-ServicePrincipal -Identity "
            f"{pointer.object_id}.",
            portal=DOC_ROLE_OPTIONS,
        )
        for pointer in rbac.mismatched_pointers(sp_id)
    ]


def _manual(ctx: PlanContext, fix: str, suffix: str, reason: str) -> ManualStep:
    return ManualStep(
        id=f"manual-{suffix}",
        mends=ctx.mends(fix),
        reason=reason,
        explanation="Add the app's service principal pointer to a least-privileged Exchange role group whose roles "
        "hold the cmdlets it runs (Add-RoleGroupMember -Identity <group> -Member <service principal object id>), "
        "or set rbac_role_group and run again with --fix apply.",
        portal=DOC_ROLE_OPTIONS,
    )
