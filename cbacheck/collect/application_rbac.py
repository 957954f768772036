"""RBAC for Applications, read tenant-wide for `cbacheck audit`: every Application role assignment and its scope.

Exchange scopes an app's mailbox access with a management role assignment of an Application role ("Application
Mail.Read", ...) to the app's service principal pointer, limited by a management scope (-CustomResourceScope) or an
administrative unit (-RecipientAdministrativeUnitScope); without either it covers the whole organization
(https://learn.microsoft.com/exchange/permissions-exo/application-rbac). Get-ManagementRoleAssignment without
parameters returns every assignment of the organization
(https://learn.microsoft.com/powershell/module/exchangepowershell/get-managementroleassignment) and
Get-ManagementScope every scope (https://learn.microsoft.com/powershell/module/exchangepowershell/get-managementscope):
two read-only requests, sent beside Get-ServicePrincipal, whatever the number of apps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Final

from cbacheck import wellknown
from cbacheck.auditfacts import AccessPolicy, ApplicationRoleAssignment
from cbacheck.facts import ExchangeServicePrincipal

# What the reads need, named when Exchange refuses them. UNCONFIRMED: that View-Only Organization Management runs
# Get-ManagementScope (Microsoft names it for Get-ManagementRoleAssignment).
NEEDS: Final = "needs View-Only Organization Management, or the Entra role Global Reader"
ASSIGNMENTS_CMDLET: Final = "Get-ManagementRoleAssignment"
SCOPES_CMDLET: Final = "Get-ManagementScope"
# Application Access Policies, which RBAC for Applications replaces, are the one limit on an Entra grant
# (https://learn.microsoft.com/exchange/permissions-exo/application-rbac, FAQ). UNCONFIRMED: that the reader roles
# above run Get-ApplicationAccessPolicy, and that it prints AppId (a GUID, "*" or a list), AccessRight and ScopeName.
POLICIES_CMDLET: Final = "Get-ApplicationAccessPolicy"


def _text(item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    return "" if value is None else str(value)


def _scope(item: dict[str, Any]) -> tuple[str | None, str]:
    """(what the assignment is limited to, the scope's name to look its filter up by); (None, "") for the organization.

    UNCONFIRMED: that an Application role assignment prints its -CustomResourceScope as CustomResourceScope (as the
    parameter is named; older assignments print CustomRecipientWriteScope) and its administrative unit as
    RecipientAdministrativeUnitScope.
    """
    for name in ("CustomResourceScope", "CustomRecipientWriteScope"):
        scope = _text(item, name)
        if scope:
            return f"management scope {scope}", scope.lower()
    unit = _text(item, "RecipientAdministrativeUnitScope")
    if unit:
        return f"administrative unit {unit}", ""
    return None, ""


def application_assignments(
    items: Iterable[dict[str, Any]],
    pointers: Iterable[ExchangeServicePrincipal],
    scopes: Iterable[dict[str, Any]] | None,
) -> dict[str, tuple[ApplicationRoleAssignment, ...]]:
    """Service principal object id (lower case) -> its enabled Application role assignments.

    An assignment names its pointer in RoleAssignee (ObjectId, Identity or display name; UNCONFIRMED which one
    Exchange prints), and the pointer's ObjectId is the Entra service principal's object id. Application roles are
    assignable only to service principals, so every other assignment of the organization is dropped as it is read.
    """
    pointer_of: dict[str, str] = {}
    for pointer in pointers:
        for name in pointer.names():
            pointer_of[name] = pointer.object_id.lower()
    filters = {_text(scope, "Name").lower(): _text(scope, "RecipientFilter") for scope in scopes or ()}
    found: dict[str, list[ApplicationRoleAssignment]] = defaultdict(list)
    for item in items:
        role = _text(item, "Role")
        if not role.startswith(wellknown.APPLICATION_ROLE_PREFIX) or item.get("Enabled") is False:
            continue
        sp_id = pointer_of.get(_text(item, "RoleAssignee").lower()) or pointer_of.get(
            _text(item, "RoleAssigneeName").lower()
        )
        if sp_id is None:
            continue  # not a pointer Get-ServicePrincipal listed (Exchange removes those of deleted principals)
        scope, scope_name = _scope(item)
        found[sp_id].append(
            ApplicationRoleAssignment(
                name=_text(item, "Name"),
                role=role,
                sp_object_id=sp_id,
                scope=scope,
                scope_filter=filters.get(scope_name) or None,
            )
        )
    return {sp_id: tuple(assignments) for sp_id, assignments in found.items()}


def access_policies(items: Iterable[dict[str, Any]]) -> tuple[AccessPolicy, ...]:
    """Every Application Access Policy, one per app it names."""
    found = []
    for item in items:
        app_ids = item.get("AppId") or item.get("AppID") or []
        for app_id in app_ids if isinstance(app_ids, list) else [app_ids]:
            found.append(AccessPolicy(str(app_id).lower(), _text(item, "AccessRight"), _text(item, "ScopeName")))
    return tuple(found)
