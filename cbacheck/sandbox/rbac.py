"""Exchange RBAC of the sandbox: service principal pointers, role groups, role assignments, and the cmdlet table.

Microsoft's Option 2 for app-only access (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2#step-5-assign-role-permissions-to-the-application):
`New-ServicePrincipal -AppId <appId> -ObjectId <the service principal's object id>`, then
`Add-RoleGroupMember` or `New-ManagementRoleAssignment -App`. -ObjectId is "the unique ObjectId GUID
value for the service principal": the Id of Get-MgServicePrincipal, the Object ID under Enterprise
applications (https://learn.microsoft.com/powershell/module/exchangepowershell/new-serviceprincipal).
UNCONFIRMED (R13): a pointer made with the app registration's object id is accepted by the cmdlet
and silently never matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cbacheck import wellknown
from cbacheck.sandbox.values import JsonObject

# --- the one table of who may run which cmdlet -----------------------------------------------------
# Management role -> cmdlets the sandbox knows that the role holds. Real roles hold hundreds of
# cmdlets; only those the sandbox answers are listed. Rows marked UNCONFIRMED are not stated cmdlet by
# cmdlet in Microsoft's docs; the way to read them is Get-ManagementRoleEntry
# (https://learn.microsoft.com/powershell/exchange/find-exchange-cmdlet-permissions).
RBAC_READS: Final = frozenset(
    {
        "Get-ServicePrincipal",
        "Get-RoleGroup",
        "Get-RoleGroupMember",
        "Get-ManagementRoleAssignment",
        "Get-ManagementRole",
        "Get-ManagementScope",
        "Get-ApplicationAccessPolicy",  # UNCONFIRMED (A6): with the RBAC reads
    }
)
RBAC_WRITES: Final = frozenset({"New-ServicePrincipal", "Add-RoleGroupMember"})
ROLE_CMDLETS: Final[dict[str, frozenset[str]]] = {
    # UNCONFIRMED: the RBAC reads in View-Only Configuration. Microsoft names the role groups that may run
    # Get-ManagementRole / Get-ManagementRoleAssignment (View-Only Organization Management among them).
    "View-Only Configuration": frozenset({"Get-OrganizationConfig", "Get-AcceptedDomain"}) | RBAC_READS,
    # UNCONFIRMED: the recipient reads.
    "View-Only Recipients": frozenset({"Get-Mailbox", "Get-EXOMailbox"}),
    # UNCONFIRMED: Mail Recipients holds the mailbox reads.
    "Mail Recipients": frozenset({"Get-Mailbox", "Get-EXOMailbox"}),
    # UNCONFIRMED: Organization Configuration holds the organization reads.
    "Organization Configuration": frozenset({"Get-OrganizationConfig", "Get-AcceptedDomain"}),
    # Role Management manages role groups and assignments (it is what lets a holder give itself any role).
    "Role Management": RBAC_READS | RBAC_WRITES,
}
# Built-in role groups and their roles (only the roles of the table above). UNCONFIRMED: the lists are
# cut to the sandbox's roles; Organization Management holds Role Management
# (https://learn.microsoft.com/exchange/permissions-exo/permissions-exo).
BUILTIN_ROLE_GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "Organization Management": (
        "Role Management",
        "Organization Configuration",
        "Mail Recipients",
        "View-Only Configuration",
        "View-Only Recipients",
    ),
    "View-Only Organization Management": ("View-Only Configuration", "View-Only Recipients"),
    "Recipient Management": ("Mail Recipients", "View-Only Recipients"),
}
# Entra roles (template ids) -> cmdlets, for tokens whose wids hold a supported role. Microsoft: "The
# Global Administrator and Exchange Administrator roles provide the required permissions for any task
# in Exchange Online PowerShell" (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2);
# Global Reader may read RBAC (https://learn.microsoft.com/powershell/exchange/find-exchange-cmdlet-permissions).
# UNCONFIRMED: Security Reader/Administrator get configuration reads only; Get-Mailbox answers them 401
# (as users of the module report it).
_ALL_SUPPORTED: Final = wellknown.EXCHANGE_SUPPORTED_ROLES
_RECIPIENT_READERS: Final = frozenset(
    {
        wellknown.EXCHANGE_ADMINISTRATOR,
        wellknown.GLOBAL_ADMINISTRATOR,
        wellknown.GLOBAL_READER,
        wellknown.EXCHANGE_RECIPIENT_ADMINISTRATOR,
        wellknown.HELPDESK_ADMINISTRATOR,
        wellknown.COMPLIANCE_ADMINISTRATOR,
    }
)
_RBAC_READERS: Final = frozenset(
    {wellknown.EXCHANGE_ADMINISTRATOR, wellknown.GLOBAL_ADMINISTRATOR, wellknown.GLOBAL_READER}
)
_RBAC_WRITERS: Final = frozenset({wellknown.EXCHANGE_ADMINISTRATOR, wellknown.GLOBAL_ADMINISTRATOR})
CMDLET_ROLES: Final[dict[str, frozenset[str]]] = {
    "Get-OrganizationConfig": _ALL_SUPPORTED,
    "Get-AcceptedDomain": _ALL_SUPPORTED,
    "Get-Mailbox": _RECIPIENT_READERS,
    "Get-EXOMailbox": _RECIPIENT_READERS,
    **dict.fromkeys(RBAC_READS, _RBAC_READERS),
    **dict.fromkeys(RBAC_WRITES, _RBAC_WRITERS),
}
DEFAULT_WRITE_SCOPE: Final = "Organization"

# --- RBAC for Applications ---------------------------------------------------------------------------
# Application roles and the Graph (or EWS) permissions each carries, from Microsoft's table
# (https://learn.microsoft.com/exchange/permissions-exo/application-rbac#supported-application-roles; a subset).
# They are assignable only to service principal pointers (New-ManagementRoleAssignment -App) and run no cmdlet;
# -CustomResourceScope names a management scope (New-ManagementScope -RecipientRestrictionFilter), and
# -RecipientAdministrativeUnitScope an administrative unit; without either the assignment covers the organization.
# UNCONFIRMED (A1): an assignment prints its scope as CustomResourceScope and RecipientWriteScope
# CustomRecipientScope (or AdministrativeUnit); RoleAssignee is the pointer's ObjectId.
APPLICATION_ROLES: Final[dict[str, tuple[str, ...]]] = {
    "Application Mail.Read": ("Mail.Read",),
    "Application Mail.ReadBasic": ("Mail.ReadBasic",),
    "Application Mail.ReadWrite": ("Mail.ReadWrite",),
    "Application Mail.Send": ("Mail.Send",),
    "Application MailboxSettings.Read": ("MailboxSettings.Read",),
    "Application MailboxSettings.ReadWrite": ("MailboxSettings.ReadWrite",),
    "Application Calendars.Read": ("Calendars.Read",),
    "Application Calendars.ReadWrite": ("Calendars.ReadWrite",),
    "Application Contacts.Read": ("Contacts.Read",),
    "Application Contacts.ReadWrite": ("Contacts.ReadWrite",),
    "Application Mail Full Access": ("Mail.ReadWrite", "Mail.Send"),
    "Application EWS.AccessAsApp": ("EWS.AccessAsApp",),
}


def application_scope_fields(assignment: Mapping[str, Any]) -> JsonObject:
    """The write-scope fields of an Application role assignment as Get-ManagementRoleAssignment prints them."""
    scope = assignment.get("CustomResourceScope")
    unit = assignment.get("RecipientAdministrativeUnitScope")
    kind = "CustomRecipientScope" if scope else ("AdministrativeUnit" if unit else DEFAULT_WRITE_SCOPE)
    return {
        "CustomResourceScope": scope or None,
        "RecipientAdministrativeUnitScope": unit or None,
        "RecipientWriteScope": kind,
    }


def management_scope(name: str, recipient_filter: str) -> JsonObject:
    """A recipient management scope as Get-ManagementScope prints it (New-ManagementScope -RecipientRestrictionFilter,
    https://learn.microsoft.com/powershell/module/exchangepowershell/new-managementscope)."""
    return {
        "Name": name,
        "Identity": name,
        "ScopeRestrictionType": "RecipientScope",
        "Exclusive": False,
        "RecipientRoot": None,
        "RecipientFilter": recipient_filter,
    }


# --- Security & Compliance PowerShell's own RBAC (a separate collection: the state's `compliance`) ----------
# Documented: Option 2 of the app-only article works in Security & Compliance PowerShell too (New-ServicePrincipal,
# then Add-RoleGroupMember, "In Exchange Online PowerShell or Security & Compliance PowerShell",
# https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2#option-2-assign-custom-role-groups-to-the-application-using-service-principals),
# and Get-ServicePrincipal, Get-RoleGroup, Get-RoleGroupMember, New-ServicePrincipal and Add-RoleGroupMember apply
# to Security & Compliance (https://learn.microsoft.com/powershell/module/exchangepowershell/get-rolegroup), while
# Get-ManagementRoleAssignment does not. UNCONFIRMED (docs/sandbox.md, choice 36): the roles, the built-in role
# groups and which Entra role may run which cmdlet there; only the cmdlets the sandbox answers are listed.
COMPLIANCE_RBAC_READS: Final = frozenset({"Get-ServicePrincipal", "Get-RoleGroup", "Get-RoleGroupMember"})
COMPLIANCE_ROLE_CMDLETS: Final[dict[str, frozenset[str]]] = {
    "View-Only Configuration": frozenset({wellknown.SECURITY_COMPLIANCE_PROBE_CMDLET}) | COMPLIANCE_RBAC_READS,
    "Sensitivity Label Reader": frozenset({wellknown.SECURITY_COMPLIANCE_PROBE_CMDLET}),
    "Sensitivity Label Administrator": frozenset({wellknown.SECURITY_COMPLIANCE_PROBE_CMDLET}),
    "Role Management": COMPLIANCE_RBAC_READS,
}
COMPLIANCE_BUILTIN_ROLE_GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "Organization Management": ("Role Management", "View-Only Configuration", "Sensitivity Label Administrator"),
    "Compliance Administrator": ("Sensitivity Label Administrator", "View-Only Configuration"),
    "Global Reader": ("View-Only Configuration", "Sensitivity Label Reader"),
}
# The Entra roles of the S&C column of the supported-roles table (no Exchange Administrator; Step 5 of
# https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2) run the probe and the RBAC reads.
COMPLIANCE_SUPPORTED_ROLES: Final = frozenset(
    {
        wellknown.COMPLIANCE_ADMINISTRATOR,
        wellknown.GLOBAL_ADMINISTRATOR,
        wellknown.GLOBAL_READER,
        wellknown.SECURITY_ADMINISTRATOR,
        wellknown.SECURITY_READER,
    }
)
COMPLIANCE_CMDLET_ROLES: Final[dict[str, frozenset[str]]] = {
    wellknown.SECURITY_COMPLIANCE_PROBE_CMDLET: COMPLIANCE_SUPPORTED_ROLES,
    **dict.fromkeys(COMPLIANCE_RBAC_READS, COMPLIANCE_SUPPORTED_ROLES),
}


