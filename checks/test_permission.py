"""Link 4, Exchange.ManageAsApp: configured, granted, and nothing more (CBA-PERM-*)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from cbacheck import profiles, wellknown
from cbacheck.chain import cannot_verify, require
from cbacheck.config import Settings
from cbacheck.facts import AppRegistration, AppRoleAssignment, ServicePrincipal, TenantFacts
from cbacheck.profiles import Permission, Profile

if TYPE_CHECKING:
    from cbacheck.evidence import Evidence

NO_APP = "the app registration does not exist"
NO_SP = "the app has no service principal to hold grants"
NO_EXCHANGE_SP = "the tenant has no Office 365 Exchange Online service principal to grant on"
NO_RESOURCE_SP = "the tenant has no {} service principal to grant on"
# The app role id of an assignment that grants no particular role (default access).
DEFAULT_ACCESS_ROLE_ID = "00000000-0000-0000-0000-000000000000"
DEFAULT_OWNER = f"(profile {profiles.DEFAULT})"
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


def permission_name(
    grant: AppRoleAssignment, exchange_sp: ServicePrincipal | None, others: tuple[ServicePrincipal, ...] = ()
) -> str | None:
    """The permission's value (e.g. Exchange.ManageAsApp), or None when cbacheck cannot resolve it.

    Exchange roles resolve through the Exchange SP's appRoles as collected; Graph roles through the
    well-known table, since the Graph SP's appRoles are not collected; the profiles' other resources
    (Microsoft Exchange Online Protection) through their SP when collected, or their known role ids.
    """
    resource = next((sp for sp in others if sp.object_id == grant.resource_id), None)
    if resource is not None and resource.role_value(grant.app_role_id):
        return resource.role_value(grant.app_role_id)
    known = _known_permission(grant, others)
    if known is not None:
        return known.value
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
    # Another profile's check names Office 365 Exchange Online's grants by their known role ids.
    if grant.resource_display_name == wellknown.EXCHANGE_ONLINE_DISPLAY_NAME:
        return profiles.KNOWN_PERMISSION_NAMES.get((wellknown.EXCHANGE_ONLINE_APP_ID, grant.app_role_id))
    return None


def _known_permission(grant: AppRoleAssignment, others: tuple[ServicePrincipal, ...]) -> Permission | None:
    """A profile's permission on a resource other than Office 365 Exchange Online, known by its role id."""
    resource = next((sp for sp in others if sp.object_id == grant.resource_id), None)
    for permission in (p.permission for p in profiles.PROFILES.values()):
        if (
            permission.resource_app_id == wellknown.EXCHANGE_ONLINE_APP_ID
            or grant.app_role_id != permission.app_role_id
        ):
            continue
        if (resource is not None and resource.app_id == permission.resource_app_id) or (
            resource is None and grant.resource_display_name == permission.resource_display_name
        ):
            return permission
    return None


def _role_id(profile: Profile, resource_sp: ServicePrincipal | None) -> str | None:
    """The profile's app role id: published, or found by value among the resource SP's appRoles."""
    if profile.permission.app_role_id is not None:
        return profile.permission.app_role_id
    return resource_sp.role_id(profile.permission.value) if resource_sp is not None else None


def _exchange_request_text(requested: list[dict[str, str]], permission: Permission, role_id: str) -> str:
    """What the app asks of the profile's resource when it is not the profile's application permission."""
    if any(item["id"] == role_id for item in requested):
        return f"{permission.value} as a delegated permission (type Scope)"
    if requested:
        # A permission cbacheck knows by id is named (Exchange.ManageAsApp where the Admin API needs ManageAsAppV2).
        names = [profiles.KNOWN_PERMISSION_NAMES.get((permission.resource_app_id, i["id"].lower())) for i in requested]
        text = "other Exchange permissions: " + ", ".join(
            f"{name + ' ' if name else ''}{i['id']} ({i['type']})" for name, i in zip(names, requested, strict=True)
        )
        if all(names):
            return text
        # A wrong id shows when consent is granted (AADSTS650051 "Claim is invalid"), not in a token request.
        return (
            text + f" (an id that is not an app role of {permission.resource_display_name} makes admin consent fail "
            "with AADSTS650051)"
        )
    return f"no {permission.resource_display_name} permission"


