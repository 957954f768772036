"""The app's Exchange RBAC, read by the auditor with its own Exchange token through the admin API.

Option 2 of Microsoft's app-only article authorises the app through a service principal pointer in
Exchange and role groups or management role assignments
(https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2#step-5-assign-role-permissions-to-the-application).
The auditor reads it with Get-ServicePrincipal, Get-ManagementRoleAssignment, Get-RoleGroup and
Get-ManagementRole; those need View-Only Organization Management (or the Entra role Global Reader)
(https://learn.microsoft.com/powershell/exchange/find-exchange-cmdlet-permissions).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import requests

from cbacheck import profiles
from cbacheck.collect.exchange import CMDLET_NAME, error_text, invoke_command_url, request_headers, scrub
from cbacheck.collect.graph import TokenProvider
from cbacheck.collect.tokens import decode_without_verifying, graph_token_provider
from cbacheck.collect.transport import send, stats_of
from cbacheck.config import Settings
from cbacheck.errors import CbaCheckError, CredentialError
from cbacheck.facts import (
    ExchangeRbac,
    ExchangeServicePrincipal,
    ManagementRoleAssignment,
    Organization,
    RoleGroup,
    Source,
    Unavailable,
)

WHAT: Final = "the app's Exchange RBAC"
# UNCONFIRMED: that View-Only Organization Management also runs Get-ServicePrincipal and Get-RoleGroup (the page
# names it for Get-ManagementRole and Get-ManagementRoleAssignment).
AUDITOR_EXCHANGE_NEEDS: Final = (
    "Exchange.ManageAsApp (admin consent) and membership of its service principal pointer in the role group "
    "View-Only Organization Management, or the Entra role Global Reader"
)


class ExchangeCommandError(CbaCheckError):
    """A cmdlet the admin API refused or did not answer; the message quotes Exchange."""

    def __init__(self, message: str, status: int | None, source: Source | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.source = source


class ExchangeCommands:
    """Cmdlets through `POST {exchange_url}/adminapi/beta/{tenant}/InvokeCommand` with one identity's token."""

    def __init__(
        self, settings: Settings, session: requests.Session, provider: TokenProvider, tenant_for_url: str
    ) -> None:
        self.settings = settings
        self.session = session
        self.provider = provider
        self.url = invoke_command_url(settings.cloud_endpoints.exchange_url, tenant_for_url)
        self.scope = f"{settings.cloud_endpoints.exchange_resource.rstrip('/')}/.default"
        self.last_source: Source | None = None  # the request of the last cmdlet (its Request-Id is the audit trail)

    def run(self, cmdlet: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """The objects the cmdlet returned; ExchangeCommandError quoting Exchange otherwise."""
        access_token = self.provider.token(self.scope)
        _, claims = decode_without_verifying(access_token)
        anchor = str(claims.get("tid") or self.settings.tenant or "")
        stats_of(self.session).count("exchange_requests")
        sent = send(
            self.session,
            "POST",
            self.url,
            json={"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}},
            headers=request_headers(access_token, anchor),
        )
        response = sent.response
        self.last_source = sent.source
        if response is None:
            raise ExchangeCommandError(f"{cmdlet}: no answer from {self.url}", None, sent.source)
        try:
            body: Any = response.json() if response.content else None
        except ValueError:
            body = None
        if response.ok and isinstance(body, dict) and isinstance(body.get("value"), list):
            return [item for item in body["value"] if isinstance(item, dict)]
        code, message = error_text(body)
        text = scrub(message or f"HTTP {response.status_code}", access_token)
        raise ExchangeCommandError(
            f"Exchange refused {cmdlet}: HTTP {response.status_code} {code} {text!r}", response.status_code, sent.source
        )


def exchange_tenant(settings: Settings, organization: Organization | Unavailable | None) -> str:
    """The organization for the admin API URL: the tenant's initial domain when Graph gave it, else the tenant
    as configured (collection reads RBAC beside Graph, so it passes no organization and uses this fallback; the
    `organization` setting is the automation's, which a check judges, so a mistake there must not hide RBAC).

    UNCONFIRMED: the admin API also takes the tenant id (used that way by third-party tools).
    """
    if isinstance(organization, Organization) and organization.initial_domain:
        return organization.initial_domain
    return settings.tenant or ""


def collect_exchange_rbac(
    settings: Settings, session: requests.Session, organization: Organization | Unavailable | None
) -> ExchangeRbac | Unavailable:
    """Pointers with the app's AppId, their assignments (direct and via role groups), role groups, cmdlet roles."""
    odd = [name for name in settings.exchange_cmdlets if not CMDLET_NAME.fullmatch(name)]
    if odd:
        return Unavailable(WHAT, f"exchange_cmdlets holds {odd[0]!r}, which is not a cmdlet name (Verb-Noun)")
    try:
        provider = graph_token_provider(settings, session, "auditor")
        commands = ExchangeCommands(settings, session, provider, exchange_tenant(settings, organization))
        return read_rbac(commands, settings.app_id or "", settings.exchange_cmdlets)
    except (ExchangeCommandError, CredentialError) as err:
        source = err.source if isinstance(err, ExchangeCommandError) else None
        return Unavailable(WHAT, str(err), missing_permission=AUDITOR_EXCHANGE_NEEDS, source=source, error=err)


def read_rbac(commands: ExchangeCommands, app_id: str, cmdlets: tuple[str, ...]) -> ExchangeRbac:
    # Role groups and cmdlet roles need nothing from the pointers: they are read beside them, on a thread in a
    # sub-lane of the request log listed after the pointers' requests (the order they were sent in before), so
    # the evidence does not depend on which answered first. The token comes first, so it is requested once.
    commands.provider.token(commands.scope)
    log = stats_of(commands.session).sources
    beside_lane = log.sub_lane(1)

    def groups_and_roles() -> tuple[tuple[RoleGroup, ...], dict[str, tuple[str, ...]]]:
        with log.lane(*beside_lane):
            return _groups_and_cmdlet_roles(commands, cmdlets)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cbacheck-rbac") as pool:
        beside = pool.submit(groups_and_roles)
        # An error of the pointers' reads wins, as when they ran first; the pool still waits for the other read.
        pointers, assignments = _pointers_and_assignments(commands, app_id)
        groups, cmdlet_roles = beside.result()
    return ExchangeRbac(pointers, assignments, groups, cmdlet_roles)


def _pointers_and_assignments(
    commands: ExchangeCommands, app_id: str
) -> tuple[tuple[ExchangeServicePrincipal, ...], tuple[ManagementRoleAssignment, ...]]:
    # Without -Identity the cmdlet returns every pointer (its documented caution); filtered here by AppId,
    # so a pointer with the wrong ObjectId is found too.
    pointers = tuple(
        _pointer(item)
        for item in commands.run("Get-ServicePrincipal", {})
        if str(item.get("AppId", "")).lower() == app_id.lower()
    )
    assignments: list[ManagementRoleAssignment] = []
    for pointer in pointers:
        # UNCONFIRMED: -RoleAssignee takes a service principal pointer's ObjectId; ServicePrincipal is not among
        # the documented RoleAssigneeType values, though New-ManagementRoleAssignment has -App.
        try:
            found = commands.run("Get-ManagementRoleAssignment", {"RoleAssignee": pointer.object_id})
        except ExchangeCommandError as err:
            if err.status == 404:  # a pointer that holds nothing
                continue
            raise
        assignments.extend(_assignment(pointer.object_id, item) for item in found)
    return pointers, tuple(assignments)


def _groups_and_cmdlet_roles(
    commands: ExchangeCommands, cmdlets: tuple[str, ...]
) -> tuple[tuple[RoleGroup, ...], dict[str, tuple[str, ...]]]:
    groups = tuple(_group(item) for item in commands.run("Get-RoleGroup", {}))
    cmdlet_roles = {
        cmdlet: tuple(str(role.get("Name", "")) for role in commands.run("Get-ManagementRole", {"Cmdlet": cmdlet}))
        for cmdlet in cmdlets
    }
    return groups, cmdlet_roles


def _text(item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    return "" if value is None else str(value)


def _pointer(item: dict[str, Any]) -> ExchangeServicePrincipal:
    return ExchangeServicePrincipal(
        app_id=_text(item, "AppId"),
        object_id=_text(item, "ObjectId"),
        identity=_text(item, "Identity"),
        display_name=_text(item, "DisplayName"),
    )


def _assignment(pointer: str, item: dict[str, Any]) -> ManagementRoleAssignment:
    return ManagementRoleAssignment(
        pointer=pointer,
        name=_text(item, "Name"),
        role=_text(item, "Role"),
        role_assignee=_text(item, "RoleAssignee") or _text(item, "RoleAssigneeName"),
        role_assignee_type=_text(item, "RoleAssigneeType"),
        recipient_write_scope=_text(item, "RecipientWriteScope"),
        custom_recipient_write_scope=item.get("CustomRecipientWriteScope") or None,
        administrative_unit_scope=item.get("RecipientAdministrativeUnitScope") or None,
        enabled=item.get("Enabled") is not False,
    )


def _group(item: dict[str, Any]) -> RoleGroup:
    roles = item.get("Roles") or []
    members = item.get("Members") or []
    return RoleGroup(
        name=_text(item, "Name"),
        roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
        members=tuple(str(m) for m in members) if isinstance(members, list) else (),
    )


# --- A profile's own role groups (Security & Compliance) -------------------------------------------------------
# Option 2 of the app-only article works in Security & Compliance PowerShell too; there the app's pointer is a member
# of role groups (Add-RoleGroupMember), and Get-ManagementRoleAssignment does not apply
# (https://learn.microsoft.com/powershell/module/exchangepowershell/get-managementroleassignment lists Exchange only),
# so the auditor reads Get-ServicePrincipal and Get-RoleGroup, both documented for Security & Compliance
# (https://learn.microsoft.com/powershell/module/exchangepowershell/get-rolegroup).


def collect_profile_rbac(settings: Settings, session: requests.Session) -> dict[str, ExchangeRbac | Unavailable]:
    """Each checked profile with role groups of its own: the app's pointers and memberships there, by profile."""
    return {
        name: read_own_role_groups(settings, session, profiles.profile_named(name))
        for name in settings.profile
        if profiles.profile_named(name).own_role_groups
    }


def read_own_role_groups(
    settings: Settings, session: requests.Session, profile: profiles.Profile
) -> ExchangeRbac | Unavailable:
    """The profile's RBAC read through its endpoint with the auditor's token for its resource (read-only cmdlets)."""
    what = f"the app's {profile.rbac_service} role groups"
    resource = profiles.token_resource_in(profile, settings.cloud)
    if not resource:
        return Unavailable(what, f"not collected in cloud {settings.cloud} by this version (docs/profiles.md)")
    tenant_for_url = exchange_tenant(settings, None)
    try:
        provider = graph_token_provider(settings, session, "auditor")
        commands = ExchangeCommands(settings, session, provider, tenant_for_url)
        commands.url = profiles.probe_url_in(profile, settings.cloud_endpoints, tenant_for_url)
        commands.scope = f"{resource.rstrip('/')}/.default"
        return read_role_group_memberships(commands, settings.app_id or "")
    except (ExchangeCommandError, CredentialError) as err:
        source = err.source if isinstance(err, ExchangeCommandError) else None
        return Unavailable(what, str(err), missing_permission=profile.auditor_rbac_needs, source=source, error=err)


def read_role_group_memberships(commands: ExchangeCommands, app_id: str) -> ExchangeRbac:
    """Pointers with the app's AppId and every role group; each role of a group a pointer is a member of is that
    pointer's assignment (through the group), so the fact has the shape of Exchange's."""
    pointers = tuple(
        _pointer(item)
        for item in commands.run("Get-ServicePrincipal", {})
        if str(item.get("AppId", "")).lower() == app_id.lower()
    )
    groups = tuple(_group(item) for item in commands.run("Get-RoleGroup", {}))
    assignments = tuple(
        ManagementRoleAssignment(
            pointer=pointer.object_id,
            name=f"{role}-{group.name}",
            role=role,
            role_assignee=group.name,
            role_assignee_type="RoleGroup",
            recipient_write_scope="",
            custom_recipient_write_scope=None,
            administrative_unit_scope=None,
            enabled=True,
        )
        for pointer in pointers
        for group in groups
        if group.has_member(pointer)
        for role in group.roles
    )
    return ExchangeRbac(pointers, assignments, groups, {}, source=commands.last_source)
