"""Fix actions as data and the pure planners that choose them from failed requirements and collected facts."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final

from cbacheck import catalogue, wellknown
from cbacheck.config import Settings, env_name, role_id
from cbacheck.errors import FixError
from cbacheck.facts import (
    AppRegistration,
    CertFacts,
    DirectoryRoleAssignment,
    KeyCredential,
    ServicePrincipal,
    TenantFacts,
    TokenAttempt,
    Unavailable,
)

# Least-privileged Graph application permissions per write (FACTS.md 1.12). PATCH on an application
# needs only Application.ReadWrite.OwnedBy when the admin app owns the target app.
PERMISSION_PATCH_APPLICATION: Final = (
    "Application.ReadWrite.OwnedBy (when the admin app owns it) or Application.ReadWrite.All"
)
PERMISSION_CREATE_APPLICATION: Final = "AppRegistration.Create"
PERMISSION_CREATE_SERVICE_PRINCIPAL: Final = "Application.ReadWrite.OwnedBy"
PERMISSION_PATCH_SERVICE_PRINCIPAL: Final = (
    "Application.ReadWrite.OwnedBy (when the admin app owns it) or Application.ReadWrite.All"
)
PERMISSION_GRANT_APP_ROLE: Final = "AppRoleAssignment.ReadWrite.All"
PERMISSION_ASSIGN_DIRECTORY_ROLE: Final = "RoleManagement.ReadWrite.Directory"
PERMISSION_LOCAL: Final = "none (local files only)"
PERMISSION_MANUAL: Final = "none (done by a person)"

DEFAULT_CERT_DIR: Final = Path("certs")
DEFAULT_CERT_SUBJECT: Final = "CN=exo-automation"
DEFAULT_APP_NAME: Final = "Exchange Online automation"
KEY_TYPE: Final = "AsymmetricX509Cert"
KEY_USAGE: Final = "Verify"

# Planners run in the catalogue's order of fixes, which follows the chain (link 1 to 6), so a plan reads
# along it.
PLANNER_ORDER: Final = catalogue.FIXES

# A broken upstream object leaves nothing downstream to keep: a new app has no SP, key, permission,
# consent or role; a new SP has no consent or role; a new local certificate is not uploaded yet.
IMPLIED_FIXES: Final[dict[str, tuple[str, ...]]] = {
    "create_app": (
        "create_service_principal",
        "upload_certificate",
        "add_exchange_permission",
        "grant_exchange_consent",
        "assign_directory_role",
    ),
    "new_certificate": ("upload_certificate",),
}
IMPLIED_BY_MISSING_SERVICE_PRINCIPAL: Final = ("grant_exchange_consent", "assign_directory_role")

_JWT_RE = re.compile(r"^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
SECRET_FIELDS: Final = frozenset(
    {
        "secrettext",
        "password",
        "cert_password",
        "client_secret",
        "access_token",
        "refresh_token",
        "id_token",
        "proof",
        "private_key",
        "private_key_pem",
    }
)


# --- symbolic references -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A value an earlier action produces at apply time, e.g. the object id of the app it creates."""

    action_id: str
    output: str

    def __str__(self) -> str:
        return "{" + f"{self.action_id}.{self.output}" + "}"


def resolve_ref(value: str | Ref, outputs: Mapping[str, Mapping[str, Any]]) -> str:
    """The concrete value: a string stays; a Ref is looked up in the outputs of the actions already run."""
    if isinstance(value, str):
        return value
    produced = outputs.get(value.action_id, {})
    if value.output not in produced or produced[value.output] in (None, ""):
        raise FixError(
            f"action {value.action_id!r} has not produced {value.output!r} (it did not run or failed); "
            "run the fix again after it succeeds"
        )
    return str(produced[value.output])


def shown(value: str | Ref) -> str:
    """A value as the plan shows it: refs as {action.output}."""
    return str(value)


# --- eliding key bytes and secrets ----------------------------------------------------------------


def describe_key_bytes(key_base64: str) -> str:
    """Base64 DER as a short description: size and SHA-1, never the bytes themselves."""
    try:
        der = base64.b64decode(key_base64, validate=True)
    except (binascii.Error, ValueError):
        return f"<key elided, {len(key_base64)} base64 characters>"
    return f"<base64 DER, {len(der)} bytes, SHA-1 {hashlib.sha1(der).hexdigest().upper()}>"


