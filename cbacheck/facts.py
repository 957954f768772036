"""Facts about the certificate and the tenant: frozen data the checks assert over, never fetch."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cbacheck.errors import CbaCheckError
from cbacheck.rbacfacts import (  # the Exchange RBAC facts, importable from this path too
    ORGANIZATION_MANAGEMENT as ORGANIZATION_MANAGEMENT,
)
from cbacheck.rbacfacts import ROLE_MANAGEMENT as ROLE_MANAGEMENT
from cbacheck.rbacfacts import ExchangeRbac as ExchangeRbac
from cbacheck.rbacfacts import ExchangeServicePrincipal as ExchangeServicePrincipal
from cbacheck.rbacfacts import ManagementRoleAssignment as ManagementRoleAssignment
from cbacheck.rbacfacts import RoleGroup as RoleGroup

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """The request that produced a fact, so the report can show where a verdict came from."""

    method: str
    url: str
    status: int | None
    request_id: str = ""
    elapsed_ms: float = 0.0
    at: str = ""  # ISO 8601 UTC
    batched: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "request_id": self.request_id,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "at": self.at,
            "batched": self.batched,
        }


@dataclass(frozen=True)
class Unavailable:
    """A fact that could not be collected; checks that need it end as Error, never Passed."""

    what: str
    reason: str
    missing_permission: str = ""
    source: Source | None = None
    error: CbaCheckError | None = field(default=None, compare=False)

    def __str__(self) -> str:
        text = f"could not collect {self.what}: {self.reason}"
        if self.missing_permission and self.missing_permission not in self.reason:
            text += f" (the auditor needs {self.missing_permission})"
        return text


class FactUnavailable(CbaCheckError):
    """Raised by fact fixtures during setup so the check ends as Error with the reason."""

    def __init__(self, missing: Unavailable) -> None:
        self.missing = missing
        super().__init__(str(missing))


def available(value: T | Unavailable) -> T:
    """The fact itself, or FactUnavailable (an Error in the report) when it could not be collected."""
    if isinstance(value, Unavailable):
        raise FactUnavailable(value)
    return value


# --- Link 1: the local certificate -------------------------------------------------------------


@dataclass(frozen=True)
class CertFacts:
    """What cbacheck read from the local certificate file (never the private key itself)."""

    path: Path
    source: str  # where the path came from (option, env, file, default)
    file_format: str  # "der", "pem", "pkcs12"
    subject: str
    issuer: str
    serial: str  # hex
    not_before: datetime  # aware, UTC
    not_after: datetime  # aware, UTC
    key_type: str  # "RSA", "EC", "DSA", "Ed25519", ...
    key_size: int | None
    signature_hash: str | None  # "sha256", "sha1", ... (None when the algorithm has none)
    key_usage: tuple[str, ...] | None  # None when the extension is absent
    extended_key_usage: tuple[str, ...] | None
    sha1_thumbprint: str  # 40 uppercase hex, as the Entra portal shows it
    sha256_thumbprint: str  # 64 uppercase hex
    der_base64: str  # the public certificate (safe to show and upload)
    self_signed: bool
    private_key_present: bool
    private_key_matches: bool | None  # None when no key is present
    private_key_reason: str  # why the key is missing or does not match ("" when fine)
    key_encrypted: bool | None  # PEM key or PFX protected by a password (None: no key)
    file_mode: int | None  # POSIX permission bits of the file holding the key
    read_at: datetime

    @property
    def lifetime_days(self) -> float:
        return (self.not_after - self.not_before).total_seconds() / 86400


# --- Links 2 to 5: Graph objects ------------------------------------------------------------------


@dataclass(frozen=True)
class KeyCredential:
    key_id: str
    type: str
    usage: str
    display_name: str
    start: datetime | None
    end: datetime | None
    custom_key_identifier: str | None
    key_der: bytes | None  # present only when read with $select=keyCredentials

    def matches_thumbprint(self, sha1_hex: str) -> bool:
        """Match by the key bytes first, then by customKeyIdentifier (as hex or as base64 of the SHA-1 thumbprint).

        Graph returns the bytes only for a single object read with $select=keyCredentials
        (https://learn.microsoft.com/graph/api/resources/keycredential).
        """
        sha1_hex = sha1_hex.upper()
        if self.key_der is not None:
            return hashlib.sha1(self.key_der).hexdigest().upper() == sha1_hex
        cki = self.custom_key_identifier
        if not cki:
            return False
        if cki.upper() == sha1_hex:
            return True
        try:
            return base64.b64decode(cki, validate=True).hex().upper() == sha1_hex
        except ValueError:
            return False

    @property
    def thumbprint(self) -> str | None:
        if self.key_der is not None:
            return hashlib.sha1(self.key_der).hexdigest().upper()
        return None

    def summary(self) -> dict[str, Any]:
        """What evidence and plans show of a key: identity, thumbprint and window, never the bytes."""
        return {
            "keyId": self.key_id,
            "displayName": self.display_name,
            "type": self.type,
            "usage": self.usage,
            "thumbprint": self.thumbprint,
            "customKeyIdentifier": self.custom_key_identifier,
            "startDateTime": self.start.isoformat() if self.start else None,
            "endDateTime": self.end.isoformat() if self.end else None,
        }

    def one_line(self) -> str:
        """The key in one line for a console plan: id, name, thumbprint and end date."""
        end = self.end.strftime("%Y-%m-%d") if self.end else "no end date"
        thumb = self.thumbprint or self.custom_key_identifier or "unknown thumbprint"
        name = self.display_name or "(no name)"
        return f"keyId {self.key_id} ({name}, SHA-1 {thumb}, ends {end})"


@dataclass(frozen=True)
class PasswordCredential:
    key_id: str
    display_name: str
    hint: str
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class ResourceAccess:
    id: str
    type: str  # "Role" (application permission) or "Scope" (delegated)


@dataclass(frozen=True)
class RequiredResource:
    resource_app_id: str
    access: tuple[ResourceAccess, ...]

    def requests_app_role(self, resource_app_id: str, role_id: str) -> bool:
        """This entry asks for the application permission (type Role, not a delegated Scope)."""
        return self.resource_app_id == resource_app_id and any(
            access.id == role_id and access.type == "Role" for access in self.access
        )


@dataclass(frozen=True)
class AppRegistration:
    object_id: str
    app_id: str
    display_name: str
    sign_in_audience: str
    key_credentials: tuple[KeyCredential, ...]
    password_credentials: tuple[PasswordCredential, ...]
    required_resource_access: tuple[RequiredResource, ...]
    raw: dict[str, Any] = field(compare=False, repr=False)  # as Graph returned it (key bytes kept)
    source: Source | None = None
    created: datetime | None = None  # createdDateTime; None when Graph gave none (registrations of long ago)

    def requests_app_role(self, resource_app_id: str, role_id: str) -> bool:
        """The manifest asks for this application permission (a Role entry; a delegated Scope is not it).

        https://learn.microsoft.com/graph/api/resources/resourceaccess
        """
        return any(entry.requests_app_role(resource_app_id, role_id) for entry in self.required_resource_access)

    def keys_matching(self, sha1_hex: str) -> tuple[KeyCredential, ...]:
        """The keyCredentials that hold the certificate with this SHA-1 thumbprint."""
        return tuple(key for key in self.key_credentials if key.matches_thumbprint(sha1_hex))

    def keys_expiring(self, now: datetime, days: int) -> tuple[KeyCredential, ...]:
        """Keys ending in (now, now + days] while no key valid now outlives that window: a rotation is due."""
        limit = now + timedelta(days=days)
        soon = tuple(key for key in self.key_credentials if key.end is not None and now < key.end <= limit)
        successor = any(k.end and k.end > limit and (k.start is None or k.start <= now) for k in self.key_credentials)
        return () if successor else soon


@dataclass(frozen=True)
class AppRole:
    id: str
    value: str
    display_name: str
    allowed_member_types: tuple[str, ...]


@dataclass(frozen=True)
class ServicePrincipal:
    object_id: str
    app_id: str
    display_name: str
    account_enabled: bool
    app_roles: tuple[AppRole, ...]
    source: Source | None = None

    def role_value(self, role_id: str) -> str | None:
        for role in self.app_roles:
            if role.id == role_id:
                return role.value
        return None

    def role_id(self, value: str) -> str | None:
        """The id of the app role with this value (e.g. Exchange.ManageAsAppV2), None when it has none."""
        for role in self.app_roles:
            if role.value == value:
                return role.id
        return None


@dataclass(frozen=True)
class AppRoleAssignment:
    id: str
    principal_id: str
    resource_id: str
    resource_display_name: str
    app_role_id: str
    created: str = ""


@dataclass(frozen=True)
class DirectoryRoleAssignment:
    id: str
    principal_id: str
    role_definition_id: str
    role_template_id: str
    role_display_name: str
    directory_scope_id: str
    app_scope_id: str | None
    status: str = "active"  # "active" (roleAssignments) or "eligible" (roleEligibilitySchedules)

    @property
    def tenant_wide(self) -> bool:
        return self.directory_scope_id == "/" and not self.app_scope_id

    @property
    def template_id(self) -> str:
        """The role's template id, lower case; built-in roles assigned by template carry it as roleDefinitionId."""
        return (self.role_template_id or self.role_definition_id).lower()

    def grants_tenant_wide(self, accepted: frozenset[str] | set[str]) -> bool:
        """An active assignment of one of these role templates (lower-case ids) at tenant scope "/"."""
        return self.status == "active" and self.tenant_wide and self.template_id in accepted


@dataclass(frozen=True)
class Organization:
    tenant_id: str
    display_name: str
    initial_domain: str
    verified_domains: tuple[str, ...]
    source: Source | None = None


# --- Link 6: token and Exchange ------------------------------------------------------------------


# AADSTS codes that only wrap a more specific one in the same answer (70002 InvalidClientCredentials).
AADSTS_WRAPPER_CODES = frozenset({70002})


def most_specific_first(codes: tuple[int, ...]) -> tuple[int, ...]:
    """AADSTS codes of one answer with the wrapper codes last, the others in Entra's order."""
    return tuple(sorted(codes, key=lambda code: code in AADSTS_WRAPPER_CODES))


@dataclass(frozen=True)
class TokenAttempt:
    """The app under test asking for an Exchange token: claims on success, the error otherwise.

    Only the decoded header and claims are kept; the token and its signature never are.
    """

    authority: str
    scope: str
    client_id: str
    credential_style: str  # the client assertion's algorithm and thumbprint header: "PS256 x5t#S256"
    acquired: bool
    header: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    error: str = ""  # OAuth error field
    error_codes: tuple[int, ...] = ()
    error_description: str = ""  # Microsoft's text, first line
    correlation_id: str = ""
    trace_id: str = ""
    timestamp: str = ""
    elapsed_ms: float = 0.0

    @property
    def aadsts_codes(self) -> tuple[int, ...]:
        """Every AADSTS code of the answer, most specific first: a generic wrapper code goes last.

        Entra may answer with several codes, e.g. "error_codes":[70002,50032] for a weak RSA key, where
        70002 only says the credentials were not valid (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
        """
        return most_specific_first(self.error_codes)

    @property
    def aadsts(self) -> int | None:
        """The most specific AADSTS code of the answer (None without one)."""
        codes = self.aadsts_codes
        return codes[0] if codes else None

    @property
    def roles(self) -> tuple[str, ...]:
        """The token's `roles` claim (application permissions); empty without a token."""
        return self._claim_list("roles", lower=False)

    @property
    def wids(self) -> tuple[str, ...]:
        """The token's `wids` claim (directory role template ids), lower case; empty without a token."""
        return self._claim_list("wids", lower=True)

    def _claim_list(self, name: str, *, lower: bool) -> tuple[str, ...]:
        values = self.claims.get(name) if self.acquired else None
        if not isinstance(values, list | tuple):
            return ()
        return tuple(str(v).lower() if lower else str(v) for v in values)


@dataclass(frozen=True)
class ExchangeProbe:
    """One read-only cmdlet through the Exchange admin API."""

    cmdlet: str
    url: str
    status: int | None
    ok: bool
    summary: dict[str, Any] = field(default_factory=dict)  # a few properties of what came back
    error_code: str = ""
    error_message: str = ""
    request_id: str = ""
    elapsed_ms: float = 0.0


@dataclass(frozen=True)
class CollectionStats:
    graph_round_trips: int = 0
    graph_requests: int = 0  # including each request inside a $batch
    token_requests: int = 0
    exchange_requests: int = 0
    retries: int = 0
    wall_ms: float = 0.0


NOT_CONFIGURED = "no tenant configured"
# Office 365 Exchange Online's appId (wellknown.EXCHANGE_ONLINE_APP_ID; facts imports nothing of cbacheck but errors).
EXCHANGE_ONLINE_RESOURCE = "00000002-0000-0ff1-ce00-000000000000"
# Service principals of resource applications other than Office 365 Exchange Online, by appId (the
# profiles' resources, e.g. Microsoft Exchange Online Protection); None: confirmed absent.
ProfileTokens = Mapping[str, "TokenAttempt | Unavailable"]  # another profile's token attempt, by profile name
# Another profile's read-only probe with its token, by profile name (None: no token to try).
ProfileProbes = Mapping[str, "ExchangeProbe | None | Unavailable"]
# A profile's own RBAC (Security & Compliance role groups), read through its endpoint, by profile name.
ProfileRbac = Mapping[str, "ExchangeRbac | Unavailable"]
ResourceServicePrincipals = Mapping[str, "ServicePrincipal | None | Unavailable"]


@dataclass(frozen=True)
class TenantFacts:
    """Everything the checks of links 2 to 6 need, collected once.

    `None` means collected and confirmed absent (a failure for the check that requires it);
    `Unavailable` means it could not be collected (an error). `app_sp` etc. are None when the
    object they hang off does not exist.
    """

    collected_at: datetime
    tenant: str
    app_id: str
    organization_setting: str | None
    organization: Organization | Unavailable
    app: AppRegistration | None | Unavailable
    app_sp: ServicePrincipal | None | Unavailable
    exchange_sp: ServicePrincipal | None | Unavailable
    app_role_grants: tuple[AppRoleAssignment, ...] | Unavailable  # granted to the app's SP
    role_assignments: tuple[DirectoryRoleAssignment, ...] | Unavailable  # active
    role_eligibilities: tuple[DirectoryRoleAssignment, ...] | Unavailable  # PIM eligible
    token: TokenAttempt | Unavailable
    exchange: ExchangeProbe | None | Unavailable  # None: not attempted because no token
    auditor: str  # how the auditor signed in, for the report
    # The app's Exchange RBAC, read by the auditor with its own Exchange token.
    exchange_rbac: ExchangeRbac | None | Unavailable = field(
        default=Unavailable("the app's Exchange RBAC", "not collected")
    )
    requests: tuple[Source, ...] = ()
    stats: CollectionStats = field(default_factory=CollectionStats)
    resource_sps: ResourceServicePrincipals = field(default_factory=dict)
    profile_tokens: ProfileTokens = field(default_factory=dict)
    profile_probes: ProfileProbes = field(default_factory=dict)
    profile_rbac: ProfileRbac = field(default_factory=dict)
    # Why role_eligibilities is empty without being read, e.g. a tenant without Entra ID P2 where
    # no eligible assignment can exist ("" when the eligibilities were read).
    pim_note: str = ""

    def resource_sp(self, app_id: str) -> ServicePrincipal | None | Unavailable:
        """The service principal of a resource application: Exchange Online's or one a profile collected."""
        if app_id.lower() == EXCHANGE_ONLINE_RESOURCE:
            return self.exchange_sp
        return self.resource_sps.get(
            app_id.lower(), Unavailable(f"the service principal of resource {app_id}", "not collected")
        )

    def known_resource_sp(self, app_id: str) -> ServicePrincipal | None:
        """The resource's service principal, or None when absent or not collected (for inference only)."""
        value = self.resource_sp(app_id)
        return None if isinstance(value, Unavailable) else value

    def known(self, name: str) -> Any:
        """The named fact, or None when it could not be collected (for cross-link inference only)."""
        value = getattr(self, name)
        return None if isinstance(value, Unavailable) else value

    def known_token_of(self, profile: str) -> TokenAttempt | None:
        """The app's token for that profile when one was asked for it, else its Exchange Online token (inference)."""
        value = self.profile_tokens.get(profile, self.token)
        return None if isinstance(value, Unavailable) else value

    def holds_role_tenant_wide(self, accepted: frozenset[str] | set[str]) -> bool | None:
        """Graph shows one of these roles assigned actively at tenant scope (None when that is unknown)."""
        assignments = self.role_assignments
        if isinstance(assignments, Unavailable):
            return None
        return any(a.grants_tenant_wide(accepted) for a in assignments)

    def rbac_path(self, profile: str = "") -> bool | None:
        """The app is authorised, or meant to be, through RBAC (None when RBAC could not be read).

        True when its pointer holds a role, or a pointer with its AppId holds one (made with the wrong
        object id: the RBAC path is still the intended one, not an Entra role). `profile` names a profile whose
        role groups are its own (profile_rbac, `Profile.rbac_key`); "" is Exchange's.
        """
        rbac, sp = self._rbac(profile), self.known("app_sp")
        if isinstance(rbac, Unavailable):
            return None
        if rbac is None:
            return False
        return rbac.holds_assignment() or (sp is not None and rbac.authorised(sp.object_id))

    def exchange_rbac_read(self, profile: str = "") -> tuple[ExchangeRbac | None, str]:
        """The app's RBAC (None when unread or absent) and why it could not be read ("" when it was): a profile's
        own (profile_rbac) when it has one, else Exchange's."""
        rbac = self._rbac(profile)
        if isinstance(rbac, Unavailable):
            return None, str(rbac)
        return rbac, ""

    def _rbac(self, profile: str) -> ExchangeRbac | None | Unavailable:
        """Exchange's RBAC (profile ""), or the named profile's own role groups (Profile.rbac_key)."""
        if not profile:
            return self.exchange_rbac
        missing = Unavailable(f"the app's role groups of profile {profile}", "not collected")
        return self.profile_rbac.get(profile, missing)

    def wids_needed(self, accepted: frozenset[str] | set[str], profile: str = "") -> bool:
        """The app's way into the service is the Entra-role path, so its token's wids must carry the role.

        Not so when RBAC authorises it (or is meant to), or when RBAC could not be read but the service
        accepted the app without any Entra role at tenant scope.
        """
        rbac = self.rbac_path(profile)
        if rbac:
            return False
        return not (rbac is None and self.exchange_accepted(profile) and not self.holds_role_tenant_wide(accepted))

    def exchange_accepted(self, profile: str = "") -> bool:
        """The probe ran a cmdlet with the app's token: Exchange's (profile ""), or the named profile's probe."""
        probe = self.profile_probes.get(profile) if profile else self.exchange
        return bool(probe is not None and not isinstance(probe, Unavailable) and probe.ok)


# Every TenantFacts field that is collected and may be Unavailable, in declaration order: the report's
# "facts" block and the collection's bookkeeping both list them from here.
FACT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TenantFacts) if "Unavailable" in str(f.type))