@pytest.mark.requirement("CBA-PERM-001")
def test_exchange_service_principal_exists(
    resource_sp: ServicePrincipal | None, tenant_facts: TenantFacts, cba_profile: Profile, evidence: Evidence
) -> None:
    """The Office 365 Exchange Online service principal exists in the tenant

    Consent and tokens for Exchange need the resource's service principal in this tenant. Microsoft
    documents that it appears once an app's manifest requests Exchange.ManageAsApp and consent is
    granted; a tenant without an Exchange Online subscription has none either. Without it tokens fail
    with AADSTS500011. Each profile names its resource (Security & Compliance: Microsoft Exchange
    Online Protection).
    """
    permission = cba_profile.permission
    role_id = _role_id(cba_profile, resource_sp)
    evidence.expected(f"a service principal with appId {permission.resource_app_id}")
    evidence.observed(
        f"{'Exchange' if cba_profile.name == profiles.DEFAULT else permission.resource_display_name} service principal",
        None
        if resource_sp is None
        else {
            "id": resource_sp.object_id,
            "appId": resource_sp.app_id,
            "displayName": resource_sp.display_name,
            f"has {permission.value} role": role_id is not None and resource_sp.role_value(role_id) is not None,
        },
    )
    assert resource_sp is not None, (
        f"tenant {tenant_facts.tenant} has no {permission.resource_display_name} service principal "
        f"(appId {permission.resource_app_id}); expected one: tokens for Exchange fail with AADSTS500011 "
        f"InvalidResourceServicePrincipalNotFound until it exists. Add {permission.value} to the app's manifest "
        "and grant admin consent, which makes it appear; if it does not, check the Exchange Online subscription"
    )


@pytest.mark.requirement("CBA-PERM-002")
def test_exchange_manage_as_app_configured(
    app: AppRegistration | None,
    tenant_facts: TenantFacts,
    cba_profile: Profile,
    cba_settings: Settings,
    evidence: Evidence,
) -> None:
    """The app requests Exchange.ManageAsApp (configured)

    requiredResourceAccess is what the portal's API permissions page shows and what admin consent
    grants. It grants nothing by itself: CBA-PERM-003 checks the grant, CBA-TOKEN-002 the token.
    """
    application = require(app, "CBA-APP-001", NO_APP)
    permission, documented = profiles.permission_in(cba_profile, cba_settings.cloud)
    if not documented:
        # Checked as documented elsewhere, flagged for review: what this cloud needs is not documented.
        evidence.add(
            "cloud mapping",
            f"{permission.value} on {permission.resource_display_name} for cloud {cba_settings.cloud} is "
            "UNCONFIRMED: review it (docs/profiles.md)",
        )
    role_id = _role_id(cba_profile, tenant_facts.known_resource_sp(permission.resource_app_id))
    if role_id is None:
        cannot_verify(
            f"the app role id of {permission.value}",
            f"it is not published and the {permission.resource_display_name} service principal lists no such role",
        )
    exchange_entries = [
        resource
        for resource in application.required_resource_access
        if resource.resource_app_id == permission.resource_app_id
    ]
    requested = [{"id": access.id, "type": access.type} for resource in exchange_entries for access in resource.access]
    evidence.observed(
        "requiredResourceAccess",
        [
            {"resourceAppId": r.resource_app_id, "resourceAccess": [{"id": a.id, "type": a.type} for a in r.access]}
            for r in application.required_resource_access
        ],
    )
    evidence.expected(f"resourceAppId {permission.resource_app_id} with resourceAccess {{id: {role_id}, type: Role}}")
    assert application.requests_app_role(permission.resource_app_id, role_id), (
        f"app {application.app_id} requests {_exchange_request_text(requested, permission, role_id)}; expected the "
        f"application permission {permission.value} ({role_id}, type Role) on {permission.resource_display_name}"
    )


@pytest.mark.requirement("CBA-PERM-003")
def test_exchange_manage_as_app_granted(
    app: AppRegistration | None,
    app_sp: ServicePrincipal | None,
    resource_sp: ServicePrincipal | None,
    app_role_grants: tuple[AppRoleAssignment, ...],
    cba_profile: Profile,
    evidence: Evidence,
) -> None:
    """Admin consent for Exchange.ManageAsApp is granted

    Consent is an appRoleAssignment from the app's service principal to the Exchange service
    principal for role dc50a0fb-...; a manifest line without it is "Not granted" in the portal
    and Exchange refuses the token. Each profile names its resource and role.
    """
    principal = require(app_sp, "CBA-APP-002", NO_SP)
    permission = cba_profile.permission
    resource = require(resource_sp, "CBA-PERM-001", NO_RESOURCE_SP.format(permission.resource_display_name))
    role_id = _role_id(cba_profile, resource)
    if role_id is None:
        cannot_verify(f"the app role id of {permission.value}", f"{resource.display_name} lists no such app role")
    granted = [g for g in app_role_grants if g.resource_id == resource.object_id and g.app_role_id == role_id]
    evidence.observed("appRoleAssignments", [_grant_summary(g, permission_name(g, resource)) for g in app_role_grants])
    evidence.expected(
        f"an appRoleAssignment principalId {principal.object_id} -> resourceId {resource.object_id} "
        f"appRoleId {role_id} ({permission.value})"
    )
    configured = app is not None and app.requests_app_role(permission.resource_app_id, role_id)
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
        f"service principal {principal.object_id} of app {principal.app_id} has no grant of {permission.value} "
        f"on {resource.display_name} ({resource.object_id}): {state}; "
        + (f"it holds {held}" if held else "it holds no application permission grants")
        + f"; expected an appRoleAssignment for appRoleId {role_id}"
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