def redact(value: Any) -> Any:
    """A copy of JSON data fit for a report: key bytes described, secrets, PEM blocks and tokens elided."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for name, item in value.items():
            lowered = str(name).lower()
            if lowered in SECRET_FIELDS:
                out[name] = "<secret elided>" if item else item
            elif lowered == "key" and isinstance(item, str):
                out[name] = describe_key_bytes(item)
            else:
                out[name] = redact(item)
        return out
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        if "-----BEGIN" in value:
            return "<PEM elided>"
        if _JWT_RE.match(value):
            return "<token elided>"
        if value.lower().startswith("bearer "):
            return "<token elided>"
    if isinstance(value, Path):
        return str(value)
    return value


# --- actions ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Action:
    """One change a fix makes: data, not a call. `describe()` is the request, with secrets elided."""

    id: str
    mends: tuple[str, ...]
    reason: str
    depends_on: tuple[str, ...] = ()
    permission: ClassVar[str] = ""

    @property
    def kind(self) -> str:
        return type(self).__name__

    @property
    def automated(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        """The action as the reports show it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "automated": self.automated,
            "mends": list(self.mends),
            "reason": self.reason,
            "permission": self.permission,
            "depends_on": list(self.depends_on),
            "request": self.describe(),
        }


@dataclass(frozen=True, kw_only=True)
class CreateCertificate(Action):
    """Create a self-signed RSA/SHA-256 certificate in local files, as `cbacheck cert new` does."""

    subject: str
    out_dir: Path
    days: int
    key_size: int = 2048
    encrypt_key: bool = False  # with the password from cert_password (environment or file only)
    permission: ClassVar[str] = PERMISSION_LOCAL

    def describe(self) -> dict[str, Any]:
        protection = (
            f"encrypted with the password from {env_name('cert_password')}"
            if self.encrypt_key
            else "unencrypted, file mode 0600"
        )
        return {
            "method": "LOCAL",
            "path": str(self.out_dir),
            "body": {
                "subject": self.subject,
                "days": self.days,
                "key": f"RSA {self.key_size} bits, SHA-256 signature; key {protection}",
                "files": ["<CN>.cer (DER, to upload)", "<CN>.pem (certificate and key)"],
            },
        }


@dataclass(frozen=True, kw_only=True)
class CreateApplication(Action):
    """Register a single-tenant application (Entra assigns its appId)."""

    display_name: str
    permission: ClassVar[str] = PERMISSION_CREATE_APPLICATION

    def body(self) -> dict[str, Any]:
        return {"displayName": self.display_name, "signInAudience": "AzureADMyOrg"}

    def describe(self) -> dict[str, Any]:
        return {"method": "POST", "path": "/applications", "body": self.body()}


@dataclass(frozen=True, kw_only=True)
class CreateServicePrincipal(Action):
    """Create the app's service principal in this tenant."""

    app_id: str | Ref
    permission: ClassVar[str] = PERMISSION_CREATE_SERVICE_PRINCIPAL

    def describe(self) -> dict[str, Any]:
        return {"method": "POST", "path": "/servicePrincipals", "body": {"appId": shown(self.app_id)}}


@dataclass(frozen=True, kw_only=True)
class EnableServicePrincipal(Action):
    """Enable a disabled service principal (AADSTS7000112 otherwise)."""

    service_principal_id: str
    permission: ClassVar[str] = PERMISSION_PATCH_SERVICE_PRINCIPAL

    def describe(self) -> dict[str, Any]:
        return {
            "method": "PATCH",
            "path": f"/servicePrincipals/{self.service_principal_id}",
            "body": {"accountEnabled": True},
        }


@dataclass(frozen=True, kw_only=True)
class AddKeyCredential(Action):
    """Upload a certificate as a keyCredential, keeping every existing key (PATCH replaces the collection)."""

    app_object_id: str | Ref
    certificate: str | Ref  # base64 DER, or the der_base64 output of a CreateCertificate
    display_name: str
    existing_keys: tuple[str, ...] = ()  # how the keys present at plan time are shown
    prove_old_certificate: bool = False  # rotation: verify that the old certificate still signs in too
    permission: ClassVar[str] = PERMISSION_PATCH_APPLICATION

    @property
    def sha1_thumbprint(self) -> str | None:
        if isinstance(self.certificate, Ref):
            return None
        return hashlib.sha1(base64.b64decode(self.certificate)).hexdigest().upper()

    def new_key(self, der_base64: str) -> dict[str, Any]:
        return {"type": KEY_TYPE, "usage": KEY_USAGE, "key": der_base64, "displayName": self.display_name}

    def describe(self) -> dict[str, Any]:
        if isinstance(self.certificate, Ref):
            key = f"<base64 DER of the certificate {self.certificate.action_id} creates>"
        else:
            key = describe_key_bytes(self.certificate)
        kept = [f"kept as returned: {text}" for text in self.existing_keys]
        new = {"type": KEY_TYPE, "usage": KEY_USAGE, "key": key, "displayName": self.display_name}
        path = f"/applications/{shown(self.app_object_id)}"
        return {
            "reads": [{"method": "GET", "path": path, "params": {"$select": "keyCredentials"}}],
            "method": "PATCH",
            "path": path,
            "body": {"keyCredentials": [*kept, new]},
        }


