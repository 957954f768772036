"""Facts of Exchange RBAC (the app's service principal pointers, role assignments, role groups): frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # facts imports this module; the annotation alone needs Source
    from cbacheck.facts import Source

# --- Exchange RBAC (Option 2 of https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2#step-5-assign-role-permissions-to-the-application)

# Role groups whose members can give themselves any role: the RBAC fix never adds to them unless asked.
ROLE_MANAGEMENT: str = "Role Management"
ORGANIZATION_MANAGEMENT: str = "Organization Management"


@dataclass(frozen=True)
class ExchangeServicePrincipal:
    """A service principal pointer in Exchange (Get-ServicePrincipal): the app's AppId and an Entra object id."""

    app_id: str
    object_id: str
    identity: str
    display_name: str

    def names(self) -> set[str]:
        """What may name the pointer in a role group's Members or an assignment's RoleAssignee (lower case)."""
        return {v.lower() for v in (self.identity, self.object_id, self.display_name) if v}

    def summary(self) -> dict[str, Any]:
        return {
            "AppId": self.app_id,
            "ObjectId": self.object_id,
            "Identity": self.identity,
            "DisplayName": self.display_name,
        }


@dataclass(frozen=True)
class ManagementRoleAssignment:
    """A management role assignment (Get-ManagementRoleAssignment -RoleAssignee): direct or via a role group."""

    pointer: str  # ObjectId of the pointer it was read for
    name: str
    role: str
    role_assignee: str
    role_assignee_type: str  # "RoleGroup" when it reaches the pointer through a role group
    recipient_write_scope: str
    custom_recipient_write_scope: str | None
    administrative_unit_scope: str | None
    enabled: bool

    @property
    def via_role_group(self) -> bool:
        return self.role_assignee_type in ("RoleGroup", "LinkedRoleGroup")

    def summary(self) -> dict[str, Any]:
        return {
            "Role": self.role,
            "RoleAssignee": self.role_assignee,
            "RoleAssigneeType": self.role_assignee_type,
            "RecipientWriteScope": self.recipient_write_scope,
            "CustomRecipientWriteScope": self.custom_recipient_write_scope,
            "RecipientAdministrativeUnitScope": self.administrative_unit_scope,
            "Enabled": self.enabled,
        }


@dataclass(frozen=True)
class RoleGroup:
    """An Exchange role group (Get-RoleGroup): its roles and members."""

    name: str
    roles: tuple[str, ...]
    members: tuple[str, ...]

    def has_member(self, pointer: ExchangeServicePrincipal) -> bool:
        return bool({m.lower() for m in self.members} & pointer.names())

    @property
    def manages_roles(self) -> bool:
        """Organization Management, or a group holding Role Management: its members can grant themselves anything."""
        return self.name.lower() == ORGANIZATION_MANAGEMENT.lower() or ROLE_MANAGEMENT.lower() in {
            r.lower() for r in self.roles
        }


@dataclass(frozen=True)
class ExchangeRbac:
    """The app's Exchange RBAC as the auditor read it: pointers with its AppId, their assignments, role groups."""

    pointers: tuple[ExchangeServicePrincipal, ...]  # every pointer whose AppId is the app's
    assignments: tuple[ManagementRoleAssignment, ...]  # for those pointers, direct and via role groups
    role_groups: tuple[RoleGroup, ...]  # every role group of the organization
    cmdlet_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)  # Get-ManagementRole -Cmdlet
    source: Source | None = None

    def pointer_matches(self, sp_object_id: str) -> ExchangeServicePrincipal | None:
        """The pointer Exchange uses: ObjectId = the service principal's object id (not the app registration's)."""
        return next((p for p in self.pointers if p.object_id.lower() == sp_object_id.lower()), None)

    def mismatched_pointers(self, sp_object_id: str) -> tuple[ExchangeServicePrincipal, ...]:
        """Pointers with the app's AppId and another ObjectId: Exchange silently never matches them."""
        return tuple(p for p in self.pointers if p.object_id.lower() != sp_object_id.lower())

    def assignments_of(self, pointer: ExchangeServicePrincipal) -> tuple[ManagementRoleAssignment, ...]:
        return tuple(a for a in self.assignments if a.pointer.lower() == pointer.object_id.lower() and a.enabled)

    def authorised(self, sp_object_id: str) -> bool:
        """An RBAC path: the matching pointer holds an enabled role assignment (direct or via a role group)."""
        pointer = self.pointer_matches(sp_object_id)
        return pointer is not None and bool(self.assignments_of(pointer))

    def holds_assignment(self) -> bool:
        """Some pointer with the app's AppId holds an enabled assignment: RBAC is the intended path."""
        return any(self.assignments_of(p) for p in self.pointers)

    def roles_of(self, sp_object_id: str) -> tuple[str, ...]:
        pointer = self.pointer_matches(sp_object_id)
        return tuple(dict.fromkeys(a.role for a in self.assignments_of(pointer))) if pointer else ()

    def roles_for(self, cmdlet: str, sp_object_id: str) -> tuple[str, ...]:
        """The roles assigned through the matching pointer that hold the cmdlet (custom roles included)."""
        holding = {r.lower() for r in self.cmdlet_roles.get(cmdlet, ())}
        return tuple(r for r in self.roles_of(sp_object_id) if r.lower() in holding)

    def groups_of(self, pointer: ExchangeServicePrincipal) -> tuple[RoleGroup, ...]:
        return tuple(g for g in self.role_groups if g.has_member(pointer))

    def role_group(self, name: str) -> RoleGroup | None:
        return next((g for g in self.role_groups if g.name.lower() == name.lower()), None)

    def write_scopes(self, sp_object_id: str) -> list[dict[str, Any]]:
        """Each assigned role with its write scope (RecipientWriteScope, custom scope, administrative unit)."""
        pointer = self.pointer_matches(sp_object_id)
        return [a.summary() for a in self.assignments_of(pointer)] if pointer else []