@dataclass(frozen=True)
class RbacTables:
    """One service's RBAC tables: role -> cmdlets, built-in role groups, Entra role -> cmdlets, supported roles."""

    role_cmdlets: Mapping[str, frozenset[str]]
    builtin_groups: Mapping[str, tuple[str, ...]]
    cmdlet_roles: Mapping[str, frozenset[str]]
    supported_roles: frozenset[str]


EXCHANGE_TABLES: Final = RbacTables(ROLE_CMDLETS, BUILTIN_ROLE_GROUPS, CMDLET_ROLES, wellknown.EXCHANGE_SUPPORTED_ROLES)
COMPLIANCE_TABLES: Final = RbacTables(
    COMPLIANCE_ROLE_CMDLETS, COMPLIANCE_BUILTIN_ROLE_GROUPS, COMPLIANCE_CMDLET_ROLES, COMPLIANCE_SUPPORTED_ROLES
)


def _lower(values: Iterable[Any]) -> set[str]:
    return {str(v).lower() for v in values if v is not None}


def pointer_names(pointer: Mapping[str, Any]) -> set[str]:
    """What may name a pointer in -Member, -RoleAssignee or Members: Identity, ObjectId, DisplayName, Name."""
    return _lower(pointer.get(k) for k in ("Identity", "ObjectId", "DisplayName", "Name"))