@dataclass(frozen=True, kw_only=True)
class AddRequiredResourceAccess(Action):
    """Add Exchange.ManageAsApp to requiredResourceAccess, keeping every other entry (PATCH replaces the list)."""

    app_object_id: str | Ref
    resource_app_id: str = wellknown.EXCHANGE_ONLINE_APP_ID
    app_role_id: str = wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
    permission: ClassVar[str] = PERMISSION_PATCH_APPLICATION

    def describe(self) -> dict[str, Any]:
        path = f"/applications/{shown(self.app_object_id)}"
        return {
            "reads": [{"method": "GET", "path": path, "params": {"$select": "requiredResourceAccess"}}],
            "method": "PATCH",
            "path": path,
            "body": {
                "requiredResourceAccess": [
                    "kept as returned: every existing entry",
                    {
                        "resourceAppId": self.resource_app_id,
                        "resourceAccess": [{"id": self.app_role_id, "type": "Role"}],
                    },
                ]
            },
        }


@dataclass(frozen=True, kw_only=True)
class GrantAppRole(Action):
    """Grant an application permission: the appRoleAssignment that admin consent creates."""

    principal_id: str | Ref
    resource_id: str
    app_role_id: str
    app_role_name: str
    permission: ClassVar[str] = PERMISSION_GRANT_APP_ROLE

    def describe(self) -> dict[str, Any]:
        return {
            "method": "POST",
            "path": f"/servicePrincipals/{shown(self.principal_id)}/appRoleAssignments",
            "body": {
                "principalId": shown(self.principal_id),
                "resourceId": self.resource_id,
                "appRoleId": self.app_role_id,
            },
        }


@dataclass(frozen=True, kw_only=True)
class AssignDirectoryRole(Action):
    """Assign a directory role to the service principal, active and at tenant scope."""

    principal_id: str | Ref
    role_definition_id: str
    role_name: str
    permission: ClassVar[str] = PERMISSION_ASSIGN_DIRECTORY_ROLE

    def describe(self) -> dict[str, Any]:
        return {
            "method": "POST",
            "path": "/roleManagement/directory/roleAssignments",
            "body": {
                "@odata.type": "#microsoft.graph.unifiedRoleAssignment",
                "roleDefinitionId": self.role_definition_id,
                "principalId": shown(self.principal_id),
                "directoryScopeId": "/",
            },
        }


@dataclass(frozen=True, kw_only=True)
class RemoveKeyCredentials(Action):
    """Remove named keyCredentials, keeping every other key (GET them, PATCH the rest back)."""

    app_object_id: str
    key_ids: tuple[str, ...]
    key_descriptions: tuple[str, ...] = ()
    requires_verified: tuple[str, ...] = ()  # actions whose effect must be proven first (rotation)
    permission: ClassVar[str] = PERMISSION_PATCH_APPLICATION

    def describe(self) -> dict[str, Any]:
        path = f"/applications/{self.app_object_id}"
        described: dict[str, Any] = {
            "reads": [{"method": "GET", "path": path, "params": {"$select": "keyCredentials"}}],
            "method": "PATCH",
            "path": path,
            "body": {"keyCredentials": "every key as returned, except: " + "; ".join(self.key_descriptions)},
        }
        if self.requires_verified:
            described["only_after_verified"] = list(self.requires_verified)
        return described


@dataclass(frozen=True, kw_only=True)
class ManualStep(Action):
    """A step cbacheck never takes itself (secrets, extra permissions, roles, audience, licensing)."""

    explanation: str
    portal: str = ""
    setting: str = ""  # a setting to change afterwards, e.g. app_id
    value: str | Ref = ""  # its corrected value
    permission: ClassVar[str] = PERMISSION_MANUAL

    @property
    def automated(self) -> bool:
        return False

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"method": "MANUAL", "step": self.explanation}
        if self.portal:
            described["portal"] = self.portal
        if self.setting:
            described["set"] = {self.setting: shown(self.value)}
        return described


ALL_ACTION_KINDS: Final = (
    CreateCertificate,
    CreateApplication,
    CreateServicePrincipal,
    EnableServicePrincipal,
    AddKeyCredential,
    AddRequiredResourceAccess,
    GrantAppRole,
    AssignDirectoryRole,
    RemoveKeyCredentials,
    ManualStep,
)


# --- planning context -------------------------------------------------------------------------------


def _fact(value: Any) -> Any:
    return None if isinstance(value, Unavailable) else value


def key_summary(key: KeyCredential) -> str:
    end = key.end.strftime("%Y-%m-%d") if key.end else "no end date"
    thumb = key.thumbprint or key.custom_key_identifier or "unknown thumbprint"
    name = key.display_name or "(no name)"
    return f"keyId {key.key_id} ({name}, SHA-1 {thumb}, ends {end})"


