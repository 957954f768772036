"""Facts about the certificate and the tenant: frozen data the checks assert over, never fetch."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from cbacheck.errors import CbaCheckError

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
        """Match as FACTS.md 1.2 recommends: key bytes first, then both customKeyIdentifier forms."""
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


@dataclass(frozen=True)
class Organization:
    tenant_id: str
    display_name: str
    initial_domain: str
    verified_domains: tuple[str, ...]
    source: Source | None = None


# --- Link 6: token and Exchange ------------------------------------------------------------------


@dataclass(frozen=True)
class TokenAttempt:
    """The app under test asking for an Exchange token: claims on success, the error otherwise.

    Only the decoded header and claims are kept; the token and its signature never are.
    """

    authority: str
    scope: str
    client_id: str
    credential_style: str  # "RS256 x5t" or "PS256 x5t#S256"
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
    def aadsts(self) -> int | None:
        return self.error_codes[0] if self.error_codes else None


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
    requests: tuple[Source, ...] = ()
    stats: CollectionStats = field(default_factory=CollectionStats)
