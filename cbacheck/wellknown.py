"""Well-known Microsoft identifiers, national-cloud endpoints and documented texts, kept in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# --- Resource applications (appId is the same in every tenant; object ids are not) -------------
EXCHANGE_ONLINE_APP_ID: Final = "00000002-0000-0ff1-ce00-000000000000"
EXCHANGE_ONLINE_DISPLAY_NAME: Final = "Office 365 Exchange Online"
MICROSOFT_GRAPH_APP_ID: Final = "00000003-0000-0000-c000-000000000000"
MICROSOFT_GRAPH_DISPLAY_NAME: Final = "Microsoft Graph"
# The audience Graph's addKey proof-of-possession token names (Azure AD Graph).
AAD_GRAPH_APP_ID: Final = "00000002-0000-0000-c000-000000000000"

# --- App roles on Office 365 Exchange Online --------------------------------------------------
EXCHANGE_MANAGE_AS_APP_ROLE_ID: Final = "dc50a0fb-09a3-484d-be87-e023b12c6440"
EXCHANGE_MANAGE_AS_APP: Final = "Exchange.ManageAsApp"
FULL_ACCESS_AS_APP_ROLE_ID: Final = "dc890d15-9560-4a4c-9b7f-a736ec74ec40"
FULL_ACCESS_AS_APP: Final = "full_access_as_app"

# --- Microsoft Exchange Online Protection (Security & Compliance PowerShell's resource) --------
# https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2 ("Modify the app manifest",
# the requiredResourceAccess note for GCC High and DoD): resourceAppId and the Exchange.ManageAsApp role id.
EOP_APP_ID: Final = "00000007-0000-0ff1-ce00-000000000000"
EOP_DISPLAY_NAME: Final = "Microsoft Exchange Online Protection"  # UNCONFIRMED in Microsoft's docs (docs/profiles.md)
EOP_MANAGE_AS_APP_ROLE_ID: Final = "455e5cd2-84e8-4751-8344-5672145dfa17"
# Security & Compliance PowerShell's admin endpoint, the token audience asked for it, and the read-only cmdlet
# that proves the chain (profiles.py and the sandbox read them here). All UNCONFIRMED (docs/sandbox.md): Microsoft
# documents Connect-IPPSSession (https://learn.microsoft.com/powershell/module/exchangepowershell/connect-ippssession),
# not its REST endpoint; the same admin API path as Exchange Online's is assumed.
SECURITY_COMPLIANCE_HOST: Final = "ps.compliance.protection.outlook.com"
SECURITY_COMPLIANCE_RESOURCE: Final = f"https://{SECURITY_COMPLIANCE_HOST}"
SECURITY_COMPLIANCE_PROBE_CMDLET: Final = "Get-Label"
# GCC High's Security & Compliance host is documented (Connect-IPPSSession -ConnectionUri
# https://ps.compliance.protection.office365.us/powershell-liveid/); that a token is asked for it as its audience
# is UNCONFIRMED as in the global cloud (docs/profiles.md).
SECURITY_COMPLIANCE_HOST_GCCHIGH: Final = "ps.compliance.protection.office365.us"
SECURITY_COMPLIANCE_RESOURCE_GCCHIGH: Final = f"https://{SECURITY_COMPLIANCE_HOST_GCCHIGH}"
# The Admin API preview's permission on Office 365 Exchange Online; its app role id is UNCONFIRMED (not
# published where cbacheck could read it), so cbacheck resolves it by value through the SP's appRoles.
EXCHANGE_MANAGE_AS_APP_V2: Final = "Exchange.ManageAsAppV2"

# --- Directory role templates (the same in every tenant) --------------------------------------
# https://learn.microsoft.com/entra/identity/role-based-access-control/permissions-reference
EXCHANGE_ADMINISTRATOR: Final = "29232cdf-9323-42fd-ade2-1d097af3e4de"
EXCHANGE_RECIPIENT_ADMINISTRATOR: Final = "31392ffb-586c-42d1-9346-e59415a2cc4e"
GLOBAL_ADMINISTRATOR: Final = "62e90394-69f5-4237-9190-012177145e10"
GLOBAL_READER: Final = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
SECURITY_READER: Final = "5d6b6bb7-de71-4623-b4af-96380a352509"
SECURITY_ADMINISTRATOR: Final = "194ae4cb-b126-40b2-bd5b-6091b380977d"
COMPLIANCE_ADMINISTRATOR: Final = "17315797-102d-40b4-93e0-432062caca18"
HELPDESK_ADMINISTRATOR: Final = "729827e3-9c14-49f7-bb1b-9608f156bbb8"
APPLICATION_ADMINISTRATOR: Final = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
CLOUD_APPLICATION_ADMINISTRATOR: Final = "158c047a-c907-4556-b7ef-446551a6b5f7"
# The template id Microsoft publishes in the permissions reference
# (https://learn.microsoft.com/entra/identity/role-based-access-control/permissions-reference#privileged-role-administrator).
PRIVILEGED_ROLE_ADMINISTRATOR: Final = "e8611ab8-c189-46e8-94e1-60213ab1f814"

DIRECTORY_ROLE_NAMES: Final[dict[str, str]] = {
    EXCHANGE_ADMINISTRATOR: "Exchange Administrator",
    EXCHANGE_RECIPIENT_ADMINISTRATOR: "Exchange Recipient Administrator",
    GLOBAL_ADMINISTRATOR: "Global Administrator",
    GLOBAL_READER: "Global Reader",
    SECURITY_READER: "Security Reader",
    SECURITY_ADMINISTRATOR: "Security Administrator",
    COMPLIANCE_ADMINISTRATOR: "Compliance Administrator",
    HELPDESK_ADMINISTRATOR: "Helpdesk Administrator",
    APPLICATION_ADMINISTRATOR: "Application Administrator",
    CLOUD_APPLICATION_ADMINISTRATOR: "Cloud Application Administrator",
    PRIVILEGED_ROLE_ADMINISTRATOR: "Privileged Role Administrator",
}

# Entra roles Exchange Online accepts for app-only sign-in (Exchange Online PowerShell column of
# the table in "App-only authentication for unattended scripts", Step 5).
EXCHANGE_SUPPORTED_ROLES: Final = frozenset(
    {
        COMPLIANCE_ADMINISTRATOR,
        EXCHANGE_ADMINISTRATOR,
        EXCHANGE_RECIPIENT_ADMINISTRATOR,
        GLOBAL_ADMINISTRATOR,
        GLOBAL_READER,
        HELPDESK_ADMINISTRATOR,
        SECURITY_ADMINISTRATOR,
        SECURITY_READER,
    }
)
# Roles that grant far more than Exchange automation needs (CBA-ROLE-002 findings).
OVER_PRIVILEGED_ROLES: Final = frozenset({GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR})

# --- Microsoft Graph application permissions (app role ids on the Microsoft Graph SP) ----------
# The ids Microsoft's Graph permissions reference lists (https://learn.microsoft.com/graph/permissions-reference).
# A real tenant's Graph service principal is the authority: cbacheck resolves names through its
# appRoles at run time where it can.
GRAPH_PERMISSION_IDS: Final[dict[str, str]] = {
    "Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
    "Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
    "AppRoleAssignment.ReadWrite.All": "06b708a9-e830-4db3-a914-8e69da51d44f",
    "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
    "Directory.ReadWrite.All": "19dbc75e-c2e2-444c-a770-ec69d8559fc7",
    "Domain.Read.All": "dbb9058a-0e50-45d7-ae91-66909b5d4664",
    "Organization.Read.All": "498476ce-e0fe-48b0-b801-37ba7e2685c6",
    "RoleManagement.Read.Directory": "483bed4a-2ad3-4361-a73b-c83ccdbdc53c",
    "RoleManagement.ReadWrite.Directory": "9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8",
    "RoleEligibilitySchedule.Read.Directory": "ff278e11-4a33-4d0c-83d2-d01dc58929a5",
    # Optional reads of `cbacheck audit`: last sign-in (AuditLog) and the default app management policy.
    "AuditLog.Read.All": "b0afded3-3588-46d8-8b3d-9842eff778da",
    "Policy.Read.All": "246dd0d5-5bd0-4def-940b-0421030a5b68",
}

# Least-privileged Graph application permissions cbacheck's identities need (docs/permissions.md).
AUDITOR_PERMISSIONS: Final = (
    "Application.Read.All",
    "RoleManagement.Read.Directory",
    "Organization.Read.All",
)
ADMIN_PERMISSIONS: Final = (
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "RoleManagement.ReadWrite.Directory",
)

# --- Exchange admin API ----------------------------------------------------------------------
# Anchor mailbox CIPP sends for app-only calls (UNCONFIRMED which forms Exchange requires).
EXCHANGE_ANCHOR_MAILBOX: Final = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}"
EXCHANGE_ROLE_NOT_SUPPORTED: Final = (
    "The role assigned to application {app_id} isn't supported in this scenario. Please check "
    "online documentation for assigning correct Directory Roles to Azure AD Application for EXO "
    "App-Only Authentication."
)
EXCHANGE_CMDLET_NOT_ALLOWED: Final = "User is not allowed to call {cmdlet}"

CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class Cloud:
    """Endpoints of one Microsoft cloud; the Exchange resource is what the token is asked for."""

    name: str
    login_url: str
    graph_url: str
    exchange_url: str
    exchange_resource: str
    graph_resource: str
    portal_url: str
    initial_domain_suffix: str
    # Security & Compliance PowerShell's host in this cloud (its Connect-IPPSSession -ConnectionUri,
    # https://learn.microsoft.com/powershell/module/exchangepowershell/connect-ippssession) and the token
    # audience asked for it ("" where this version does not ask: UNCONFIRMED, docs/profiles.md).
    compliance_url: str = ""
    compliance_resource: str = ""
    # The Exchange Online Admin API's token resource ("" where this version does not ask: UNCONFIRMED outside the
    # global cloud and GCC, docs/profiles.md; https://learn.microsoft.com/exchange/reference/admin-api-authentication).
    admin_api_resource: str = ""


# National clouds: https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud and
# https://learn.microsoft.com/graph/deployments.
# The Exchange resource for gcchigh, dod and china is UNCONFIRMED (third-party code only).
CLOUDS: Final[dict[str, Cloud]] = {
    "global": Cloud(
        "global",
        "https://login.microsoftonline.com",
        "https://graph.microsoft.com",
        "https://outlook.office365.com",
        "https://outlook.office365.com",
        "https://graph.microsoft.com",
        "https://entra.microsoft.com",
        ".onmicrosoft.com",
        compliance_url="https://ps.compliance.protection.outlook.com",
        compliance_resource=SECURITY_COMPLIANCE_RESOURCE,
        admin_api_resource="https://outlook.office365.com",
    ),
    "gcc": Cloud(
        "gcc",
        "https://login.microsoftonline.com",
        "https://graph.microsoft.com",
        "https://outlook.office365.com",
        "https://outlook.office365.com",
        "https://graph.microsoft.com",
        "https://entra.microsoft.com",
        ".onmicrosoft.com",
        compliance_url="https://ps.compliance.protection.outlook.com",
        compliance_resource=SECURITY_COMPLIANCE_RESOURCE,
        admin_api_resource="https://outlook.office365.com",
    ),
    "gcchigh": Cloud(
        "gcchigh",
        "https://login.microsoftonline.us",
        "https://graph.microsoft.us",
        "https://outlook.office365.us",
        "https://outlook.office365.us",
        "https://graph.microsoft.us",
        "https://entra.microsoft.us",
        ".onmicrosoft.us",
        compliance_url="https://ps.compliance.protection.office365.us",
        compliance_resource=SECURITY_COMPLIANCE_RESOURCE_GCCHIGH,
    ),
    "dod": Cloud(
        "dod",
        "https://login.microsoftonline.us",
        "https://dod-graph.microsoft.us",
        "https://webmail.apps.mil",
        "https://webmail.apps.mil",
        "https://dod-graph.microsoft.us",
        "https://entra.microsoft.us",
        ".onmicrosoft.us",
        compliance_url="https://l5.ps.compliance.protection.office365.us",
        compliance_resource="",
    ),
    "china": Cloud(
        "china",
        "https://login.partner.microsoftonline.cn",
        "https://microsoftgraph.chinacloudapi.cn",
        "https://partner.outlook.cn",
        "https://partner.outlook.cn",
        "https://microsoftgraph.chinacloudapi.cn",
        "https://entra.microsoftonline.cn",
        ".partner.onmschina.cn",
        compliance_url="https://ps.compliance.protection.partner.outlook.cn",
        compliance_resource="",
    ),
}

# --- Tenant audit (cbacheck audit) ------------------------------------------------------------
# Exchange Online Protection's resource service principal, which also offers Exchange.ManageAsApp
# (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2).
EXCHANGE_ONLINE_PROTECTION_APP_ID: Final = EOP_APP_ID
# App role values that let a principal act on Exchange Online as itself, per resource appId; matched by
# value against the resource service principal's appRoles, so renamed ids in a tenant are still found.
AUDIT_EXCHANGE_ROLES: Final[dict[str, frozenset[str]]] = {
    EXCHANGE_ONLINE_APP_ID: frozenset({EXCHANGE_MANAGE_AS_APP, EXCHANGE_MANAGE_AS_APP_V2, FULL_ACCESS_AS_APP}),
    EXCHANGE_ONLINE_PROTECTION_APP_ID: frozenset({EXCHANGE_MANAGE_AS_APP}),
}
# Graph application permissions over every mailbox's mail, calendar or contacts
# (https://learn.microsoft.com/graph/permissions-reference).
GRAPH_MAILBOX_PREFIXES: Final = ("Mail.", "Calendars.", "Contacts.", "MailboxSettings.")
GRAPH_MAILBOX_PERMISSION_IDS: Final[dict[str, str]] = {
    "Mail.Read": "810c84a8-4a9e-49e6-bf7d-12d183f40d01",
    "Mail.ReadWrite": "e2a3a72e-5f79-4c64-b1b1-878b674786c9",
    "Mail.Send": "b633e1c5-b582-4048-a93e-9f11b44c7e96",
    "Calendars.Read": "798ee544-9d2d-430c-a058-570e29e34338",
    "Calendars.ReadWrite": "ef54d2bf-783f-4e0f-bca1-3210c0444d99",
    "Contacts.Read": "089fe4d0-434a-44c5-8827-41ba8a0b17f5",
    "Contacts.ReadWrite": "6918b873-d17a-4dc1-b314-35f528134491",
}
# RBAC for Applications (https://learn.microsoft.com/exchange/permissions-exo/application-rbac): "Application roles"
# ("Application Mail.Read", "Application Calendars.ReadWrite", ...) are management roles assignable only to a service
# principal pointer, with a management scope or an administrative unit. The audit lists such grants under this label.
RBAC_FOR_APPLICATIONS: Final = "RBAC for Applications"
APPLICATION_ROLE_PREFIX: Final = "Application "