@dataclass(frozen=True)
class PlanContext:
    """What every planner sees: settings, facts and the fixes in play (after implications)."""

    settings: Settings
    tenant: TenantFacts | None
    cert: CertFacts | None
    failed: frozenset[str]
    fixes: frozenset[str]

    @property
    def now(self) -> datetime:
        if self.tenant is not None:
            return self.tenant.collected_at
        if self.cert is not None:
            return self.cert.read_at
        # No facts at all (an unreadable certificate, no tenant): the clock only names the new files.
        return datetime.now(UTC)

    @property
    def app(self) -> AppRegistration | None:
        return _fact(self.tenant.app) if self.tenant is not None else None

    @property
    def app_sp(self) -> ServicePrincipal | None:
        return _fact(self.tenant.app_sp) if self.tenant is not None else None

    def unavailable(self, name: str) -> Unavailable | None:
        """The reason a tenant fact could not be collected (None when it was)."""
        if self.tenant is None:
            # No tenant configured: tenant changes are simply not planned (the tenant links were skipped).
            return None
        value = getattr(self.tenant, name)
        return value if isinstance(value, Unavailable) else None

    def mends(self, fix: str) -> tuple[str, ...]:
        """The failed requirements this fix mends; all of its requirements when it is implied."""
        own = tuple(sorted((r.id for r in catalogue.CATALOGUE.values() if r.fix == fix), key=catalogue.chain_order))
        failed = tuple(req for req in own if req in self.failed)
        return failed or own

    def app_handle(self) -> tuple[str | Ref, str | Ref, tuple[str, ...]] | None:
        """(object id, appId, depends_on) of the app: concrete, created by create-app, or None."""
        if "create_app" in self.fixes and self.app is None:
            return Ref("create-app", "id"), Ref("create-app", "appId"), ("create-app",)
        app = self.app
        if app is None:
            return None
        return app.object_id, app.app_id, ()

    def sp_handle(self) -> tuple[str | Ref, tuple[str, ...]] | None:
        """(object id, depends_on) of the app's service principal."""
        sp = self.app_sp
        if sp is not None and not ("create_app" in self.fixes and self.app is None):
            return sp.object_id, ()
        if "create_service_principal" in self.fixes or "create_app" in self.fixes:
            return Ref("create-service-principal", "id"), ("create-service-principal",)
        return None

    def new_certificate_planned(self) -> bool:
        return bool(self.fixes & {"new_certificate", "rotate_certificate"})


def needed_fixes(failed: Iterable[str], tenant: TenantFacts | None = None) -> dict[str, tuple[str, ...]]:
    """Fix name -> failed requirement IDs it mends, including fixes implied by broken upstream objects."""
    fixes: dict[str, list[str]] = {}
    for req_id in sorted(failed, key=catalogue.chain_order):
        requirement = catalogue.requirement(req_id)
        if requirement is not None:
            fixes.setdefault(requirement.fix, []).append(req_id)
    queue = list(fixes)
    while queue:
        name = queue.pop(0)
        implied = list(IMPLIED_FIXES.get(name, ()))
        if name == "create_service_principal" and tenant is not None and _fact(tenant.app_sp) is None:
            implied.extend(IMPLIED_BY_MISSING_SERVICE_PRINCIPAL)
        for other in implied:
            if other not in fixes:
                fixes[other] = []
                queue.append(other)
    return {name: tuple(ids) for name, ids in fixes.items()}


# --- planners ----------------------------------------------------------------------------------------

Planner = Callable[[PlanContext], list[Action]]
PLANNERS: dict[str, Planner] = {}


def planner(name: str) -> Callable[[Planner], Planner]:
    """Register a planner under a fix name from catalogue.FIXES."""
    if name not in catalogue.FIXES:
        raise ValueError(f"unknown fix {name!r}; known: {', '.join(catalogue.FIXES)}")

    def register(function: Planner) -> Planner:
        PLANNERS[name] = function
        return function

    return register


def _cannot_plan(ctx: PlanContext, fix: str, missing: Unavailable) -> ManualStep:
    return ManualStep(
        id=f"cannot-plan-{fix.replace('_', '-')}",
        mends=ctx.mends(fix),
        reason=f"{missing}; cbacheck plans this fix only from facts it could read",
        explanation="Give the auditor the permission named above and run again, or make the change by hand.",
        portal=catalogue.PORTAL_APP,
    )


def _create_certificate(ctx: PlanContext, fix: str, reason: str) -> CreateCertificate:
    subject = ctx.cert.subject if ctx.cert is not None and ctx.cert.subject.upper().startswith("CN=") else None
    base = ctx.settings.new_cert_dir or DEFAULT_CERT_DIR
    return CreateCertificate(
        id="create-certificate",
        mends=ctx.mends(fix),
        reason=reason,
        subject=subject or DEFAULT_CERT_SUBJECT,
        # A dated folder, so a rotation never collides with the files of the certificate it replaces.
        out_dir=base / ctx.now.strftime("%Y%m%dT%H%M%SZ"),
        days=max(1, min(ctx.settings.max_lifetime_days, 365)),
        encrypt_key=bool(ctx.settings.cert_password),
    )


def _switch_to_new_certificate(ctx: PlanContext, fix: str) -> ManualStep:
    return ManualStep(
        id="use-new-certificate",
        mends=ctx.mends(fix),
        reason="the automation still signs in with the old certificate",
        explanation="Point the automation (and cbacheck's cert setting) at the new certificate's .pem, "
        "or import its PFX where the scripts run.",
        setting="cert",
        value=Ref("create-certificate", "pem_path"),
        depends_on=("create-certificate",),
    )