class ExchangeRbac:
    """The RBAC part of a tenant state's `exchange` (or `compliance`) object, with Exchange's matching rules."""

    def __init__(self, exchange: dict[str, list[JsonObject]], tables: RbacTables | None = None) -> None:
        self.data = exchange
        self.tables = tables or EXCHANGE_TABLES

    # roles and groups
    def custom_roles(self) -> dict[str, frozenset[str]]:
        return {str(r["Name"]): frozenset(r.get("Cmdlets", [])) for r in self.data["managementRoles"]}

    def role_cmdlets(self) -> dict[str, frozenset[str]]:
        return {**self.tables.role_cmdlets, **self.custom_roles()}

    def role_groups(self) -> list[JsonObject]:
        """Stored groups, then the built-in ones not stored (each with its built-in roles)."""
        stored = list(self.data["roleGroups"])
        names = _lower(g["Name"] for g in stored)
        for name, roles in self.tables.builtin_groups.items():
            if name.lower() not in names:
                stored.append(
                    {"Name": name, "Identity": name, "DisplayName": name, "Roles": list(roles), "Members": []}
                )
        return stored

    def role_group(self, identity: str) -> JsonObject | None:
        return next((g for g in self.role_groups() if str(g["Name"]).lower() == identity.lower()), None)

    def stored_group(self, name: str) -> JsonObject:
        """The stored group of that name, stored first when it is a built-in one."""
        group = next((g for g in self.data["roleGroups"] if str(g["Name"]).lower() == name.lower()), None)
        if group is None:
            group = dict(self.role_group(name) or {"Name": name, "Roles": [], "Members": []})
            self.data["roleGroups"].append(group)
        return group

    # pointers
    def find_pointers(self, identity: str | None) -> list[JsonObject]:
        if not identity:
            return list(self.data["servicePrincipals"])
        wanted = identity.lower()
        return [p for p in self.data["servicePrincipals"] if wanted in pointer_names(p) | _lower([p.get("AppId")])]

    def matching_pointer(self, app_id: str, sp_object_id: str | None) -> JsonObject | None:
        """The pointer Exchange uses for a token: its AppId and the Entra service principal's object id.

        UNCONFIRMED (R9): a pointer or membership takes effect at once (no propagation delay).
        """
        if not sp_object_id:
            return None
        return next(
            (
                p
                for p in self.data["servicePrincipals"]
                if str(p["AppId"]).lower() == app_id.lower() and str(p["ObjectId"]).lower() == sp_object_id.lower()
            ),
            None,
        )

    def groups_of(self, pointer: Mapping[str, Any]) -> list[JsonObject]:
        names = pointer_names(pointer)
        return [g for g in self.role_groups() if _lower(g.get("Members", [])) & names]

    def assignments_for(self, pointer: Mapping[str, Any]) -> list[JsonObject]:
        """Direct assignments to the pointer and those of its role groups (as -RoleAssignee documents).

        UNCONFIRMED (R4): a direct assignment to a pointer authorises the app like a role group does.
        """
        names = pointer_names(pointer)
        out = [
            a
            for a in self.data["managementRoleAssignments"]
            if a["RoleAssigneeType"] != "RoleGroup" and str(a["RoleAssignee"]).lower() in names
        ]
        for group in self.groups_of(pointer):
            out.extend(self.group_assignments(group))
        return out

    def group_assignments(self, group: Mapping[str, Any]) -> list[JsonObject]:
        """Stored assignments to the group, plus one per role of the group that has none stored.

        UNCONFIRMED (R7): a derived assignment has RecipientWriteScope Organization.
        """
        name = str(group["Name"])
        stored = [
            a
            for a in self.data["managementRoleAssignments"]
            if a["RoleAssigneeType"] == "RoleGroup" and str(a["RoleAssignee"]).lower() == name.lower()
        ]
        covered = _lower(a["Role"] for a in stored)
        derived = [
            group_assignment(str(role), name) for role in group.get("Roles", []) if str(role).lower() not in covered
        ]
        return stored + derived

    def cmdlets_for(self, app_id: str, sp_object_id: str | None) -> set[str] | None:
        """Lower-case cmdlets the app's RBAC path allows; None when it has no path (no pointer or no enabled role)."""
        pointer = self.matching_pointer(app_id, sp_object_id)
        if pointer is None:
            return None
        enabled = [
            a
            for a in self.assignments_for(pointer)
            if a.get("Enabled", True) and str(a["Role"]) not in APPLICATION_ROLES  # they grant data, not cmdlets
        ]
        if not enabled:
            return None
        table = self.role_cmdlets()
        return {c.lower() for a in enabled for c in table.get(str(a["Role"]), frozenset())}

    def roles_with_cmdlet(self, cmdlet: str) -> list[str]:
        return sorted(name for name, cmdlets in self.role_cmdlets().items() if cmdlet.lower() in _lower(cmdlets))


