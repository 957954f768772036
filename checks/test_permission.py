"""Link 4, Exchange.ManageAsApp: configured, granted, and nothing more (CBA-PERM-*)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from cbacheck import wellknown
from cbacheck.chain import require
from cbacheck.config import Settings
from cbacheck.facts import AppRegistration, AppRoleAssignment, ServicePrincipal, TenantFacts

if TYPE_CHECKING:
    from cbacheck.evidence import Evidence

NO_APP = "the app registration does not exist"
NO_SP = "the app has no service principal to hold grants"
NO_EXCHANGE_SP = "the tenant has no Office 365 Exchange Online service principal to grant on"
# The app role id of an assignment that grants no particular role (default access).
DEFAULT_ACCESS_ROLE_ID = "00000000-0000-0000-0000-000000000000"
_GRAPH_PERMISSION_NAMES = {role_id: name for name, role_id in wellknown.GRAPH_PERMISSION_IDS.items()}


def _grant_summary(grant: AppRoleAssignment, value: str | None) -> dict[str, Any]:
    return {
        "id": grant.id,
        "resourceId": grant.resource_id,
        "resourceDisplayName": grant.resource_display_name,
        "appRoleId": grant.app_role_id,
        "value": value,
        "createdDateTime": grant.created or None,
    }


def permission_name(grant: AppRoleAssignment, exchange_sp: ServicePrincipal | None) -> str | None:
    """The permission's value (e.g. Exchange.ManageAsApp), or None when cbacheck cannot resolve it.

    Exchange roles resolve through the Exchange SP's appRoles as collected; Graph roles through the
    well-known table, since the Graph SP's appRoles are not collected.
    """
    if exchange_sp is not None and grant.resource_id == exchange_sp.object_id:
        value = exchange_sp.role_value(grant.app_role_id)
        if value:
            return value
        if grant.app_role_id == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID:
            return wellknown.EXCHANGE_MANAGE_AS_APP
        if grant.app_role_id == wellknown.FULL_ACCESS_AS_APP_ROLE_ID:
            return wellknown.FULL_ACCESS_AS_APP
        return None
    if grant.resource_display_name == wellknown.MICROSOFT_GRAPH_DISPLAY_NAME:
        return _GRAPH_PERMISSION_NAMES.get(grant.app_role_id)
    return None


def _is_manage_as_app(grant: AppRoleAssignment, exchange_sp: ServicePrincipal) -> bool:
    return grant.resource_id == exchange_sp.object_id and grant.app_role_id == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID


def _exchange_request_text(requested: list[dict[str, str]]) -> str:
    """What the app asks of Exchange Online when it is not the application permission Exchange.ManageAsApp."""
    if any(item["id"] == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID for item in requested):
        return "Exchange.ManageAsApp as a delegated permission (type Scope)"
    if requested:
        # A wrong id shows when consent is granted (AADSTS650051 "Claim is invalid"), not in a token request.
        return (
            "other Exchange permissions: "
            + ", ".join(f"{i['id']} ({i['type']})" for i in requested)
            + " (an id that is not an app role of Office 365 Exchange Online makes admin consent fail with "
            "AADSTS650051)"
        )
    return "no Office 365 Exchange Online permission"


@pytest.mark.requirement("CBA-PERM-001")
def test_exchange_service_principal_exists(
    exchange_sp: ServicePrincipal | None, tenant_facts: TenantFacts, evidence: Evidence
) -> None:
    """The Office 365 Exchange Online service principal exists in the tenant

    Consent and tokens for Exchange need the resource's service principal in this tenant. Microsoft
    documents that it appears once an app's manifest requests Exchange.ManageAsApp and consent is
    granted; a tenant without an Exchange Online subscription has none either. Without it tokens fail
    with AADSTS500011.
    """
    evidence.expected(f"a service principal with appId {wellknown.EXCHANGE_ONLINE_APP_ID}")
    evidence.observed(
        "Exchange service principal",
        None
        if exchange_sp is None
        else {
            "id": exchange_sp.object_id,
            "appId": exchange_sp.app_id,
            "displayName": exchange_sp.display_name,
            "has Exchange.ManageAsApp role": exchange_sp.role_value(wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID)
            is not None,
        },
    )
    assert exchange_sp is not None, (
        f"tenant {tenant_facts.tenant} has no {wellknown.EXCHANGE_ONLINE_DISPLAY_NAME} service principal "
        f"(appId {wellknown.EXCHANGE_ONLINE_APP_ID}); expected one: tokens for Exchange fail with AADSTS500011 "
        "InvalidResourceServicePrincipalNotFound until it exists. Add Exchange.ManageAsApp to the app's manifest "
        "and grant admin consent, which makes it appear; if it does not, check the Exchange Online subscription"
    )


@pytest.mark.requirement("CBA-PERM-002")
def test_exchange_manage_as_app_configured(app: AppRegistration | None, evidence: Evidence) -> None:
    """The app requests Exchange.ManageAsApp (configured)

    requiredResourceAccess is what the portal's API permissions page shows and what admin consent
    grants. It grants nothing by itself: CBA-PERM-003 checks the grant, CBA-TOKEN-002 the token.
    """
    application = require(app, "CBA-APP-001", NO_APP)
    exchange_entries = [
        resource
        for resource in application.required_resource_access
        if resource.resource_app_id == wellknown.EXCHANGE_ONLINE_APP_ID
    ]
    requested = [{"id": access.id, "type": access.type} for resource in exchange_entries for access in resource.access]
    evidence.observed(
        "requiredResourceAccess",
        [
            {"resourceAppId": r.resource_app_id, "resourceAccess": [{"id": a.id, "type": a.type} for a in r.access]}
            for r in application.required_resource_access
        ],
    )
    evidence.expected(
        f"resourceAppId {wellknown.EXCHANGE_ONLINE_APP_ID} with resourceAccess "
        f"{{id: {wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID}, type: Role}}"
    )
    assert application.requests_app_role(wellknown.EXCHANGE_ONLINE_APP_ID, wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID), (
        f"app {application.app_id} requests {_exchange_request_text(requested)}; expected the application "
        f"permission Exchange.ManageAsApp ({wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID}, type Role) on "
        f"{wellknown.EXCHANGE_ONLINE_DISPLAY_NAME}"
    )


@pytest.mark.requirement("CBA-PERM-003")
def test_exchange_manage_as_app_granted(
    app: AppRegistration | None,
    app_sp: ServicePrincipal | None,
    exchange_sp: ServicePrincipal | None,
    app_role_grants: tuple[AppRoleAssignment, ...],
    evidence: Evidence,
) -> None:
    """Admin consent for Exchange.ManageAsApp is granted

    Consent is an appRoleAssignment from the app's service principal to the Exchange service
    principal for role dc50a0fb-...; a manifest line without it is "Not granted" in the portal
    and Exchange refuses the token.
    """
    principal = require(app_sp, "CBA-APP-002", NO_SP)
    resource = require(exchange_sp, "CBA-PERM-001", NO_EXCHANGE_SP)
    granted = [grant for grant in app_role_grants if _is_manage_as_app(grant, resource)]
    evidence.observed("appRoleAssignments", [_grant_summary(g, permission_name(g, resource)) for g in app_role_grants])
    evidence.expected(
        f"an appRoleAssignment principalId {principal.object_id} -> resourceId {resource.object_id} "
        f"appRoleId {wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID} (Exchange.ManageAsApp)"
    )
    configured = app is not None and app.requests_app_role(
        wellknown.EXCHANGE_ONLINE_APP_ID, wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
    )
    evidence.add("configured in requiredResourceAccess", configured)
    state = (
        "configured in requiredResourceAccess but admin consent is not granted"
        if configured
        else "neither configured nor granted"
    )
    held = ", ".join(
        f"{permission_name(g, resource) or g.app_role_id} on {g.resource_display_name}" for g in app_role_grants
    )
    assert granted, (
        f"service principal {principal.object_id} of app {principal.app_id} has no grant of Exchange.ManageAsApp "
        f"on {resource.display_name} ({resource.object_id}): {state}; "
        + (f"it holds {held}" if held else "it holds no application permission grants")
        + f"; expected an appRoleAssignment for appRoleId {wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID}"
    )


@pytest.mark.requirement("CBA-PERM-004")
def test_full_access_as_app_not_granted(
    app_sp: ServicePrincipal | None,
    exchange_sp: ServicePrincipal | None,
    app_role_grants: tuple[AppRoleAssignment, ...],
    evidence: Evidence,
) -> None:
    """full_access_as_app is not granted

    full_access_as_app opens every mailbox over EWS; Exchange administration through
    Exchange.ManageAsApp never needs it.
    """
    principal = require(app_sp, "CBA-APP-002", NO_SP)
    full_access = [
        grant
        for grant in app_role_grants
        if grant.app_role_id == wellknown.FULL_ACCESS_AS_APP_ROLE_ID
        and (exchange_sp is None or grant.resource_id == exchange_sp.object_id)
    ]
    evidence.observed(
        "appRoleAssignments", [_grant_summary(g, permission_name(g, exchange_sp)) for g in app_role_grants]
    )
    evidence.expected(f"no appRoleAssignment for appRoleId {wellknown.FULL_ACCESS_AS_APP_ROLE_ID} (full_access_as_app)")
    assert not full_access, (
        f"service principal {principal.object_id} of app {principal.app_id} is granted full_access_as_app "
        f"(assignment {', '.join(g.id for g in full_access)} on {full_access[0].resource_display_name}), "
        "full mailbox access over EWS; expected no such grant"
    )


@pytest.mark.requirement("CBA-PERM-005")
def test_no_permissions_beyond_allowed_list(
    app_sp: ServicePrincipal | None,
    exchange_sp: ServicePrincipal | None,
    app_role_grants: tuple[AppRoleAssignment, ...],
    cba_settings: Settings,
    evidence: Evidence,
) -> None:
    """No application permissions beyond the allowed list

    Every application permission is standing access nobody signs in for; anything the automation
    does not need (Graph permissions included) widens what a stolen certificate can do.
    """
    principal = require(app_sp, "CBA-APP-002", NO_SP)
    allowed = {item.lower() for item in cba_settings.allowed_permissions}
    findings: list[str] = []
    summaries = []
    for grant in app_role_grants:
        if grant.app_role_id == DEFAULT_ACCESS_ROLE_ID:
            continue
        value = permission_name(grant, exchange_sp)
        summaries.append(_grant_summary(grant, value))
        if (value is not None and value.lower() in allowed) or grant.app_role_id.lower() in allowed:
            continue
        findings.append(
            f"{value} on {grant.resource_display_name}"
            if value
            else f"{grant.resource_display_name} role {grant.app_role_id}"
        )
    evidence.observed("appRoleAssignments", summaries)
    evidence.add("allowed_permissions", list(cba_settings.allowed_permissions))
    evidence.expected("only grants whose permission is in allowed_permissions")
    assert not findings, (
        f"service principal {principal.object_id} of app {principal.app_id} holds {len(findings)} application "
        f"permission(s) outside allowed_permissions: {'; '.join(findings)}; expected only "
        f"{', '.join(cba_settings.allowed_permissions) or 'none'}"
    )
