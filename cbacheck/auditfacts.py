"""Facts of a tenant audit: every principal holding an Exchange app-only permission, read from tenant-wide lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cbacheck.facts import (
    AppRegistration,
    DirectoryRoleAssignment,
    ExchangeProbe,
    ExchangeRbac,
    ServicePrincipal,
    TokenAttempt,
    Unavailable,
)


@dataclass(frozen=True)
class Holder:
    """One service principal and the Exchange app-only permissions granted to it (``resource/value``)."""

    sp: ServicePrincipal
    service_principal_type: str
    permissions: tuple[str, ...]
    app: AppRegistration | None = None
    # Read with $batch for apps registered here; None: not read (no registration here, or the read failed).
    owners: tuple[str, ...] | None = None
    federated_credentials: tuple[str, ...] | None = None  # "name: issuer / subject"

    @property
    def managed_identity(self) -> bool:
        return self.service_principal_type == "ManagedIdentity"

    def holds(self, value: str) -> bool:
        return any(permission.endswith(f"/{value}") for permission in self.permissions)

    def held_from(self, source: str) -> tuple[str, ...]:
        """The values of the permissions held from one source (a resource's display name, or RBAC for Applications)."""
        return tuple(p.split("/", 1)[1] for p in self.permissions if p.startswith(f"{source}/"))


@dataclass(frozen=True)
class ApplicationRoleAssignment:
    """An RBAC for Applications grant: an Application role assigned to a service principal pointer, with the resource
    scope it is limited to (https://learn.microsoft.com/exchange/permissions-exo/application-rbac)."""

    name: str
    role: str  # e.g. "Application Mail.Read"
    sp_object_id: str  # the pointer's ObjectId: the Entra service principal's object id (lower case)
    scope: str | None  # "management scope NAME" or "administrative unit ID"; None: the whole organization
    scope_filter: str | None = None  # the management scope's RecipientRestrictionFilter, when read
    enabled: bool = True

    @property
    def scoped(self) -> bool:
        return self.scope is not None

    def describe(self) -> str:
        where = self.scope or "the whole organization (no scope)"
        shown = f"{where} ({self.scope_filter})" if self.scope_filter else where
        return f"{self.role} over {shown}"


@dataclass(frozen=True)
class EwsPolicy:
    """The organization's EWS switch and app-id allow list (Get-OrganizationConfig)."""

    enabled: bool | None  # None: not configured ($null)
    allowed_app_ids: frozenset[str]  # lower case

    def accepts(self, app_id: str) -> bool:
        """Whether EWS takes the app's calls now: $false blocks every app; $true with a non-empty list admits only
        the listed apps; $null (or $true with an empty list) restricts nobody by app id
        (https://learn.microsoft.com/powershell/module/exchangepowershell/set-organizationconfig, -EwsAllowedAppIDs)."""
        if self.enabled is False:
            return False
        if self.enabled is True and self.allowed_app_ids:
            return app_id.lower() in self.allowed_app_ids
        return True


@dataclass(frozen=True)
class AccessPolicy:
    """An Application Access Policy (Get-ApplicationAccessPolicy): Exchange's older limit on the Graph mailbox
    permissions an app holds from Entra. RestrictAccess admits only the scope's mailboxes, DenyAccess all but them
    (https://learn.microsoft.com/powershell/module/exchangepowershell/new-applicationaccesspolicy)."""

    app_id: str  # lower case; "*" names every app
    access_right: str  # RestrictAccess | DenyAccess
    scope: str  # ScopeName: the group or mailbox

    def applies_to(self, app_id: str) -> bool:
        return self.app_id in ("*", app_id.lower())


@dataclass(frozen=True)
class AppLinks:
    """The token and Exchange links of an app whose certificate the user supplied (`--certificates`): the app's own
    token attempt and, with a token, the read-only Exchange probe, collected as `cbacheck run` collects them."""

    certificate: str  # the file's name
    thumbprint: str  # its SHA-1 thumbprint
    token: TokenAttempt | Unavailable
    exchange: ExchangeProbe | None | Unavailable  # None: no token, so Exchange was not asked


@dataclass(frozen=True)
class SuppliedFile:
    """A file of the `--certificates` folder as the report lists it: which apps it matched, or why none."""

    name: str
    thumbprint: str
    app_ids: tuple[str, ...] = ()
    problem: str = ""  # why it cannot sign ("" when it can)


@dataclass(frozen=True)
class AuditFacts:
    """What one audit read: the holders, their roles, what could not be read and what the reads cost."""

    collected_at: datetime
    tenant: str
    holders: tuple[Holder, ...]
    # principal object id (lower case) -> its active and eligible directory role assignments
    roles: dict[str, tuple[DirectoryRoleAssignment, ...]]
    # Exchange RBAC of the ManageAsApp holders without a tenant-wide Entra role, and the EWS policy; None: not read.
    # appId (lower case) -> last app-only sign-in (ISO 8601) from the beta report; None: report not read.
    last_sign_in: dict[str, str] | None = None
    app_management_policy: dict[str, object] | None = None  # the default policy's summary; None: not read
    exchange_rbac: ExchangeRbac | None = None
    # service principal object id (lower case) -> its enabled RBAC for Applications assignments; None: not read.
    application_rbac: dict[str, tuple[ApplicationRoleAssignment, ...]] | None = None
    access_policies: tuple[AccessPolicy, ...] | None = None  # the organization's; None: not read
    ews: EwsPolicy | None = None
    tools: frozenset[str] = frozenset()  # appIds of the auditor and admin identities: never findings
    links: dict[str, AppLinks] = field(default_factory=dict)  # appId (lower case) -> its links (--certificates)
    supplied: tuple[SuppliedFile, ...] = ()  # the --certificates folder's files
    not_read: dict[str, str] = field(default_factory=dict)  # what -> why (the permission it needs)
    requests_per_endpoint: dict[str, int] = field(default_factory=dict)
    round_trips: int = 0
    sequential_round_trips: int = 0
    applications_seen: int = 0

    def roles_of(self, sp_object_id: str) -> tuple[DirectoryRoleAssignment, ...]:
        return self.roles.get(sp_object_id.lower(), ())

    def access_policies_of(self, app_id: str) -> tuple[AccessPolicy, ...] | None:
        if self.access_policies is None:
            return None
        return tuple(p for p in self.access_policies if p.applies_to(app_id))

    def application_roles_of(self, sp_object_id: str) -> tuple[ApplicationRoleAssignment, ...]:
        return (self.application_rbac or {}).get(sp_object_id.lower(), ())