@planner("new_certificate")
def plan_new_certificate(ctx: PlanContext) -> list[Action]:
    """A new local certificate when the configured one cannot be used (unreadable, no key, weak)."""
    failed = ", ".join(req for req in ctx.mends("new_certificate"))
    return [
        _create_certificate(ctx, "new_certificate", f"the local certificate cannot be used ({failed})"),
        _switch_to_new_certificate(ctx, "new_certificate"),
    ]


@planner("rotate_certificate")
def plan_rotate_certificate(ctx: PlanContext) -> list[Action]:
    """New certificate uploaded beside the old one; the old key goes only after a proven rotation, on request."""
    mends = ctx.mends("rotate_certificate")
    actions: list[Action] = [
        _create_certificate(ctx, "rotate_certificate", f"rotation: {', '.join(mends)} failed"),
        _switch_to_new_certificate(ctx, "rotate_certificate"),
    ]
    handle = ctx.app_handle()
    if handle is None:
        missing = ctx.unavailable("app")
        if missing is not None:
            actions.append(_cannot_plan(ctx, "rotate_certificate", missing))
        return actions
    object_id, _, app_depends = handle
    app = ctx.app
    actions.append(
        AddKeyCredential(
            id="add-key-new-certificate",
            mends=mends,
            reason="upload the new certificate beside the existing keys so both work during the switch",
            app_object_id=object_id,
            certificate=Ref("create-certificate", "der_base64"),
            display_name=_subject_of(ctx),
            existing_keys=tuple(key_summary(k) for k in app.key_credentials) if app else (),
            depends_on=(*app_depends, "create-certificate"),
            # Both keys must be proven during the switch; an old certificate that is expired, or whose
            # uploaded key is, cannot sign in and is not asked to.
            prove_old_certificate=ctx.cert is not None
            and ctx.cert.not_before <= ctx.now < ctx.cert.not_after
            and any(
                key.start is not None and key.end is not None and key.start <= ctx.now < key.end
                for key in _keys_of_local_certificate(ctx)
            ),
        )
    )
    old_keys = _keys_of_local_certificate(ctx)
    if app is not None and old_keys:
        descriptions = tuple(key_summary(key) for key in old_keys)
        if ctx.settings.remove_old_key:
            actions.append(
                RemoveKeyCredentials(
                    id="remove-old-key",
                    mends=mends,
                    reason="remove_old_key is set: the old key goes once the new one is proven to get a token",
                    app_object_id=app.object_id,
                    key_ids=tuple(key.key_id for key in old_keys),
                    key_descriptions=descriptions,
                    requires_verified=("add-key-new-certificate",),
                    depends_on=("add-key-new-certificate",),
                )
            )
        else:
            actions.append(
                ManualStep(
                    id="remove-old-key",
                    mends=mends,
                    reason="the old key stays until you decide: nothing existing is removed without asking",
                    explanation="Once the automation runs with the new certificate, remove the old key "
                    f"({'; '.join(descriptions)}), or run again with --remove-old-key --fix apply.",
                    portal=catalogue.PORTAL_APP,
                )
            )
    return actions


def _subject_of(ctx: PlanContext) -> str:
    if ctx.cert is not None and ctx.cert.subject.upper().startswith("CN="):
        return ctx.cert.subject
    return DEFAULT_CERT_SUBJECT


def _keys_of_local_certificate(ctx: PlanContext) -> tuple[KeyCredential, ...]:
    app = ctx.app
    if app is None or ctx.cert is None:
        return ()
    return tuple(key for key in app.key_credentials if key.matches_thumbprint(ctx.cert.sha1_thumbprint))


@planner("create_app")
def plan_create_app(ctx: PlanContext) -> list[Action]:
    """Register the app when the configured app id does not exist; the new appId must then be configured."""
    if ctx.app is not None:
        return []
    missing = ctx.unavailable("app")
    if missing is not None:
        return [_cannot_plan(ctx, "create_app", missing)]
    return [
        CreateApplication(
            id="create-app",
            mends=ctx.mends("create_app"),
            reason=f"no application with appId {ctx.settings.app_id} exists in tenant {ctx.settings.tenant}",
            display_name=DEFAULT_APP_NAME,
        ),
        ManualStep(
            id="use-new-app-id",
            mends=ctx.mends("create_app"),
            reason="Entra assigns a new appId; the configured one does not exist",
            explanation="Set app_id (and the scripts' -AppId) to the new application's appId.",
            setting="app_id",
            value=Ref("create-app", "appId"),
            depends_on=("create-app",),
        ),
    ]


