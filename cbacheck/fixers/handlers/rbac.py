"""Handlers of the Exchange RBAC fix: the service principal pointer and its role group, through the admin API.

The admin's own Exchange token (Exchange.ManageAsApp and Role Management) runs New-ServicePrincipal and
Add-RoleGroupMember (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2#step-5-assign-role-permissions-to-the-application).
"""

from __future__ import annotations

from typing import Any

from cbacheck.collect.rbac import ExchangeCommands, exchange_tenant
from cbacheck.errors import FixError
from cbacheck.facts import ExchangeRbac
from cbacheck.fixers.actions import AddRoleGroupMember, CreateExchangeServicePrincipal, exchange_command
from cbacheck.fixers.handlers.base import ApplyContext, Handler, ProbeContext, Reading, Sent
from cbacheck.fixers.verify import Probe


def admin_exchange(ctx: ApplyContext) -> ExchangeCommands:
    """Cmdlets with the admin's token (the identity that signs in to Graph for the fixes)."""
    return ExchangeCommands(
        ctx.settings, ctx.graph.session, ctx.graph.token_provider, exchange_tenant(ctx.settings, None)
    )


def _sent(commands: ExchangeCommands, cmdlet: str, parameters: dict[str, Any], outputs: dict[str, Any]) -> Sent:
    source = commands.last_source
    request = exchange_command(cmdlet, parameters)
    request["path"] = commands.url
    return Sent(request, source.status if source else None, source.request_id if source else "", outputs)


def _rbac(ctx: ProbeContext, round_number: int) -> ExchangeRbac | None:
    rbac = ctx.facts(round_number).exchange_rbac
    return rbac if isinstance(rbac, ExchangeRbac) else None


class CreateExchangeServicePrincipalHandler(Handler[CreateExchangeServicePrincipal]):
    def read(self, action: CreateExchangeServicePrincipal, ctx: ApplyContext) -> Reading:
        object_id = ctx.value(action.object_id)
        found = [
            p
            for p in admin_exchange(ctx).run("Get-ServicePrincipal", {})
            if str(p.get("ObjectId", "")).lower() == object_id.lower()
        ]
        return Reading(bool(found), {"pointers": found}, {"ObjectId": object_id})

    def perform(self, action: CreateExchangeServicePrincipal, ctx: ApplyContext, before: Reading) -> Sent:
        commands = admin_exchange(ctx)
        object_id = ctx.value(action.object_id)
        parameters = {"AppId": ctx.value(action.app_id), "ObjectId": object_id, "DisplayName": action.display_name}
        commands.run("New-ServicePrincipal", parameters)
        return _sent(commands, "New-ServicePrincipal", parameters, {"ObjectId": object_id})

    def probe(self, action: CreateExchangeServicePrincipal, ctx: ProbeContext) -> Probe | None:
        object_id = str(ctx.outputs.get(action.id, {}).get("ObjectId", ""))

        def pointer_visible(round_number: int) -> str | None:
            rbac = _rbac(ctx, round_number)
            if rbac is None:
                return "the auditor cannot read Exchange RBAC"
            return None if rbac.pointer_matches(object_id) else "the new pointer is not visible yet"

        return Probe(action.id, "the service principal pointer to be visible in Exchange", pointer_visible)


class AddRoleGroupMemberHandler(Handler[AddRoleGroupMember]):
    def read(self, action: AddRoleGroupMember, ctx: ApplyContext) -> Reading:
        member = ctx.value(action.member)
        commands = admin_exchange(ctx)
        # A name that matches no group returns every group (the cmdlet's documented caution), so the
        # group is confirmed by name before its members are read.
        groups = commands.run("Get-RoleGroup", {"Identity": action.group})
        if not any(str(g.get("Name", "")).lower() == action.group.lower() for g in groups):
            raise FixError(f"Exchange has no role group {action.group!r}; nothing was changed")
        members = commands.run("Get-RoleGroupMember", {"Identity": action.group})
        done = any(str(m.get("ObjectId", "")).lower() == member.lower() for m in members)
        return Reading(done, {"group": action.group, "members": members}, {"group": action.group})

    def perform(self, action: AddRoleGroupMember, ctx: ApplyContext, before: Reading) -> Sent:
        commands = admin_exchange(ctx)
        parameters = {"Identity": action.group, "Member": ctx.value(action.member)}
        commands.run("Add-RoleGroupMember", parameters)
        return _sent(commands, "Add-RoleGroupMember", parameters, {"group": action.group})

    def probe(self, action: AddRoleGroupMember, ctx: ProbeContext) -> Probe | None:
        def member_of_group(round_number: int) -> str | None:
            rbac = _rbac(ctx, round_number)
            sp = ctx.service_principal(round_number)
            if rbac is None or sp is None:
                return "the auditor cannot read Exchange RBAC or the service principal"
            pointer = rbac.pointer_matches(sp.object_id)
            group = rbac.role_group(action.group)
            if pointer is None or group is None or not group.has_member(pointer):
                return f"the pointer is not yet a member of {action.group!r}"
            return None if rbac.authorised(sp.object_id) else "the pointer holds no enabled role yet"

        return Probe(action.id, f"the app's pointer to be a member of {action.group!r}", member_of_group)
