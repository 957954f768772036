"""Tenant state of the sandbox: Graph v1.0 JSON, validation, built-in objects and lookups."""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from cbacheck import wellknown

JsonObject = dict[str, Any]

# Top-level keys of a state document, each a list of Graph (or Exchange) objects.
COLLECTIONS: Final = (
    "organization",
    "domains",
    "applications",
    "servicePrincipals",
    "appRoleAssignments",
    "roleAssignments",
    "roleDefinitions",
    "roleEligibilitySchedules",
    "mailboxes",
)
# Flags that switch off the objects every real tenant has (see _builtin_*).
BUILTIN_FLAGS: Final = ("exchangeServicePrincipal", "graphServicePrincipal", "roleDefinitions")
KNOWN_TOP_LEVEL: Final = frozenset(COLLECTIONS) | {"builtins", "@odata.context"}

# The Microsoft services tenant that owns first-party applications such as Exchange and Graph.
MICROSOFT_SERVICES_TENANT: Final = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
DEFAULT_ACCESS_ROLE: Final = "00000000-0000-0000-0000-000000000000"
_ID_NAMESPACE: Final = uuid.UUID("0b6f1b1e-6a52-4c59-9d2e-4bde3a1c7f10")
NEXT_STEP: Final = "Fix that element, or write a fresh file with 'cbacheck sandbox --dump FILE'."


class SandboxError(Exception):
    """The sandbox cannot start or run as asked."""


class SandboxStateError(SandboxError):
    """A state file or scenario is not valid JSON or not Graph-shaped; the message names it."""