@planner("create_service_principal")
def plan_create_service_principal(ctx: PlanContext) -> list[Action]:
    """Create the service principal, or enable it when it is disabled."""
    sp = ctx.app_sp
    created_app = "create_app" in ctx.fixes and ctx.app is None
    if sp is not None and not created_app:
        if sp.account_enabled:
            return []
        return [
            EnableServicePrincipal(
                id="enable-service-principal",
                mends=ctx.mends("create_service_principal"),
                reason=f"service principal {sp.object_id} is disabled (sign-in fails with AADSTS7000112)",
                service_principal_id=sp.object_id,
            )
        ]
    missing = ctx.unavailable("app_sp")
    if missing is not None and not created_app:
        return [_cannot_plan(ctx, "create_service_principal", missing)]
    handle = ctx.app_handle()
    if handle is None:
        return []
    _, app_id, depends = handle
    return [
        CreateServicePrincipal(
            id="create-service-principal",
            mends=ctx.mends("create_service_principal"),
            reason="the app has no service principal in this tenant, so nothing can be granted to it",
            app_id=app_id,
            depends_on=depends,
        )
    ]


@planner("upload_certificate")
def plan_upload_certificate(ctx: PlanContext) -> list[Action]:
    """Upload the local (or new) certificate as a keyCredential, keeping every existing key."""
    if "rotate_certificate" in ctx.fixes:
        return []  # the rotation uploads the new certificate itself
    handle = ctx.app_handle()
    if handle is None:
        missing = ctx.unavailable("app")
        return [_cannot_plan(ctx, "upload_certificate", missing)] if missing is not None else []
    object_id, _, depends = handle
    app = ctx.app if not depends else None
    existing = tuple(key_summary(k) for k in app.key_credentials) if app is not None else ()
    if "new_certificate" in ctx.fixes:
        return [
            AddKeyCredential(
                id="add-key-new-certificate",
                mends=ctx.mends("upload_certificate"),
                reason="upload the new certificate beside the existing keys",
                app_object_id=object_id,
                certificate=Ref("create-certificate", "der_base64"),
                display_name=_subject_of(ctx),
                existing_keys=existing,
                depends_on=(*depends, "create-certificate"),
            )
        ]
    if ctx.cert is None:
        return [
            ManualStep(
                id="configure-certificate",
                mends=ctx.mends("upload_certificate"),
                reason="no local certificate is configured, so there is nothing to upload",
                explanation="Set cert to the certificate the automation uses, or create one with `cbacheck cert new`.",
            )
        ]
    if app is not None and _keys_of_local_certificate(ctx):
        return []
    return [
        AddKeyCredential(
            id=f"add-key-{ctx.cert.sha1_thumbprint[:8].lower()}",
            mends=ctx.mends("upload_certificate"),
            reason=f"certificate {ctx.cert.sha1_thumbprint} ({ctx.cert.subject}) is not among the app's keys",
            app_object_id=object_id,
            certificate=ctx.cert.der_base64,
            display_name=_subject_of(ctx),
            existing_keys=existing,
            depends_on=depends,
        )
    ]


def _has_exchange_permission(app: AppRegistration) -> bool:
    return any(
        resource.resource_app_id == wellknown.EXCHANGE_ONLINE_APP_ID
        and any(a.id == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID and a.type == "Role" for a in resource.access)
        for resource in app.required_resource_access
    )


@planner("add_exchange_permission")
def plan_add_exchange_permission(ctx: PlanContext) -> list[Action]:
    """Add Exchange.ManageAsApp (Role) to the app's requiredResourceAccess."""
    handle = ctx.app_handle()
    if handle is None:
        missing = ctx.unavailable("app")
        return [_cannot_plan(ctx, "add_exchange_permission", missing)] if missing is not None else []
    object_id, _, depends = handle
    app = ctx.app
    if not depends and app is not None and _has_exchange_permission(app):
        return []
    return [
        AddRequiredResourceAccess(
            id="add-exchange-permission",
            mends=ctx.mends("add_exchange_permission"),
            reason="the app does not request Exchange.ManageAsApp (configured permission)",
            app_object_id=object_id,
            depends_on=depends,
        )
    ]


@planner("grant_exchange_consent")
def plan_grant_exchange_consent(ctx: PlanContext) -> list[Action]:
    """Grant admin consent for Exchange.ManageAsApp: the appRoleAssignment on the app's SP."""
    if ctx.tenant is None:
        return []
    exchange_sp = ctx.tenant.exchange_sp
    if isinstance(exchange_sp, Unavailable):
        return [_cannot_plan(ctx, "grant_exchange_consent", exchange_sp)]
    if exchange_sp is None:
        return [
            ManualStep(
                id="exchange-licence",
                mends=("CBA-PERM-001", *ctx.mends("grant_exchange_consent")),
                reason="the Office 365 Exchange Online service principal is missing, so consent has nothing to name",
                explanation="Check the tenant's Exchange Online subscription in the Microsoft 365 admin center "
                "(licensing is never changed by cbacheck).",
                portal="https://admin.microsoft.com/#/subscriptions",
            )
        ]
    handle = ctx.sp_handle()
    if handle is None:
        missing = ctx.unavailable("app_sp")
        return [_cannot_plan(ctx, "grant_exchange_consent", missing)] if missing is not None else []
    principal, depends = handle
    if isinstance(principal, str):
        grants = ctx.tenant.app_role_grants
        if isinstance(grants, Unavailable):
            return [_cannot_plan(ctx, "grant_exchange_consent", grants)]
        if any(
            grant.resource_id == exchange_sp.object_id and grant.app_role_id == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
            for grant in grants
        ):
            return []
    return [
        GrantAppRole(
            id="grant-exchange-consent",
            mends=ctx.mends("grant_exchange_consent"),
            reason="no appRoleAssignment grants Exchange.ManageAsApp to the app's service principal",
            principal_id=principal,
            resource_id=exchange_sp.object_id,
            app_role_id=wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
            app_role_name=wellknown.EXCHANGE_MANAGE_AS_APP,
            depends_on=depends,
        )
    ]


