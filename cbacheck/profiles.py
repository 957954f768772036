"""The chains cbacheck can prove (profiles) as data: resource, permission, supported roles, probe, texts, domains."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit

from cbacheck import wellknown

EXCHANGE_ONLINE: Final = "exchange-online"
SECURITY_COMPLIANCE: Final = "security-compliance"
EXCHANGE_ADMIN_API: Final = "exchange-admin-api"
DEFAULT: Final = EXCHANGE_ONLINE

# The resources' identifiers live in wellknown (the sandbox reads them there too).
EOP_APP_ID: Final = wellknown.EOP_APP_ID
EOP_DISPLAY_NAME: Final = wellknown.EOP_DISPLAY_NAME
EOP_MANAGE_AS_APP_ROLE_ID: Final = wellknown.EOP_MANAGE_AS_APP_ROLE_ID
EXCHANGE_MANAGE_AS_APP_V2: Final = wellknown.EXCHANGE_MANAGE_AS_APP_V2

# Security & Compliance PowerShell column of the supported-roles table
# (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2, Step 5): no Exchange
# Administrator, Exchange Recipient Administrator or Helpdesk Administrator.
SECURITY_COMPLIANCE_SUPPORTED_ROLES: Final = frozenset(
    {
        wellknown.COMPLIANCE_ADMINISTRATOR,
        wellknown.GLOBAL_ADMINISTRATOR,
        wellknown.GLOBAL_READER,
        wellknown.SECURITY_ADMINISTRATOR,
        wellknown.SECURITY_READER,
    }
)


@dataclass(frozen=True)
class Permission:
    """One application permission (app role) on one resource application."""

    resource_app_id: str
    resource_display_name: str
    value: str
    app_role_id: str | None  # None: not published; resolved through the resource SP's appRoles
    confirmed: bool = True


@dataclass(frozen=True)
class Profile:
    """One chain cbacheck proves: what the app must hold, which roles Microsoft documents, how it is probed."""

    name: str
    title: str
    permission: Permission
    supported_roles: frozenset[str]
    least_privileged_role: str
    # The read-only cmdlet that proves the chain, and the endpoint host it is sent to (global cloud).
    probe_cmdlet: str
    endpoint: str
    # Hosts a redirect may lead to (the profile's service domains); anything else is refused.
    service_domains: tuple[str, ...]
    role_not_supported_text: str
    # The app's RBAC in this profile's service is read: Exchange's through the Exchange admin API
    # (Get-ServicePrincipal, role groups, assignments), or, with own_role_groups, the service's own role groups
    # through its endpoint with the auditor's token for its resource (Get-ServicePrincipal, Get-RoleGroup).
    exchange_rbac_collected: bool = True
    own_role_groups: bool = False
    # Where that RBAC lives (messages) and what the auditor needs to read it (an error's missing permission).
    rbac_service: str = "Exchange"
    rbac_grant: str = "an Exchange role group membership or management role assignment"
    auditor_rbac_needs: str = (
        "Exchange.ManageAsApp and View-Only Organization Management (or Global Reader) for the auditor"
    )
    # What this version collects for the profile through the default chain's facts (exchange-online only);
    # another profile's token, and its probe, are collected when it names the resource to ask for (global
    # cloud, GCC and GCC High: `Cloud.compliance_resource`; the Admin API: `Cloud.admin_api_resource`).
    token_and_probe_collected: bool = False
    token_resource: str = ""  # the audience in the global cloud (shown in docs and tests); per cloud: the field below
    # Another profile's probe (its token's resource named): sent to {its cloud endpoint}{probe_path}. The cloud
    # field naming that endpoint (overridden by the setting of the same name: the sandbox, a test proxy), and the
    # one naming its token's resource ("": this version asks for no token of its own).
    probe_path: str = "/adminapi/beta/{tenant}/InvokeCommand"
    endpoint_field: str = "exchange_url"
    token_resource_field: str = ""
    unconfirmed: tuple[str, ...] = ()

    @property
    def rbac_key(self) -> str:
        """How TenantFacts names this profile's RBAC: its name when its role groups are its own, "" for Exchange's."""
        return self.name if self.own_role_groups else ""

    @property
    def probe_key(self) -> str:
        """How TenantFacts names this profile's probe: "" for the Exchange probe of the default chain's facts."""
        return "" if self.token_and_probe_collected else self.name


EXCHANGE_ONLINE_PERMISSION: Final = Permission(
    wellknown.EXCHANGE_ONLINE_APP_ID,
    wellknown.EXCHANGE_ONLINE_DISPLAY_NAME,
    wellknown.EXCHANGE_MANAGE_AS_APP,
    wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
)
EOP_PERMISSION: Final = Permission(
    EOP_APP_ID, EOP_DISPLAY_NAME, wellknown.EXCHANGE_MANAGE_AS_APP, EOP_MANAGE_AS_APP_ROLE_ID
)
ADMIN_API_PERMISSION: Final = Permission(
    wellknown.EXCHANGE_ONLINE_APP_ID,
    wellknown.EXCHANGE_ONLINE_DISPLAY_NAME,
    EXCHANGE_MANAGE_AS_APP_V2,
    None,
    confirmed=False,
)

PROFILES: Final[dict[str, Profile]] = {
    EXCHANGE_ONLINE: Profile(
        EXCHANGE_ONLINE,
        "Exchange Online PowerShell (Connect-ExchangeOnline)",
        EXCHANGE_ONLINE_PERMISSION,
        wellknown.EXCHANGE_SUPPORTED_ROLES,
        wellknown.EXCHANGE_RECIPIENT_ADMINISTRATOR,
        "Get-OrganizationConfig",
        "outlook.office365.com",
        ("outlook.office365.com", "outlook.office.com"),
        wellknown.EXCHANGE_ROLE_NOT_SUPPORTED,
        token_and_probe_collected=True,
    ),
    SECURITY_COMPLIANCE: Profile(
        SECURITY_COMPLIANCE,
        "Security & Compliance PowerShell (Connect-IPPSSession)",
        EOP_PERMISSION,
        SECURITY_COMPLIANCE_SUPPORTED_ROLES,
        wellknown.COMPLIANCE_ADMINISTRATOR,
        wellknown.SECURITY_COMPLIANCE_PROBE_CMDLET,
        wellknown.SECURITY_COMPLIANCE_HOST,
        # The reported redirect to a regional host (eur05b.ps.compliance.protection.outlook.com) stays in it.
        (wellknown.SECURITY_COMPLIANCE_HOST,),
        wellknown.EXCHANGE_ROLE_NOT_SUPPORTED,
        # Option 2 of the app-only article applies to Security & Compliance PowerShell too (New-ServicePrincipal,
        # Add-RoleGroupMember there; https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2
        # #option-2-assign-custom-role-groups-to-the-application-using-service-principals): its role groups are
        # its own, read through its endpoint. UNCONFIRMED: that Get-RoleGroup lists their Members there.
        own_role_groups=True,
        rbac_service="Security & Compliance",
        rbac_grant="a Security & Compliance role group membership",
        auditor_rbac_needs=(
            "Exchange.ManageAsApp on Microsoft Exchange Online Protection (admin consent) for the auditor, and its "
            "service principal pointer in a Security & Compliance role group that may run Get-ServicePrincipal and "
            "Get-RoleGroup, or the Entra role Global Reader"
        ),
        # The audience Connect-IPPSSession asks for: UNCONFIRMED (not documented); Entra resolves it through
        # the EOP service principal's wildcard name https://*.protection.outlook.com.
        token_resource=wellknown.SECURITY_COMPLIANCE_RESOURCE,
        endpoint_field="compliance_url",
        token_resource_field="compliance_resource",
        unconfirmed=(
            "the token audience and the REST endpoint of Security & Compliance PowerShell",
            "the redirect from ps.compliance.protection.outlook.com to a regional host",
            "the probe cmdlet Get-Label as the read-only proof",
            "the error texts of the Security & Compliance endpoint",
            "that Get-ServicePrincipal and Get-RoleGroup answer through that endpoint with the auditor's app-only "
            "token, and that Get-RoleGroup lists each group's Members there",
            "that a Security & Compliance role group membership of the app's service principal pointer authorises "
            "it like an Exchange role group does",
            "the token audience in GCC High (https://ps.compliance.protection.office365.us)",
        ),
    ),
    # The Exchange Online Admin API (preview), as Microsoft documents it: the app-only permission
    # Exchange.ManageAsAppV2 on Office 365 Exchange Online, a token for https://outlook.office365.com/.default, and
    # Exchange RBAC role groups (least privilege: View-Only Organization Management for /OrganizationConfig) or an
    # Entra role such as Exchange Administrator (https://learn.microsoft.com/exchange/reference/admin-api-authentication);
    # POST-only endpoints https://outlook.office365.com/adminapi/v2.0/<TenantID>/<EndpointName> with a CmdletInput body
    # (https://learn.microsoft.com/exchange/reference/admin-api-get-started,
    # https://learn.microsoft.com/exchange/reference/admin-api-endpoints-organization-config).
    EXCHANGE_ADMIN_API: Profile(
        EXCHANGE_ADMIN_API,
        "Exchange Online Admin API (preview)",
        ADMIN_API_PERMISSION,
        # The documented example of an Entra role for app-only access; which other roles Microsoft accepts is
        # UNCONFIRMED, and cbacheck never assigns one for this profile (RBAC is the least privilege).
        frozenset({wellknown.EXCHANGE_ADMINISTRATOR}),
        "",
        "Get-OrganizationConfig",
        "outlook.office365.com",
        ("outlook.office365.com", "outlook.office.com"),
        wellknown.EXCHANGE_ROLE_NOT_SUPPORTED,
        token_resource=wellknown.CLOUDS["global"].exchange_resource,
        probe_path="/adminapi/v2.0/{tenant}/OrganizationConfig",
        token_resource_field="admin_api_resource",
        unconfirmed=(
            "the app role id of Exchange.ManageAsAppV2 (resolved by value from the service principal's appRoles)",
            "which Entra roles besides Exchange Administrator authorise the Admin API",
            "the X-AnchorMailbox value of an app-only call (APP:SystemMailbox{...}@<TenantID>)",
            "the Admin API's answer envelope and its error bodies and statuses (only 403 without RBAC is documented)",
            "the Admin API's token resource outside the global cloud and GCC",
        ),
    ),
}
NAMES: Final = tuple(PROFILES)

# National clouds: which permission each profile needs there, and whether Microsoft documents it.
# GCC High and DoD "have access to Security & Compliance PowerShell only" and are documented with the
# EOP permission (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2, the
# requiredResourceAccess note); the same article still shows Connect-ExchangeOnline for them, so what
# exchange-online needs there is UNCONFIRMED. A permission whose cloud mapping is unconfirmed is never
# written by a fix: the plan gives a manual step instead.
_DOCUMENTED_IN_CLOUD: Final[dict[tuple[str, str], Permission]] = {
    (SECURITY_COMPLIANCE, "gcchigh"): EOP_PERMISSION,
    (SECURITY_COMPLIANCE, "dod"): EOP_PERMISSION,
}
_COMMERCIAL_CLOUDS: Final = ("global", "gcc")


def profile_named(name: str) -> Profile:
    """The profile of that name; KeyError names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(NAMES)}") from None