# --- time and identifiers -----------------------------------------------------------------------


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, whole seconds (Graph keeps no fractions)."""
    return datetime.now(UTC).replace(microsecond=0)


def graph_time(value: datetime) -> str:
    """A datetime as Graph writes DateTimeOffset values: ``2025-01-31T12:00:00Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """Parse an ISO 8601 time as Graph sends it; naive values are taken as UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def stable_guid(*parts: str) -> str:
    """A GUID derived from the given parts, the same on every run."""
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


def new_guid() -> str:
    """A fresh random GUID."""
    return str(uuid.uuid4())


def is_guid(value: object) -> bool:
    """True when value is a string holding a GUID."""
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def assignment_id() -> str:
    """An id shaped like the ids Graph gives app role and directory role assignments."""
    raw = uuid.uuid4().bytes + uuid.uuid4().bytes
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")[:43]


# --- certificates inside keyCredentials ---------------------------------------------------------


@dataclass(frozen=True)
class CertificateFacts:
    """What the sandbox needs from the certificate in one keyCredential."""

    certificate: x509.Certificate
    der: bytes
    sha1: bytes
    sha256: bytes
    key_size: int
    is_rsa: bool

    @property
    def sha1_hex(self) -> str:
        return self.sha1.hex().upper()


@functools.lru_cache(maxsize=4096)
def certificate_facts(key_b64: str) -> CertificateFacts:
    """Decode a keyCredential ``key`` (base64 DER); raises ValueError when it is not a certificate."""
    try:
        der = base64.b64decode("".join(key_b64.split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not valid base64 ({exc})") from exc
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ValueError(f"not the DER bytes of an X.509 certificate ({exc})") from exc
    public_key = cert.public_key()
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    key_size = public_key.key_size if isinstance(public_key, rsa.RSAPublicKey) else 0
    return CertificateFacts(
        certificate=cert,
        der=der,
        sha1=hashlib.sha1(der).digest(),  # noqa: S324 - the x5t thumbprint is SHA-1 by definition
        sha256=hashlib.sha256(der).digest(),
        key_size=key_size,
        is_rsa=is_rsa,
    )


def key_credential_for(cert_der: bytes, *, key_id: str, **overrides: Any) -> JsonObject:
    """A complete keyCredential for a DER certificate, as Graph stores an uploaded one."""
    key = base64.b64encode(cert_der).decode("ascii")
    return _key_credential(certificate_facts(key), key, key_id, overrides)


def _key_credential(facts: CertificateFacts, key: str, key_id: str, overrides: Mapping[str, Any]) -> JsonObject:
    cert = facts.certificate
    cred: JsonObject = {
        "customKeyIdentifier": base64.b64encode(facts.sha1).decode(),
        "displayName": cert.subject.rfc4514_string(),
        "endDateTime": graph_time(cert.not_valid_after_utc),
        "key": key,
        "keyId": key_id,
        "startDateTime": graph_time(cert.not_valid_before_utc),
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
    }
    cred.update(overrides)
    return cred


# --- object templates: the full Graph shape, filled in when an object is rendered ---------------

TEMPLATES: Final[dict[str, JsonObject]] = {
    "applications": {
        "id": None,
        "deletedDateTime": None,
        "appId": None,
        "applicationTemplateId": None,
        "disabledByMicrosoftStatus": None,
        "createdDateTime": None,
        "displayName": None,
        "description": None,
        "groupMembershipClaims": None,
        "identifierUris": [],
        "isDeviceOnlyAuthSupported": None,
        "isFallbackPublicClient": None,
        "notes": None,
        "publisherDomain": None,
        "serviceManagementReference": None,
        "signInAudience": "AzureADMyOrg",
        "tags": [],
        "tokenEncryptionKeyId": None,
        "defaultRedirectUri": None,
        "optionalClaims": None,
        "addIns": [],
        "api": {
            "acceptMappedClaims": None,
            "knownClientApplications": [],
            "requestedAccessTokenVersion": None,
            "oauth2PermissionScopes": [],
            "preAuthorizedApplications": [],
        },
        "appRoles": [],
        "info": {
            "logoUrl": None,
            "marketingUrl": None,
            "privacyStatementUrl": None,
            "supportUrl": None,
            "termsOfServiceUrl": None,
        },
        "keyCredentials": [],
        "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
        "passwordCredentials": [],
        "publicClient": {"redirectUris": []},
        "requiredResourceAccess": [],
        "verifiedPublisher": {
            "displayName": None,
            "verifiedPublisherId": None,
            "addedDateTime": None,
        },
        "web": {
            "homePageUrl": None,
            "logoutUrl": None,
            "redirectUris": [],
            "implicitGrantSettings": {
                "enableAccessTokenIssuance": False,
                "enableIdTokenIssuance": False,
            },
        },
        "spa": {"redirectUris": []},
    },
    "servicePrincipals": {
        "id": None,
        "deletedDateTime": None,
        "accountEnabled": True,
        "alternativeNames": [],
        "appDisplayName": None,
        "appDescription": None,
        "appId": None,
        "applicationTemplateId": None,
        "appOwnerOrganizationId": None,
        "appRoleAssignmentRequired": False,
        "description": None,
        "disabledByMicrosoftStatus": None,
        "displayName": None,
        "homepage": None,
        "loginUrl": None,
        "logoutUrl": None,
        "notes": None,
        "notificationEmailAddresses": [],
        "preferredSingleSignOnMode": None,
        "preferredTokenSigningKeyThumbprint": None,
        "replyUrls": [],
        "servicePrincipalNames": [],
        "servicePrincipalType": "Application",
        "signInAudience": "AzureADMyOrg",
        "tags": [],
        "tokenEncryptionKeyId": None,
        "addIns": [],
        "appRoles": [],
        "info": {
            "logoUrl": None,
            "marketingUrl": None,
            "privacyStatementUrl": None,
            "supportUrl": None,
            "termsOfServiceUrl": None,
        },
        "keyCredentials": [],
        "oauth2PermissionScopes": [],
        "passwordCredentials": [],
        "resourceSpecificApplicationPermissions": [],
        "verifiedPublisher": {
            "displayName": None,
            "verifiedPublisherId": None,
            "addedDateTime": None,
        },
    },
    "appRoleAssignments": {
        "id": None,
        "deletedDateTime": None,
        "appRoleId": None,
        "createdDateTime": None,
        "principalDisplayName": None,
        "principalId": None,
        "principalType": "ServicePrincipal",
        "resourceDisplayName": None,
        "resourceId": None,
    },
    "roleAssignments": {
        "id": None,
        "principalId": None,
        "resourceScope": None,
        "directoryScopeId": "/",
        "appScopeId": None,
        "roleDefinitionId": None,
    },
    "roleDefinitions": {
        "id": None,
        "description": None,
        "displayName": None,
        "isBuiltIn": True,
        "isEnabled": True,
        "resourceScopes": ["/"],
        "templateId": None,
        "version": "1",
        "rolePermissions": [],
    },
    "roleEligibilitySchedules": {
        "id": None,
        "principalId": None,
        "roleDefinitionId": None,
        "directoryScopeId": "/",
        "appScopeId": None,
        "createdUsing": None,
        "createdDateTime": None,
        "modifiedDateTime": None,
        "status": "Provisioned",
        "memberType": "Direct",
        "scheduleInfo": {
            "startDateTime": None,
            "recurrence": None,
            "expiration": {"type": "noExpiration", "endDateTime": None, "duration": None},
        },
    },
    "organization": {
        "id": None,
        "deletedDateTime": None,
        "businessPhones": [],
        "city": None,
        "country": None,
        "countryLetterCode": "US",
        "createdDateTime": None,
        "defaultUsageLocation": None,
        "displayName": None,
        "marketingNotificationEmails": [],
        "onPremisesLastSyncDateTime": None,
        "onPremisesSyncEnabled": None,
        "postalCode": None,
        "preferredLanguage": "en",
        "securityComplianceNotificationMails": [],
        "securityComplianceNotificationPhones": [],
        "state": None,
        "street": None,
        "technicalNotificationMails": [],
        "tenantType": "AAD",
        "directorySizeQuota": {"used": 0, "total": 300000},
        "assignedPlans": [],
        "privacyProfile": None,
        "provisionedPlans": [],
        "verifiedDomains": [],
    },
    "domains": {
        "authenticationType": "Managed",
        "availabilityStatus": None,
        "id": None,
        "isAdminManaged": True,
        "isDefault": False,
        "isInitial": False,
        "isRoot": True,
        "isVerified": True,
        "supportedServices": ["Email", "OfficeCommunicationsOnline"],
        "passwordValidityPeriodInDays": 2147483647,
        "passwordNotificationWindowInDays": 14,
        "state": None,
    },
    "mailboxes": {},
}

ENTITY_TYPES: Final = {
    "applications": "microsoft.graph.application",
    "servicePrincipals": "microsoft.graph.servicePrincipal",
    "appRoleAssignments": "microsoft.graph.appRoleAssignment",
    "roleAssignments": "microsoft.graph.unifiedRoleAssignment",
    "roleDefinitions": "microsoft.graph.unifiedRoleDefinition",
    "roleEligibilitySchedules": "microsoft.graph.unifiedRoleEligibilitySchedule",
    "organization": "microsoft.graph.organization",
    "domains": "microsoft.graph.domain",
}


def render(collection: str, obj: Mapping[str, Any]) -> JsonObject:
    """The object in its full Graph shape: template defaults, then the stored properties."""
    out = copy.deepcopy(TEMPLATES.get(collection, {}))
    out.update(copy.deepcopy(dict(obj)))
    if collection == "roleAssignments" and out.get("resourceScope") is None:
        out["resourceScope"] = out.get("directoryScopeId")
    for cred in out.get("passwordCredentials") or []:
        if isinstance(cred, dict):
            cred["secretText"] = None
    return out


# --- built-in objects ----------------------------------------------------------------------------


def _app_role(role_id: str, value: str, display: str, description: str) -> JsonObject:
    return {
        "allowedMemberTypes": ["Application"],
        "description": description,
        "displayName": display,
        "id": role_id,
        "isEnabled": True,
        "origin": "Application",
        "value": value,
    }


def builtin_exchange_sp(tenant_id: str) -> JsonObject:
    """The Office 365 Exchange Online service principal with its application roles."""
    app_id = wellknown.EXCHANGE_ONLINE_APP_ID
    return {
        "id": stable_guid(tenant_id, app_id),
        "accountEnabled": True,
        "appDisplayName": wellknown.EXCHANGE_ONLINE_DISPLAY_NAME,
        "appId": app_id,
        "appOwnerOrganizationId": MICROSOFT_SERVICES_TENANT,
        "displayName": wellknown.EXCHANGE_ONLINE_DISPLAY_NAME,
        "servicePrincipalNames": [
            "https://outlook.office365.com/",
            "https://outlook.office365.com",
            "https://outlook.office.com",
            "https://ps.outlook.com",
            f"{app_id}/outlook.office365.com",
            f"{app_id}/outlook.office.com",
            app_id,
        ],
        "signInAudience": "AzureADMultipleOrgs",
        "keyCredentials": [],
        "appRoles": [
            _app_role(
                wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
                wellknown.EXCHANGE_MANAGE_AS_APP,
                "Manage Exchange As Application",
                "Allows the app to manage the organization's Exchange environment without any "
                "user interaction. This includes mailboxes, groups, and other configuration "
                "objects. To enable management actions, an admin must assign the appropriate "
                "roles directly to the app.",
            ),
            _app_role(
                wellknown.FULL_ACCESS_AS_APP_ROLE_ID,
                wellknown.FULL_ACCESS_AS_APP,
                "Use Exchange Web Services with full access to all mailboxes",
                "Allows the app to have full access via Exchange Web Services to all mailboxes "
                "without a signed-in user.",
            ),
        ],
    }


def builtin_graph_sp(tenant_id: str) -> JsonObject:
    """The Microsoft Graph service principal with the application permissions cbacheck knows."""
    app_id = wellknown.MICROSOFT_GRAPH_APP_ID
    roles = [
        _app_role(role_id, name, name, f"Application permission {name}.")
        for name, role_id in wellknown.GRAPH_PERMISSION_IDS.items()
    ]
    return {
        "id": stable_guid(tenant_id, app_id),
        "accountEnabled": True,
        "appDisplayName": wellknown.MICROSOFT_GRAPH_DISPLAY_NAME,
        "appId": app_id,
        "appOwnerOrganizationId": MICROSOFT_SERVICES_TENANT,
        "displayName": wellknown.MICROSOFT_GRAPH_DISPLAY_NAME,
        "servicePrincipalNames": [
            "https://graph.microsoft.com/",
            "https://graph.microsoft.com",
            "https://canary.graph.microsoft.com",
            "https://ags.windows.net",
            f"{app_id}/ags.windows.net",
            app_id,
        ],
        "signInAudience": "AzureADMultipleOrgs",
        "keyCredentials": [],
        "appRoles": roles,
    }


_ROLE_ACTIONS: Final[dict[str, list[str]]] = {
    wellknown.EXCHANGE_ADMINISTRATOR: ["microsoft.office365.exchange/allEntities/basic/allTasks"],
    wellknown.GLOBAL_ADMINISTRATOR: ["microsoft.directory/allEntities/allProperties/allTasks"],
}


def builtin_role_definitions() -> list[JsonObject]:
    """The built-in directory roles cbacheck knows; for built-ins id equals templateId."""
    return [
        {
            "id": template_id,
            "description": f"Built-in directory role {name}.",
            "displayName": name,
            "isBuiltIn": True,
            "isEnabled": True,
            "resourceScopes": ["/"],
            "templateId": template_id,
            "version": "1",
            "rolePermissions": [
                {
                    "allowedResourceActions": _ROLE_ACTIONS.get(template_id, []),
                    "condition": None,
                }
            ],
        }
        for template_id, name in wellknown.DIRECTORY_ROLE_NAMES.items()
    ]


# --- validation ----------------------------------------------------------------------------------


class _Check:
    """Validation helpers that raise SandboxStateError naming the source and the element path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> SandboxStateError:
        return SandboxStateError(f"{self.source}: {path}: {problem}. {NEXT_STEP}")

    def obj(self, value: object, path: str) -> JsonObject:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a JSON object, found {_kind(value)}")
        return value

    def items(self, value: object, path: str) -> list[JsonObject]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a JSON array of objects, found {_kind(value)}")
        return [self.obj(item, f"{path}[{i}]") for i, item in enumerate(value)]

    def string(self, obj: JsonObject, key: str, path: str, *, required: bool = True) -> str | None:
        value = obj.get(key)
        if value is None:
            if required:
                raise self.fail(f"{path}.{key}", "missing (a string is required)")
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(f"{path}.{key}", f"expected a non-empty string, found {_kind(value)}")
        return value

    def guid(self, obj: JsonObject, key: str, path: str, *, required: bool = True) -> str | None:
        value = self.string(obj, key, path, required=required)
        if value is not None and not is_guid(value):
            raise self.fail(f"{path}.{key}", f"{value!r} is not a GUID")
        return value

    def boolean(self, obj: JsonObject, key: str, path: str) -> None:
        if key in obj and obj[key] is not None and not isinstance(obj[key], bool):
            raise self.fail(f"{path}.{key}", f"expected true or false, found {_kind(obj[key])}")

    def time(self, obj: JsonObject, key: str, path: str) -> datetime | None:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{path}.{key}", f"expected an ISO 8601 time, found {_kind(value)}")
        try:
            return parse_time(value)
        except ValueError:
            raise self.fail(f"{path}.{key}", f"{value!r} is not an ISO 8601 time") from None

    def unique(self, objs: Iterable[JsonObject], key: str, path: str) -> None:
        seen: set[str] = set()
        for i, obj in enumerate(objs):
            value = str(obj.get(key, "")).lower()
            if value in seen:
                raise self.fail(f"{path}[{i}].{key}", f"duplicate value {obj.get(key)!r}")
            seen.add(value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def validate_key_credential(check: _Check, cred: JsonObject, path: str, owner: str) -> JsonObject:
    """Check one keyCredential and fill in what Graph computes (thumbprint, window, keyId)."""
    kind = cred.get("type", "AsymmetricX509Cert")
    if kind not in ("AsymmetricX509Cert", "X509CertAndPassword", "Symmetric"):
        raise check.fail(f"{path}.type", f"{kind!r} is not one of AsymmetricX509Cert, Symmetric")
    usage = cred.get("usage", "Verify")
    if usage not in ("Verify", "Sign"):
        raise check.fail(f"{path}.usage", f"{usage!r} is not one of Sign, Verify")
    key = check.string(cred, "key", path)
    assert key is not None
    if kind == "Symmetric":
        return {"type": kind, "usage": usage, **cred}
    try:
        facts = certificate_facts(key)
    except ValueError as exc:
        raise check.fail(f"{path}.key", f"{exc}; expected base64 of a DER certificate") from None
    key_id = check.guid(cred, "keyId", path, required=False) or stable_guid(owner, facts.sha1_hex)
    check.time(cred, "startDateTime", path)
    check.time(cred, "endDateTime", path)
    full = _key_credential(facts, key, key_id, {k: v for k, v in cred.items() if v is not None})
    full["type"], full["usage"], full["keyId"] = kind, usage, key_id
    return full


def validate(doc: object, source: str) -> JsonObject:
    """Validate a state document and return it normalized (lists everywhere, derived fields)."""
    check = _Check(source)
    root = check.obj(doc, "$")
    for key in root:
        if key not in KNOWN_TOP_LEVEL:
            raise check.fail(f"$.{key}", f"unknown key; expected some of {', '.join(COLLECTIONS)}")
    data: JsonObject = {name: check.items(root.get(name, []), f"$.{name}") for name in COLLECTIONS}
    builtins = check.obj(root.get("builtins", {}), "$.builtins")
    for flag, value in builtins.items():
        if flag not in BUILTIN_FLAGS or not isinstance(value, bool):
            raise check.fail(f"$.builtins.{flag}", f"expected one of {BUILTIN_FLAGS} = true|false")

    orgs = data["organization"]
    if len(orgs) != 1:
        raise check.fail("$.organization", f"expected exactly one organization, found {len(orgs)}")
    org = orgs[0]
    tenant_id = check.guid(org, "id", "$.organization[0]")
    assert tenant_id is not None
    check.string(org, "displayName", "$.organization[0]", required=False)
    verified = check.items(org.get("verifiedDomains", []), "$.organization[0].verifiedDomains")
    for i, dom in enumerate(verified):
        check.string(dom, "name", f"$.organization[0].verifiedDomains[{i}]")
    for i, dom in enumerate(data["domains"]):
        check.string(dom, "id", f"$.domains[{i}]")
        for flag in ("isInitial", "isDefault", "isVerified"):
            check.boolean(dom, flag, f"$.domains[{i}]")
    check.unique(data["domains"], "id", "$.domains")
    if not data["domains"]:
        data["domains"] = [
            {
                "id": d["name"],
                "isInitial": bool(d.get("isInitial")),
                "isDefault": bool(d.get("isDefault")),
            }
            for d in verified
        ]
    if not verified:
        org["verifiedDomains"] = [
            {
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": bool(d.get("isDefault")),
                "isInitial": bool(d.get("isInitial")),
                "name": d["id"],
                "type": "Managed",
            }
            for d in data["domains"]
            if d.get("isVerified", True)
        ]
    if not any(d.get("isInitial") for d in data["domains"]):
        raise check.fail("$.domains", "no domain has isInitial: true (the *.onmicrosoft.com one)")

    for i, app in enumerate(data["applications"]):
        path = f"$.applications[{i}]"
        check.guid(app, "id", path)
        check.guid(app, "appId", path)
        check.string(app, "displayName", path, required=False)
        check.time(app, "createdDateTime", path)
        creds = check.items(app.get("keyCredentials", []), f"{path}.keyCredentials")
        app["keyCredentials"] = [
            validate_key_credential(check, c, f"{path}.keyCredentials[{j}]", app["id"]) for j, c in enumerate(creds)
        ]
        check.unique(app["keyCredentials"], "keyId", f"{path}.keyCredentials")
        check.items(app.get("passwordCredentials", []), f"{path}.passwordCredentials")
        for j, rra in enumerate(check.items(app.get("requiredResourceAccess", []), f"{path}.requiredResourceAccess")):
            rpath = f"{path}.requiredResourceAccess[{j}]"
            check.guid(rra, "resourceAppId", rpath)
            for k, access in enumerate(check.items(rra.get("resourceAccess"), f"{rpath}.resourceAccess")):
                check.guid(access, "id", f"{rpath}.resourceAccess[{k}]")
                if access.get("type") not in ("Role", "Scope"):
                    raise check.fail(f"{rpath}.resourceAccess[{k}].type", "expected Role or Scope")
        app.setdefault("displayName", app["appId"])
    check.unique(data["applications"], "id", "$.applications")
    check.unique(data["applications"], "appId", "$.applications")

    for i, sp in enumerate(data["servicePrincipals"]):
        path = f"$.servicePrincipals[{i}]"
        check.guid(sp, "id", path)
        check.guid(sp, "appId", path)
        check.boolean(sp, "accountEnabled", path)
        creds = check.items(sp.get("keyCredentials", []), f"{path}.keyCredentials")
        sp["keyCredentials"] = [
            validate_key_credential(check, c, f"{path}.keyCredentials[{j}]", sp["id"]) for j, c in enumerate(creds)
        ]
        for j, role in enumerate(check.items(sp.get("appRoles", []), f"{path}.appRoles")):
            check.guid(role, "id", f"{path}.appRoles[{j}]")
            check.string(role, "value", f"{path}.appRoles[{j}]")

    if builtins.get("exchangeServicePrincipal", True) and not _has_app(
        data["servicePrincipals"], wellknown.EXCHANGE_ONLINE_APP_ID
    ):
        data["servicePrincipals"].append(builtin_exchange_sp(tenant_id))
    if builtins.get("graphServicePrincipal", True) and not _has_app(
        data["servicePrincipals"], wellknown.MICROSOFT_GRAPH_APP_ID
    ):
        data["servicePrincipals"].append(builtin_graph_sp(tenant_id))
    check.unique(data["servicePrincipals"], "id", "$.servicePrincipals")
    check.unique(data["servicePrincipals"], "appId", "$.servicePrincipals")
    sps = {sp["id"].lower(): sp for sp in data["servicePrincipals"]}
    apps_by_app_id = {a["appId"].lower(): a for a in data["applications"]}
    for sp in data["servicePrincipals"]:
        app = apps_by_app_id.get(sp["appId"].lower())
        sp.setdefault("displayName", app["displayName"] if app else sp["appId"])
        sp.setdefault("appDisplayName", sp["displayName"])
        sp.setdefault("appOwnerOrganizationId", tenant_id if app else None)
        if app is not None:
            sp.setdefault("signInAudience", app.get("signInAudience", "AzureADMyOrg"))

    for i, d in enumerate(data["roleDefinitions"]):
        check.guid(d, "id", f"$.roleDefinitions[{i}]")
        check.string(d, "displayName", f"$.roleDefinitions[{i}]")
        d.setdefault("templateId", d["id"])
    if builtins.get("roleDefinitions", True):
        known = {d["id"].lower() for d in data["roleDefinitions"]}
        data["roleDefinitions"].extend(d for d in builtin_role_definitions() if d["id"].lower() not in known)
    check.unique(data["roleDefinitions"], "id", "$.roleDefinitions")
    definitions = {d["id"].lower() for d in data["roleDefinitions"]} | {
        str(d.get("templateId", "")).lower() for d in data["roleDefinitions"]
    }

    for i, ara in enumerate(data["appRoleAssignments"]):
        path = f"$.appRoleAssignments[{i}]"
        principal = _reference(check, ara, "principalId", path, sps)
        resource = _reference(check, ara, "resourceId", path, sps)
        role_id = check.guid(ara, "appRoleId", path)
        assert role_id is not None
        role_ids = {str(r.get("id", "")).lower() for r in resource.get("appRoles", [])}
        if role_id.lower() != DEFAULT_ACCESS_ROLE and role_id.lower() not in role_ids:
            raise check.fail(
                f"{path}.appRoleId",
                f"{role_id!r} is not an app role of resource {resource['displayName']!r}",
            )
        check.time(ara, "createdDateTime", path)
        ara.setdefault("id", assignment_id())
        ara.setdefault("principalType", "ServicePrincipal")
        ara.setdefault("principalDisplayName", principal["displayName"])
        ara.setdefault("resourceDisplayName", resource["displayName"])
    check.unique(data["appRoleAssignments"], "id", "$.appRoleAssignments")

    for name in ("roleAssignments", "roleEligibilitySchedules"):
        for i, ra in enumerate(data[name]):
            path = f"$.{name}[{i}]"
            check.string(ra, "id", path)
            _reference(check, ra, "principalId", path, sps)
            role_id = check.guid(ra, "roleDefinitionId", path)
            if role_id is not None and role_id.lower() not in definitions:
                raise check.fail(f"{path}.roleDefinitionId", f"no role definition {role_id!r}")
            scope = ra.setdefault("directoryScopeId", "/")
            if not isinstance(scope, str) or not scope.startswith("/"):
                raise check.fail(f"{path}.directoryScopeId", "expected '/' or '/<scope path>'")
        check.unique(data[name], "id", f"$.{name}")

    for i, mbx in enumerate(data["mailboxes"]):
        check.string(mbx, "PrimarySmtpAddress", f"$.mailboxes[{i}]")
    data["builtins"] = {flag: builtins.get(flag, True) for flag in BUILTIN_FLAGS}
    return data


def _has_app(sps: Iterable[JsonObject], app_id: str) -> bool:
    return any(str(sp.get("appId", "")).lower() == app_id for sp in sps)


def _reference(check: _Check, obj: JsonObject, key: str, path: str, sps: Mapping[str, JsonObject]) -> JsonObject:
    value = check.guid(obj, key, path)
    assert value is not None
    sp = sps.get(value.lower())
    if sp is None:
        raise check.fail(f"{path}.{key}", f"no service principal with id {value!r}")
    return sp


def load_state_file(path: Path) -> JsonObject:
    """Read and validate a state file; problems raise SandboxStateError naming the file."""
    source = f"state file '{path}'"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SandboxStateError(f"{source}: cannot be read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SandboxStateError(
            f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}. "
            "Fix the file, or write a fresh one with 'cbacheck sandbox --dump FILE'."
        ) from None
    return validate(doc, source)