def _holds_role(assignments: tuple[DirectoryRoleAssignment, ...], role: str) -> bool:
    return any(
        a.status == "active" and a.tenant_wide and role in (a.role_template_id.lower(), a.role_definition_id.lower())
        for a in assignments
    )


@planner("assign_directory_role")
def plan_assign_directory_role(ctx: PlanContext) -> list[Action]:
    """Assign settings.required_role, active and at tenant scope "/"."""
    if ctx.tenant is None:
        return []
    role = role_id(ctx.settings.required_role)
    if role is None:
        return []  # config.validate rejects an unknown required_role before any plan is made
    role_name = wellknown.DIRECTORY_ROLE_NAMES.get(role, role)
    handle = ctx.sp_handle()
    if handle is None:
        missing = ctx.unavailable("app_sp")
        return [_cannot_plan(ctx, "assign_directory_role", missing)] if missing is not None else []
    principal, depends = handle
    if isinstance(principal, str):
        assignments = ctx.tenant.role_assignments
        if isinstance(assignments, Unavailable):
            return [_cannot_plan(ctx, "assign_directory_role", assignments)]
        if _holds_role(assignments, role):
            return []
    return [
        AssignDirectoryRole(
            id=f"assign-role-{role[:8]}",
            mends=ctx.mends("assign_directory_role"),
            reason=f"the service principal holds no active tenant-wide {role_name} assignment",
            principal_id=principal,
            role_definition_id=role,
            role_name=role_name,
            depends_on=depends,
        )
    ]


@planner("remove_expired_keys")
def plan_remove_expired_keys(ctx: PlanContext) -> list[Action]:
    """Remove expired keyCredentials, only when remove_expired_keys is set."""
    app = ctx.app
    if app is None:
        return []
    expired = tuple(key for key in app.key_credentials if key.end is not None and key.end <= ctx.now)
    if not expired:
        return []
    descriptions = tuple(key_summary(key) for key in expired)
    if not ctx.settings.remove_expired_keys:
        return [
            ManualStep(
                id="remove-expired-keys",
                mends=ctx.mends("remove_expired_keys"),
                reason=f"{len(expired)} expired key(s) on the app; removing keys is opt-in",
                explanation=f"Remove {'; '.join(descriptions)} under Certificates & secrets, or run again with "
                "--remove-expired-keys --fix apply.",
                portal=catalogue.PORTAL_APP,
            )
        ]
    return [
        RemoveKeyCredentials(
            id="remove-expired-keys",
            mends=ctx.mends("remove_expired_keys"),
            reason=f"remove_expired_keys is set and {len(expired)} key(s) have expired",
            app_object_id=app.object_id,
            key_ids=tuple(key.key_id for key in expired),
            key_descriptions=descriptions,
        )
    ]


@planner("use_initial_domain")
def plan_use_initial_domain(ctx: PlanContext) -> list[Action]:
    """Show the corrected -Organization value (a setting of the scripts, not of the tenant)."""
    organization = ctx.tenant.organization if ctx.tenant is not None else None
    corrected = (
        organization.initial_domain if organization is not None and not isinstance(organization, Unavailable) else ""
    )
    return [
        ManualStep(
            id="use-initial-domain",
            mends=ctx.mends("use_initial_domain"),
            reason=f"organization = {ctx.settings.organization!r} is not the tenant's initial domain",
            explanation="Use the initial *.onmicrosoft.com domain for Connect-ExchangeOnline -Organization "
            "and for cbacheck's organization setting.",
            setting="organization" if corrected else "",
            value=corrected,
        )
    ]


@planner("manual")
def plan_manual(ctx: PlanContext) -> list[Action]:
    """One explained step per failed requirement cbacheck never changes itself."""
    steps: list[Action] = []
    for req_id in ctx.mends("manual"):
        if req_id not in ctx.failed:
            continue
        requirement = catalogue.CATALOGUE[req_id]
        steps.append(
            ManualStep(
                id=f"manual-{req_id.lower()}",
                mends=(req_id,),
                reason=f"{req_id} failed: {requirement.title.lower()} does not hold",
                explanation=requirement.remediation,
                portal=_portal_for(requirement.link, req_id),
            )
        )
    return steps