def group_assignment(role: str, group: str) -> JsonObject:
    name = f"{role}-{group}"
    return {
        "Name": name,
        "Identity": name,
        "Role": role,
        "RoleAssignee": group,
        "RoleAssigneeName": group,
        "RoleAssigneeType": "RoleGroup",
        "RecipientWriteScope": DEFAULT_WRITE_SCOPE,
        "CustomRecipientWriteScope": None,
        "RecipientAdministrativeUnitScope": None,
        "Enabled": True,
    }


ACCESS_RIGHTS: Final = ("RestrictAccess", "DenyAccess")


def access_policy(app_id: str, access_right: str, scope: str) -> JsonObject:
    """An Application Access Policy as Get-ApplicationAccessPolicy prints it (New-ApplicationAccessPolicy -AppId
    -AccessRight -PolicyScopeGroupId, https://learn.microsoft.com/powershell/module/exchangepowershell/new-applicationaccesspolicy).
    UNCONFIRMED (A7): the printed shape (one AppId GUID, ScopeName the group's name, Identity <appId>:<scope>)."""
    return {
        "Identity": f"{app_id}:{scope}",
        "AppId": app_id,
        "AccessRight": access_right,
        "ScopeName": scope,
        "ScopeIdentity": scope,
        "Description": "",
        "IsValid": True,
    }