# --- the live tenant -----------------------------------------------------------------------------


class TenantState:
    """The tenant's objects behind one lock, with indexes and the time each grant takes effect."""

    def __init__(
        self,
        data: JsonObject,
        *,
        propagation_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.RLock()
        self.data: dict[str, list[JsonObject]] = {name: data[name] for name in COLLECTIONS}
        self.builtins: dict[str, bool] = dict(data.get("builtins", {}))
        self.propagation_s = propagation_s
        self.clock = clock
        # Object id (or keyId) -> wall-clock time from which token issuance sees it. Objects
        # loaded from the document are in effect at once; the map is never part of a dump.
        self._effective_at: dict[str, float] = {}
        self._reindex()

    # indexes
    def _reindex(self) -> None:
        self._apps_by_id = {a["id"].lower(): a for a in self.data["applications"]}
        self._apps_by_app_id = {a["appId"].lower(): a for a in self.data["applications"]}
        self._sps_by_id = {s["id"].lower(): s for s in self.data["servicePrincipals"]}
        self._sps_by_app_id = {s["appId"].lower(): s for s in self.data["servicePrincipals"]}

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the lock for a change, then rebuild the indexes."""
        with self.lock:
            try:
                yield
            finally:
                self._reindex()

    # tenant identity
    @property
    def organization(self) -> JsonObject:
        return self.data["organization"][0]

    @property
    def tenant_id(self) -> str:
        return str(self.organization["id"])

    @property
    def initial_domain(self) -> str:
        return next(str(d["id"]) for d in self.data["domains"] if d.get("isInitial"))

    @property
    def display_name(self) -> str:
        return str(self.organization.get("displayName") or self.initial_domain)

    def domain_names(self) -> list[str]:
        return [str(d["id"]) for d in self.data["domains"]]

    def resolve_tenant(self, value: str) -> bool:
        """True when value names this tenant: its id or any of its domains (case-insensitive)."""
        value = value.lower()
        return value == self.tenant_id.lower() or any(value == name.lower() for name in self.domain_names())

    # lookups
    def application(self, object_id: str | None = None, *, app_id: str | None = None) -> JsonObject | None:
        if app_id is not None:
            return self._apps_by_app_id.get(app_id.lower())
        return self._apps_by_id.get((object_id or "").lower())

    def service_principal(self, object_id: str | None = None, *, app_id: str | None = None) -> JsonObject | None:
        if app_id is not None:
            return self._sps_by_app_id.get(app_id.lower())
        return self._sps_by_id.get((object_id or "").lower())

    def role_definition(self, role_id: str) -> JsonObject | None:
        role_id = role_id.lower()
        return next(
            (
                d
                for d in self.data["roleDefinitions"]
                if d["id"].lower() == role_id or str(d.get("templateId", "")).lower() == role_id
            ),
            None,
        )

    def service_principal_for_resource(self, resource: str) -> JsonObject | None:
        """The resource SP a token request names: by appId or by one of its servicePrincipalNames."""
        wanted = resource.lower().rstrip("/")
        for sp in self.data["servicePrincipals"]:
            if sp["appId"].lower() == wanted:
                return sp
            names = sp.get("servicePrincipalNames") or []
            if any(str(n).lower().rstrip("/") == wanted for n in names):
                return sp
        return None

    # propagation
    def mark_new(self, object_id: str) -> None:
        """Record that object_id was just created: token issuance sees it after propagation_s."""
        self._effective_at[object_id.lower()] = self.clock() + self.propagation_s

    def in_effect(self, object_id: str) -> bool:
        """True when token issuance may use the object (it has propagated)."""
        due = self._effective_at.get(object_id.lower())
        return due is None or self.clock() >= due

    # granted roles, as token issuance sees them
    def granted_app_roles(self, principal_sp: JsonObject, resource_sp: JsonObject) -> list[str]:
        """Values of the app roles of resource_sp granted to principal_sp that are in effect."""
        values = {str(r["id"]).lower(): str(r.get("value")) for r in resource_sp.get("appRoles", [])}
        out: list[str] = []
        for ara in self.data["appRoleAssignments"]:
            if (
                ara["principalId"].lower() == principal_sp["id"].lower()
                and ara["resourceId"].lower() == resource_sp["id"].lower()
                and self.in_effect(ara["id"])
            ):
                value = values.get(ara["appRoleId"].lower())
                if value and value not in out:
                    out.append(value)
        return out

    def active_directory_roles(self, principal_sp: JsonObject) -> list[str]:
        """Role template ids of active tenant-wide ("/") role assignments in effect."""
        out: list[str] = []
        for ra in self.data["roleAssignments"]:
            if (
                ra["principalId"].lower() == principal_sp["id"].lower()
                and ra.get("directoryScopeId", "/") == "/"
                and self.in_effect(ra["id"])
            ):
                definition = self.role_definition(ra["roleDefinitionId"])
                template = str(definition.get("templateId") or definition["id"]) if definition else ""
                if template and template not in out:
                    out.append(template)
        return out

    # dump
    def dump(self) -> JsonObject:
        """The current state as a state document (Graph JSON), loadable again as it is."""
        with self.lock:
            doc: JsonObject = {name: copy.deepcopy(self.data[name]) for name in COLLECTIONS}
            off = {k: v for k, v in self.builtins.items() if not v}
            if off:
                doc["builtins"] = off
            return doc