def _portal_for(link: int, req_id: str) -> str:
    if req_id.startswith("CBA-ROLE"):
        return catalogue.PORTAL_ROLES
    if req_id in ("CBA-PERM-004", "CBA-PERM-005"):
        return catalogue.PORTAL_ENTERPRISE_APPS
    if req_id == "CBA-PERM-001":
        return "https://admin.microsoft.com/#/subscriptions"
    if link == 1:
        return catalogue.DOC_CERT_CREDENTIALS
    return catalogue.PORTAL_APP


@planner("follows")
def plan_follows(ctx: PlanContext) -> list[Action]:
    """No action: these requirements are mended by the fixes of the links they follow from."""
    return []


# --- the plan ------------------------------------------------------------------------------------------


def plan(
    settings: Settings,
    tenant_facts: TenantFacts | None,
    cert_facts: CertFacts | None,
    failed: set[str] | frozenset[str],
) -> list[Action]:
    """The actions that mend the failed requirements, in dependency order, each once; pure.

    Empty when nothing failed, and when every effect is already present in the facts (so a plan made
    after a successful apply is empty).
    """
    if not failed:
        return []
    fixes = needed_fixes(failed, tenant_facts)
    ctx = PlanContext(settings, tenant_facts, cert_facts, frozenset(failed), frozenset(fixes))
    actions: list[Action] = []
    for name in PLANNER_ORDER:
        if name in fixes:
            actions.extend(PLANNERS[name](ctx))
    return order(merge_duplicates(actions))


def merge_duplicates(actions: Iterable[Action]) -> list[Action]:
    """Each action once: a second planner asking for the same action adds only what it mends."""
    merged: dict[str, Action] = {}
    for action in actions:
        first = merged.get(action.id)
        if first is None:
            merged[action.id] = action
            continue
        if type(first) is not type(action):
            raise AssertionError(f"two different actions share the id {action.id!r}")
        mends = tuple(dict.fromkeys((*first.mends, *action.mends)))
        depends = tuple(dict.fromkeys((*first.depends_on, *action.depends_on)))
        merged[action.id] = dataclasses.replace(first, mends=mends, depends_on=depends)
    return list(merged.values())


def order(actions: Iterable[Action]) -> list[Action]:
    """Dependency order (a stable topological sort: ties keep the planners' chain order)."""
    pending = list(actions)
    ids = {action.id for action in pending}
    done: set[str] = set()
    ordered: list[Action] = []
    while pending:
        for index, action in enumerate(pending):
            if all(dep in done or dep not in ids for dep in action.depends_on):
                ordered.append(action)
                done.add(action.id)
                del pending[index]
                break
        else:
            cycle = ", ".join(action.id for action in pending)
            raise FixError(f"the fix actions depend on each other in a cycle: {cycle}")
    return ordered


def failed_ids(requirements: Iterable[Mapping[str, Any]]) -> set[str]:
    """IDs that failed on their own account.

    Errors (could not verify) are never fixed blindly, and a failure that follows from an upstream
    one (an unuploaded key is not "valid now" either) is mended by the upstream fix, not its own.
    """
    return {str(req["id"]) for req in requirements if req.get("outcome") == "failed" and not req.get("follows_from")}


def plan_from_results(
    requirements: list[dict[str, Any]],
    settings: Settings,
    tenant_facts: TenantFacts | None,
    cert_facts: CertFacts | None,
) -> list[dict[str, Any]]:
    """The plan for the failed requirements of a results file, as plain dicts for the reports."""
    return [action.as_dict() for action in plan(settings, tenant_facts, cert_facts, failed_ids(requirements))]


def token_roles(token: TokenAttempt | Unavailable) -> tuple[str, ...]:
    """The `roles` claim of a token attempt (empty when there is no token)."""
    if isinstance(token, Unavailable) or not token.acquired:
        return ()
    roles = token.claims.get("roles") or ()
    return tuple(str(role) for role in roles) if isinstance(roles, list | tuple) else ()


def token_wids(token: TokenAttempt | Unavailable) -> tuple[str, ...]:
    """The `wids` claim (directory role template IDs) of a token attempt, lower case."""
    if isinstance(token, Unavailable) or not token.acquired:
        return ()
    wids = token.claims.get("wids") or ()
    return tuple(str(wid).lower() for wid in wids) if isinstance(wids, list | tuple) else ()


__all__ = [
    "Action",
    "AddKeyCredential",
    "AddRequiredResourceAccess",
    "AssignDirectoryRole",
    "CreateApplication",
    "CreateCertificate",
    "CreateServicePrincipal",
    "EnableServicePrincipal",
    "GrantAppRole",
    "ManualStep",
    "Ref",
    "RemoveKeyCredentials",
    "failed_ids",
    "plan",
    "plan_from_results",
    "redact",
    "resolve_ref",
]