def permission_in(profile: Profile, cloud: str) -> tuple[Permission, bool]:
    """The permission the profile needs in that cloud, and whether Microsoft documents that mapping."""
    documented = _DOCUMENTED_IN_CLOUD.get((profile.name, cloud))
    if documented is not None:
        return documented, True
    return profile.permission, cloud in _COMMERCIAL_CLOUDS and profile.permission.confirmed


def token_resource_in(profile: Profile, cloud: str) -> str:
    """The resource another profile's token is asked for in that cloud ("" when this version does not ask)."""
    if not profile.token_resource_field:
        return ""
    resource: str = getattr(wellknown.CLOUDS[cloud], profile.token_resource_field)
    return resource


def probe_url_in(profile: Profile, endpoints: wellknown.Cloud, tenant_for_url: str) -> str:
    """Where another profile's probe is sent: its endpoint in the cloud, overrides applied (`Settings.cloud_endpoints`).

    Security & Compliance has its own override (compliance_url): an exchange_url override never redirects it.
    """
    base = str(getattr(endpoints, profile.endpoint_field)).rstrip("/")
    return base + profile.probe_path.format(tenant=quote(tenant_for_url, safe=".-"))


def service_domains_in(profile: Profile, cloud: str) -> tuple[str, ...]:
    """The hosts a redirect of the profile's probe may lead to: its service domains and its Microsoft host in the cloud
    (never an override's host)."""
    host = urlsplit(str(getattr(wellknown.CLOUDS[cloud], profile.endpoint_field))).hostname or ""
    return tuple(dict.fromkeys((*profile.service_domains, *((host,) if host else ()))))


