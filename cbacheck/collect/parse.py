"""Graph JSON into facts: applications, service principals, the organization, app-role and directory-role grants."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from cbacheck import wellknown
from cbacheck.errors import CbaCheckError
from cbacheck.facts import (
    AppRegistration,
    AppRole,
    AppRoleAssignment,
    DirectoryRoleAssignment,
    KeyCredential,
    Organization,
    PasswordCredential,
    RequiredResource,
    ResourceAccess,
    ServicePrincipal,
    Source,
)


class MalformedFact(CbaCheckError):
    """Graph answered 2xx with JSON that lacks what the fact needs."""


# PIM's APIs need Microsoft Entra ID P2 or Governance licences ("Licensing" in
# https://learn.microsoft.com/graph/api/resources/privilegedidentitymanagementv3-overview). Users report
# 400 AadPremiumLicenseRequired from roleEligibilityScheduleInstances on tenants without them; the same
# answer from roleEligibilitySchedules is UNCONFIRMED (docs/sandbox.md).
PIM_UNLICENSED_CODE = "AadPremiumLicenseRequired"


def pim_unlicensed_note(status: int, body: Any) -> str:
    """The evidence note when a PIM read says the tenant has no P2 or Governance licence ("" otherwise)."""
    error = body.get("error") if isinstance(body, dict) else None
    if status != 400 or not isinstance(error, dict) or error.get("code") != PIM_UNLICENSED_CODE:
        return ""
    message = str(error.get("message") or "").strip()
    return (
        "the tenant has no Microsoft Entra ID P2 or Governance licence, so PIM is not available and no eligible "
        f"role assignment can exist (Graph answered {PIM_UNLICENSED_CODE}" + (f": {message!r})" if message else ")")
    )


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 from Graph as an aware UTC datetime (Graph sends 7 fractional digits and 'Z')."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise MalformedFact(f"{value!r} is not an ISO 8601 date") from err
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def decode_key(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise MalformedFact("a keyCredential 'key' is not base64") from err


def _required(item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedFact(f"the object has no {name!r}")
    return value


def _list(item: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = item.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedFact(f"{name!r} is not a list")
    return [entry for entry in value if isinstance(entry, dict)]


def parse_application(body: Any, source: Source | None = None) -> AppRegistration:
    if not isinstance(body, dict):
        raise MalformedFact("the application is not a JSON object")
    keys = tuple(
        KeyCredential(
            key_id=str(k.get("keyId", "")),
            type=str(k.get("type", "")),
            usage=str(k.get("usage", "")),
            display_name=str(k.get("displayName") or ""),
            start=parse_time(k.get("startDateTime")),
            end=parse_time(k.get("endDateTime")),
            custom_key_identifier=k.get("customKeyIdentifier") or None,
            key_der=decode_key(k.get("key")),
        )
        for k in _list(body, "keyCredentials")
    )
    passwords = tuple(
        PasswordCredential(
            key_id=str(p.get("keyId", "")),
            display_name=str(p.get("displayName") or ""),
            hint=str(p.get("hint") or ""),
            start=parse_time(p.get("startDateTime")),
            end=parse_time(p.get("endDateTime")),
        )
        for p in _list(body, "passwordCredentials")
    )
    resources = tuple(
        RequiredResource(
            resource_app_id=str(r.get("resourceAppId", "")),
            access=tuple(
                ResourceAccess(id=str(a.get("id", "")), type=str(a.get("type", ""))) for a in _list(r, "resourceAccess")
            ),
        )
        for r in _list(body, "requiredResourceAccess")
    )
    return AppRegistration(
        object_id=_required(body, "id"),
        app_id=_required(body, "appId"),
        display_name=str(body.get("displayName") or ""),
        sign_in_audience=str(body.get("signInAudience") or ""),
        key_credentials=keys,
        password_credentials=passwords,
        required_resource_access=resources,
        raw=body,
        source=source,
        created=parse_time(body.get("createdDateTime")),
    )


def parse_service_principal(body: Any, source: Source | None = None) -> ServicePrincipal:
    if not isinstance(body, dict):
        raise MalformedFact("the service principal is not a JSON object")
    enabled = body.get("accountEnabled")
    return ServicePrincipal(
        object_id=_required(body, "id"),
        app_id=_required(body, "appId"),
        display_name=str(body.get("displayName") or ""),
        # Not selected for the Exchange SP; an SP Graph returns without the flag is not disabled.
        account_enabled=enabled is not False,
        app_roles=tuple(
            AppRole(
                id=str(r.get("id", "")),
                value=str(r.get("value") or ""),
                display_name=str(r.get("displayName") or ""),
                allowed_member_types=tuple(str(t) for t in r.get("allowedMemberTypes") or ()),
            )
            for r in _list(body, "appRoles")
        ),
        source=source,
    )


def parse_organization(body: Any, source: Source | None = None) -> Organization:
    """The organization from GET /organization/{id} (one object) or GET /organization (a list of one)."""
    values = body.get("value") if isinstance(body, dict) else None
    if isinstance(values, list):
        if not values or not isinstance(values[0], dict):
            raise MalformedFact("/organization returned no organization")
        org = values[0]
    elif isinstance(body, dict) and "id" in body:
        org = body
    else:
        raise MalformedFact("/organization returned no organization")
    domains = _list(org, "verifiedDomains")
    initial = next((str(d.get("name", "")) for d in domains if d.get("isInitial") is True), "")
    return Organization(
        tenant_id=_required(org, "id"),
        display_name=str(org.get("displayName") or ""),
        initial_domain=initial,
        verified_domains=tuple(str(d.get("name", "")) for d in domains if d.get("name")),
        source=source,
    )


def parse_app_role_grants(items: list[Any]) -> tuple[AppRoleAssignment, ...]:
    return tuple(
        AppRoleAssignment(
            id=_required(item, "id"),
            principal_id=str(item.get("principalId", "")),
            resource_id=str(item.get("resourceId", "")),
            resource_display_name=str(item.get("resourceDisplayName") or ""),
            app_role_id=str(item.get("appRoleId", "")),
            created=str(item.get("createdDateTime") or ""),
        )
        for item in items
        if isinstance(item, dict) and not item.get("deletedDateTime")
    )


def parse_role_assignments(items: list[Any], status: str) -> tuple[DirectoryRoleAssignment, ...]:
    parsed = []
    for item in items:
        if not isinstance(item, dict):
            continue
        expanded = item.get("roleDefinition")
        definition: dict[str, Any] = expanded if isinstance(expanded, dict) else {}
        definition_id = _required(item, "roleDefinitionId")
        # For built-in roles roleDefinitionId is the template id
        # (https://learn.microsoft.com/graph/api/resources/unifiedroleassignment).
        template = str(definition.get("templateId") or definition_id).lower()
        name = str(definition.get("displayName") or wellknown.DIRECTORY_ROLE_NAMES.get(template, ""))
        parsed.append(
            DirectoryRoleAssignment(
                id=_required(item, "id"),
                principal_id=str(item.get("principalId", "")),
                role_definition_id=definition_id,
                role_template_id=template,
                role_display_name=name,
                directory_scope_id=str(item.get("directoryScopeId") or ""),
                app_scope_id=item.get("appScopeId") or None,
                status=status,
            )
        )
    return tuple(parsed)
