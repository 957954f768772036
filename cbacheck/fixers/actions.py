"""Fix actions as data: each action is the request it will make, with secrets elided in describe()."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from cbacheck import wellknown
from cbacheck.config import env_name
from cbacheck.errors import FixError

# Least-privileged Graph application permissions per write, as each API page lists them (e.g.
# https://learn.microsoft.com/graph/api/application-update). PATCH on an application needs only
# Application.ReadWrite.OwnedBy when the admin app owns the target app.
PERMISSION_PATCH_APPLICATION: Final = (
    "Application.ReadWrite.OwnedBy (when the admin app owns it) or Application.ReadWrite.All"
)
PERMISSION_CREATE_APPLICATION: Final = "AppRegistration.Create"
PERMISSION_CREATE_SERVICE_PRINCIPAL: Final = "Application.ReadWrite.OwnedBy"
PERMISSION_PATCH_SERVICE_PRINCIPAL: Final = (
    "Application.ReadWrite.OwnedBy (when the admin app owns it) or Application.ReadWrite.All"
)
# Both are the documented least privilege for POST .../appRoleAssignments
# (https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignments).
PERMISSION_GRANT_APP_ROLE: Final = "AppRoleAssignment.ReadWrite.All and Application.Read.All"
PERMISSION_ASSIGN_DIRECTORY_ROLE: Final = "RoleManagement.ReadWrite.Directory"
# Exchange RBAC writes: Exchange.ManageAsApp and the Role Management role (Organization Management), or the Entra
# role Exchange Administrator (https://learn.microsoft.com/powershell/exchange/find-exchange-cmdlet-permissions).
PERMISSION_EXCHANGE_RBAC: Final = (
    "Exchange.ManageAsApp and Role Management in Exchange (Organization Management, or Exchange Administrator)"
)
EXCHANGE_INVOKE_PATH: Final = "/adminapi/beta/{tenant}/InvokeCommand"
PERMISSION_LOCAL: Final = "none (local files only)"
PERMISSION_MANUAL: Final = "none (done by a person)"


KEY_TYPE: Final = "AsymmetricX509Cert"
KEY_USAGE: Final = "Verify"

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

    def new_key(self, der_base64: str, start: str, end: str) -> dict[str, Any]:
        """The keyCredential to upload, with the window the handler computed from the certificate."""
        return {
            "type": KEY_TYPE,
            "usage": KEY_USAGE,
            "key": der_base64,
            "displayName": self.display_name,
            "startDateTime": start,
            "endDateTime": end,
        }

    def describe(self) -> dict[str, Any]:
        if isinstance(self.certificate, Ref):
            key = f"<base64 DER of the certificate {self.certificate.action_id} creates>"
        else:
            key = describe_key_bytes(self.certificate)
        kept = [f"kept as returned: {text}" for text in self.existing_keys]
        new = {
            "type": KEY_TYPE,
            "usage": KEY_USAGE,
            "key": key,
            "displayName": self.display_name,
            "startDateTime": "the certificate's notBefore",
            "endDateTime": "the certificate's notAfter, at most one year after the start (Graph's limit)",
        }
        path = f"/applications/{shown(self.app_object_id)}"
        return {
            "reads": [{"method": "GET", "path": path, "params": {"$select": "id,appId,keyCredentials"}}],
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
            "reads": [{"method": "GET", "path": path, "params": {"$select": "id,appId,requiredResourceAccess"}}],
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
    # The app's token cbacheck collects carries this role: its Exchange Online token, or with token_profile the
    # token it asks for that profile's resource (Microsoft Exchange Online Protection's for security-compliance).
    token_carries_role: bool = True
    token_profile: str = ""
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
    keeps_key_of: str = ""  # the AddKeyCredential whose new key the read must hold before the PATCH
    permission: ClassVar[str] = PERMISSION_PATCH_APPLICATION

    def describe(self) -> dict[str, Any]:
        path = f"/applications/{self.app_object_id}"
        described: dict[str, Any] = {
            "reads": [{"method": "GET", "path": path, "params": {"$select": "id,appId,keyCredentials"}}],
            "method": "PATCH",
            "path": path,
            "body": {"keyCredentials": "every key as returned, except: " + "; ".join(self.key_descriptions)},
        }
        if self.requires_verified:
            described["only_after_verified"] = list(self.requires_verified)
        if self.keeps_key_of:
            described["only_if_read_holds"] = f"the key {self.keeps_key_of} added in this run"
        return described


def exchange_command(cmdlet: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """An Exchange admin API write as the plan shows it."""
    return {
        "method": "POST",
        "path": EXCHANGE_INVOKE_PATH,
        "body": {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}},
    }


@dataclass(frozen=True, kw_only=True)
class CreateExchangeServicePrincipal(Action):
    """New-ServicePrincipal: the pointer Exchange RBAC is given to, with the SERVICE PRINCIPAL's object id.

    -ObjectId is "the unique ObjectId GUID value for the service principal", the Object ID under Enterprise
    applications, not the app registration's
    (https://learn.microsoft.com/powershell/module/exchangepowershell/new-serviceprincipal).
    """

    app_id: str | Ref
    object_id: str | Ref
    display_name: str
    permission: ClassVar[str] = PERMISSION_EXCHANGE_RBAC

    def describe(self) -> dict[str, Any]:
        parameters = {"AppId": shown(self.app_id), "ObjectId": shown(self.object_id), "DisplayName": self.display_name}
        return {"reads": [{"cmdlet": "Get-ServicePrincipal"}], **exchange_command("New-ServicePrincipal", parameters)}


@dataclass(frozen=True, kw_only=True)
class AddRoleGroupMember(Action):
    """Add-RoleGroupMember: the app's service principal pointer joins an Exchange role group."""

    group: str
    member: str | Ref  # the pointer's ObjectId (the service principal's object id)
    roles: tuple[str, ...] = ()  # the group's roles, for the plan's reader
    permission: ClassVar[str] = PERMISSION_EXCHANGE_RBAC

    def describe(self) -> dict[str, Any]:
        parameters = {"Identity": self.group, "Member": shown(self.member)}
        described = exchange_command("Add-RoleGroupMember", parameters)
        return {"reads": [{"cmdlet": "Get-RoleGroup", "Identity": self.group}], **described, "roles": list(self.roles)}


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
    CreateExchangeServicePrincipal,
    AddRoleGroupMember,
    ManualStep,
)