def permissions_of(names: Iterable[str]) -> tuple[Permission, ...]:
    """The permissions the named profiles need (one each)."""
    return tuple(profile_named(name).permission for name in names)


# Exchange permissions cbacheck knows by id, so a grant is named even when its resource SP was not read.
KNOWN_PERMISSION_NAMES: Final[dict[tuple[str, str], str]] = {
    (wellknown.EXCHANGE_ONLINE_APP_ID, wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID): wellknown.EXCHANGE_MANAGE_AS_APP,
    (wellknown.EXCHANGE_ONLINE_APP_ID, wellknown.FULL_ACCESS_AS_APP_ROLE_ID): wellknown.FULL_ACCESS_AS_APP,
    (EOP_APP_ID, EOP_MANAGE_AS_APP_ROLE_ID): wellknown.EXCHANGE_MANAGE_AS_APP,
}
# Resource application ids whose permissions are "known Exchange permissions" (CBA-PERM-005 evidence).
EXCHANGE_RESOURCE_APP_IDS: Final = frozenset({wellknown.EXCHANGE_ONLINE_APP_ID, EOP_APP_ID})

# Requirements whose answer depends on the profile: reported once per profile checked. The others
# (certificate, app registration, keys, full_access_as_app, extra permissions, over-privilege, the
# -Organization value, the clock) are reported once, under the first profile checked.
PROFILE_DEPENDENT: Final = frozenset(
    {
        "CBA-PERM-001",
        "CBA-PERM-002",
        "CBA-PERM-003",
        "CBA-ROLE-001",
        "CBA-TOKEN-001",
        "CBA-TOKEN-002",
        "CBA-EXO-001",
    }
)


def qualified(req_id: str, profile: str) -> str:
    """The plan's name for a profile-dependent result of a profile other than the default (CBA-PERM-002@...)."""
    return req_id if profile == DEFAULT or req_id not in PROFILE_DEPENDENT else f"{req_id}@{profile}"


def failed_in(profile: str, failed: Iterable[str]) -> frozenset[str]:
    """The requirement IDs that failed for that profile, from a set of (possibly qualified) IDs."""
    suffix = f"@{profile}"
    return frozenset(item.removesuffix(suffix) for item in failed if item.endswith(suffix))