def _profile_of_permission(
    grant: AppRoleAssignment,
    name: str | None,
    exchange_sp: ServicePrincipal | None,
    others: tuple[ServicePrincipal, ...],
) -> list[str]:
    """The profiles whose permission this grant is (Exchange.ManageAsAppV2, the EOP permission, ...)."""
    known = _known_permission(grant, others)
    on_exchange = exchange_sp is not None and grant.resource_id == exchange_sp.object_id
    return [
        profile.name
        for profile in profiles.PROFILES.values()
        if profile.permission == known
        or (
            on_exchange
            and profile.permission.resource_app_id == wellknown.EXCHANGE_ONLINE_APP_ID
            and name == profile.permission.value
        )
    ]


@pytest.mark.requirement("CBA-PERM-005")
def test_no_permissions_beyond_allowed_list(
    app_sp: ServicePrincipal | None,
    exchange_sp: ServicePrincipal | None,
    app_role_grants: tuple[AppRoleAssignment, ...],
    tenant_facts: TenantFacts,
    cba_settings: Settings,
    evidence: Evidence,
) -> None:
    """No application permissions beyond the allowed list

    Every application permission is standing access nobody signs in for; anything the automation
    does not need (Graph permissions included) widens what a stolen certificate can do. The permission
    of each profile checked is never extra; another profile's is named as a known Exchange permission.
    On a resource other than Office 365 Exchange Online a name in allowed_permissions does not allow it
    (Exchange.ManageAsApp is also the EOP permission's name): its app role id does.
    """
    principal = require(app_sp, "CBA-APP-002", NO_SP)
    allowed = {item.lower() for item in cba_settings.allowed_permissions}
    others = tuple(sp for sp in tenant_facts.resource_sps.values() if isinstance(sp, ServicePrincipal))
    findings: list[str] = []
    summaries = []
    known: list[str] = []
    for grant in app_role_grants:
        if grant.app_role_id == DEFAULT_ACCESS_ROLE_ID:
            continue
        value = permission_name(grant, exchange_sp, others)
        summaries.append(_grant_summary(grant, value))
        owners = _profile_of_permission(grant, value, exchange_sp, others)
        if owners:
            known.append(f"{value} on {grant.resource_display_name} (profile {', '.join(owners)})")
        if any(owner in cba_settings.profile for owner in owners) or grant.app_role_id.lower() in allowed:
            continue
        by_name = _known_permission(grant, others) is None
        if by_name and value is not None and value.lower() in allowed:
            continue
        findings.append(
            f"{value} on {grant.resource_display_name}"
            + (
                f" (a known Exchange permission of profile {', '.join(owners)}, not checked in this run)"
                if owners
                else ""
            )
            if value
            else f"{grant.resource_display_name} role {grant.app_role_id}"
        )
    evidence.observed("appRoleAssignments", summaries)
    evidence.add("allowed_permissions", list(cba_settings.allowed_permissions))
    if cba_settings.profile != (profiles.DEFAULT,) or any(not text.endswith(DEFAULT_OWNER) for text in known):
        # Shown when a profile beyond the default is in play, so a default run's evidence stays as it was.
        evidence.add("known Exchange permissions", known)
        evidence.add("profiles checked", list(cba_settings.profile))
    evidence.expected("only grants whose permission is in allowed_permissions")
    assert not findings, (
        f"service principal {principal.object_id} of app {principal.app_id} holds {len(findings)} application "
        f"permission(s) outside allowed_permissions: {'; '.join(findings)}; expected only "
        f"{', '.join(cba_settings.allowed_permissions) or 'none'}"
    )
