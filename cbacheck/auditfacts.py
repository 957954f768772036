"""Facts of a tenant audit: every principal holding an Exchange app-only permission, read from tenant-wide lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cbacheck.facts import AppRegistration, DirectoryRoleAssignment, ExchangeRbac, ServicePrincipal


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
    ews: EwsPolicy | None = None
    tools: frozenset[str] = frozenset()  # appIds of the auditor and admin identities: never findings
    not_read: dict[str, str] = field(default_factory=dict)  # what -> why (the permission it needs)
    requests_per_endpoint: dict[str, int] = field(default_factory=dict)
    round_trips: int = 0
    sequential_round_trips: int = 0
    applications_seen: int = 0

    def roles_of(self, sp_object_id: str) -> tuple[DirectoryRoleAssignment, ...]:
        return self.roles.get(sp_object_id.lower(), ())
