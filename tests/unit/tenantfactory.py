"""Hand-built tenant facts for the checks of links 2 to 6: a healthy tenant by default, broken by overrides."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cbacheck import wellknown
from cbacheck.config import Settings
from cbacheck.facts import (
    AppRegistration,
    AppRole,
    AppRoleAssignment,
    CertFacts,
    DirectoryRoleAssignment,
    ExchangeProbe,
    ExchangeRbac,
    ExchangeServicePrincipal,
    KeyCredential,
    ManagementRoleAssignment,
    Organization,
    PasswordCredential,
    RequiredResource,
    ResourceAccess,
    RoleGroup,
    ServicePrincipal,
    TenantFacts,
    TokenAttempt,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TENANT_ID = "6b1a1d1e-0000-4000-8000-00000000c0de"
INITIAL_DOMAIN = "contoso.onmicrosoft.com"
CUSTOM_DOMAIN = "contoso.com"
APP_ID = "0a1b2c3d-1111-4222-8333-444455556666"
APP_OBJECT_ID = "a0000000-0000-4000-8000-000000000001"
APP_SP_ID = "a0000000-0000-4000-8000-000000000002"
EXCHANGE_SP_ID = "e0000000-0000-4000-8000-000000000003"
GRAPH_SP_ID = "90000000-0000-4000-8000-000000000004"
AU_SCOPE = "/administrativeUnits/5e000000-0000-4000-8000-000000000005"

# Stand-ins for DER certificates: the checks only ever hash them.
CERT_DER = b"local certificate DER bytes"
OTHER_DER = b"another app's certificate DER bytes"


def sha1_hex(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest().upper()


THUMBPRINT = sha1_hex(CERT_DER)


def cert_facts(der: bytes = CERT_DER) -> CertFacts:
    return CertFacts(
        path=Path("certs/exo-automation.pem"),
        source="option --cert",
        file_format="pem",
        subject="CN=exo-automation",
        issuer="CN=exo-automation",
        serial="01",
        not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=335),
        key_type="RSA",
        key_size=2048,
        signature_hash="sha256",
        key_usage=("digital_signature",),
        extended_key_usage=None,
        sha1_thumbprint=sha1_hex(der),
        sha256_thumbprint=hashlib.sha256(der).hexdigest().upper(),
        der_base64=base64.b64encode(der).decode(),
        self_signed=True,
        private_key_present=True,
        private_key_matches=True,
        private_key_reason="",
        key_encrypted=True,
        file_mode=0o600,
        read_at=NOW,
    )


def key_credential(
    der: bytes = CERT_DER,
    *,
    key_id: str = "k0000000-0000-4000-8000-000000000001",
    start: datetime | None = NOW - timedelta(days=30),
    end: datetime | None = NOW + timedelta(days=335),
    type: str = "AsymmetricX509Cert",
    usage: str = "Verify",
    with_key: bool = True,
    custom_key_identifier: str | None = None,
    display_name: str = "CN=exo-automation",
) -> KeyCredential:
    """With the key bytes (read with $select) unless with_key is False; then only customKeyIdentifier identifies it."""
    return KeyCredential(
        key_id=key_id,
        type=type,
        usage=usage,
        display_name=display_name,
        start=start,
        end=end,
        custom_key_identifier=custom_key_identifier,
        key_der=der if with_key else None,
    )


MANAGE_AS_APP_REQUEST = RequiredResource(
    wellknown.EXCHANGE_ONLINE_APP_ID, (ResourceAccess(wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID, "Role"),)
)


def application(**overrides: Any) -> AppRegistration:
    values: dict[str, Any] = {
        "object_id": APP_OBJECT_ID,
        "app_id": APP_ID,
        "display_name": "exo-automation",
        "sign_in_audience": "AzureADMyOrg",
        "key_credentials": (key_credential(),),
        "password_credentials": (),
        "required_resource_access": (MANAGE_AS_APP_REQUEST,),
        "raw": {},
    }
    values.update(overrides)
    return AppRegistration(**values)


def secret(key_id: str = "s0000000-0000-4000-8000-000000000001", hint: str = "abc") -> PasswordCredential:
    return PasswordCredential(key_id, "legacy secret", hint, NOW - timedelta(days=10), NOW + timedelta(days=170))


def app_sp(*, enabled: bool = True) -> ServicePrincipal:
    return ServicePrincipal(APP_SP_ID, APP_ID, "exo-automation", enabled, ())


def exchange_sp() -> ServicePrincipal:
    return ServicePrincipal(
        EXCHANGE_SP_ID,
        wellknown.EXCHANGE_ONLINE_APP_ID,
        wellknown.EXCHANGE_ONLINE_DISPLAY_NAME,
        True,
        (
            AppRole(
                wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID, wellknown.EXCHANGE_MANAGE_AS_APP, "Manage", ("Application",)
            ),
            AppRole(wellknown.FULL_ACCESS_AS_APP_ROLE_ID, wellknown.FULL_ACCESS_AS_APP, "EWS", ("Application",)),
            AppRole("b1000000-0000-4000-8000-00000000000b", "Mail.Read", "Read mail", ("Application",)),
        ),
    )


def grant(
    app_role_id: str = wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
    *,
    resource_id: str = EXCHANGE_SP_ID,
    resource_display_name: str = wellknown.EXCHANGE_ONLINE_DISPLAY_NAME,
    grant_id: str = "g-manage",
) -> AppRoleAssignment:
    return AppRoleAssignment(grant_id, APP_SP_ID, resource_id, resource_display_name, app_role_id, "2026-02-01")


def graph_grant(permission: str, grant_id: str = "g-graph") -> AppRoleAssignment:
    return grant(
        wellknown.GRAPH_PERMISSION_IDS[permission],
        resource_id=GRAPH_SP_ID,
        resource_display_name=wellknown.MICROSOFT_GRAPH_DISPLAY_NAME,
        grant_id=grant_id,
    )


def role(
    template: str = wellknown.EXCHANGE_ADMINISTRATOR,
    *,
    scope: str = "/",
    status: str = "active",
    app_scope: str | None = None,
) -> DirectoryRoleAssignment:
    return DirectoryRoleAssignment(
        id=f"ra-{template[:8]}-{status}",
        principal_id=APP_SP_ID,
        role_definition_id=template,
        role_template_id=template,
        role_display_name=wellknown.DIRECTORY_ROLE_NAMES.get(template, ""),
        directory_scope_id=scope,
        app_scope_id=app_scope,
        status=status,
    )


def organization() -> Organization:
    return Organization(TENANT_ID, "Contoso", INITIAL_DOMAIN, (INITIAL_DOMAIN, CUSTOM_DOMAIN))


def claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a right app-only Exchange token; an override of None removes the claim."""
    issued = int((NOW - timedelta(minutes=5)).timestamp())
    values: dict[str, Any] = {
        "aud": "https://outlook.office365.com",
        "iss": f"https://sts.windows.net/{TENANT_ID}/",
        "iat": issued,
        "nbf": issued,
        "exp": issued + 3900,
        "appid": APP_ID,
        "appidacr": "2",
        "idtyp": "app",
        "oid": APP_SP_ID,
        "tid": TENANT_ID,
        "roles": [wellknown.EXCHANGE_MANAGE_AS_APP],
        "wids": [wellknown.EXCHANGE_ADMINISTRATOR, "0997a1d0-0d1d-4acb-b408-d5ca73121e90"],
        "ver": "1.0",
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def token(**claim_overrides: Any) -> TokenAttempt:
    return TokenAttempt(
        authority=f"https://login.microsoftonline.com/{TENANT_ID}",
        scope="https://outlook.office365.com/.default",
        client_id=APP_ID,
        credential_style="RS256 x5t",
        acquired=True,
        header={"typ": "JWT", "alg": "RS256", "x5t": "abc", "kid": "abc"},
        claims=claims(**claim_overrides),
        elapsed_ms=120.0,
    )


def token_failure(code: int | None, description: str, error: str = "invalid_client") -> TokenAttempt:
    return TokenAttempt(
        authority=f"https://login.microsoftonline.com/{TENANT_ID}",
        scope="https://outlook.office365.com/.default",
        client_id=APP_ID,
        credential_style="RS256 x5t",
        acquired=False,
        error=error,
        error_codes=(code,) if code is not None else (),
        error_description=description,
        correlation_id="corr-1234",
        trace_id="trace-5678",
        timestamp="2026-03-01 12:00:01Z",
    )


def probe_ok() -> ExchangeProbe:
    return ExchangeProbe(
        cmdlet="Get-OrganizationConfig",
        url=f"https://outlook.office365.com/adminapi/beta/{TENANT_ID}/InvokeCommand",
        status=200,
        ok=True,
        summary={"Name": INITIAL_DOMAIN, "DisplayName": "Contoso"},
        request_id="req-ok",
        elapsed_ms=300.0,
    )


def probe_error(status: int | None, message: str, code: str = "Unauthorized") -> ExchangeProbe:
    return ExchangeProbe(
        cmdlet="Get-OrganizationConfig",
        url=f"https://outlook.office365.com/adminapi/beta/{TENANT_ID}/InvokeCommand",
        status=status,
        ok=False,
        error_code=code,
        error_message=message,
        request_id="req-err",
    )


def tenant(**overrides: Any) -> TenantFacts:
    """A tenant where every link holds; override fields to break one."""
    values: dict[str, Any] = {
        "collected_at": NOW,
        "tenant": TENANT_ID,
        "app_id": APP_ID,
        "organization_setting": INITIAL_DOMAIN,
        "organization": organization(),
        "app": application(),
        "app_sp": app_sp(),
        "exchange_sp": exchange_sp(),
        "app_role_grants": (grant(),),
        "role_assignments": (role(),),
        "role_eligibilities": (),
        "token": token(),
        "exchange": probe_ok(),
        "auditor": "certificate app (test)",
        "exchange_rbac": rbac(),
    }
    values.update(overrides)
    return TenantFacts(**values)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"tenant": TENANT_ID, "app_id": APP_ID, "organization": INITIAL_DOMAIN}
    values.update(overrides)
    return Settings(**values)


def replace(facts: TenantFacts, **changes: Any) -> TenantFacts:
    return dataclasses.replace(facts, **changes)


def rbac(
    *, object_id: str = "", roles: tuple[str, ...] = (), group: str = "Automation readers", **cmdlet_roles: Any
) -> ExchangeRbac:
    """Exchange RBAC as the auditor reads it: no pointer by default; with object_id, a pointer in a role group."""
    if not object_id:
        return ExchangeRbac((), (), (), {})
    pointer = ExchangeServicePrincipal(APP_ID, object_id, object_id, "Exchange automation")
    assignments = tuple(
        ManagementRoleAssignment(object_id, f"{r}-{group}", r, group, "RoleGroup", "Organization", None, None, True)
        for r in roles
    )
    groups = (RoleGroup(group, roles, (object_id,)),)
    named = {k.replace("_", "-"): tuple(v) for k, v in cmdlet_roles.items()}
    return ExchangeRbac((pointer,), assignments, groups, named)
