"""The objects every real tenant has: the Exchange and Graph service principals and the built-in roles."""

from __future__ import annotations

from typing import Final

from cbacheck import wellknown
from cbacheck.sandbox.values import JsonObject, stable_guid

# Flags that switch off the objects below (a state document's "builtins").
BUILTIN_FLAGS: Final = ("exchangeServicePrincipal", "graphServicePrincipal", "roleDefinitions", "eopServicePrincipal")
# The app role id of Exchange.ManageAsAppV2 (the Exchange Admin API preview's permission) on the Office 365
# Exchange Online service principal: not published where it could be read, so the sandbox chooses one
# (UNCONFIRMED, docs/sandbox.md); cbacheck finds it by value, as a real tenant's appRoles would give it.
SANDBOX_MANAGE_AS_APP_V2_ROLE_ID: Final = "5e3f1b0a-7c42-4d8e-9a61-2b7c0d4e8f15"
# The Microsoft services tenant that owns first-party applications such as Exchange and Graph.
MICROSOFT_SERVICES_TENANT: Final = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"


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
                SANDBOX_MANAGE_AS_APP_V2_ROLE_ID,
                wellknown.EXCHANGE_MANAGE_AS_APP_V2,
                "Manage Exchange As Application (Admin API)",
                "Allows the app to call the Exchange Online Admin API without a signed-in user; what it may do is "
                "decided by the Exchange RBAC roles assigned to its service principal.",
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


def builtin_eop_sp(tenant_id: str) -> JsonObject:
    """The Microsoft Exchange Online Protection service principal: Security & Compliance PowerShell's resource.

    Its Exchange.ManageAsApp role id is documented
    (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2, the requiredResourceAccess
    note); its display name, servicePrincipalNames (with wildcard entries) and its other roles follow a
    public listing of a real tenant's service principal: UNCONFIRMED (docs/sandbox.md).
    """
    app_id = wellknown.EOP_APP_ID
    return {
        "id": stable_guid(tenant_id, app_id),
        "accountEnabled": True,
        "appDisplayName": wellknown.EOP_DISPLAY_NAME,
        "appId": app_id,
        "appOwnerOrganizationId": MICROSOFT_SERVICES_TENANT,
        "displayName": wellknown.EOP_DISPLAY_NAME,
        "servicePrincipalNames": [
            "https://ps.protection.office365.us",
            app_id,
            f"{app_id}/*.dataservice.protection.outlook.com",
            f"{app_id}/*.protection.outlook.com",
            f"{app_id}/admin.protection.outlook.com",
            "https://*.dataservice.protection.outlook.com",
            "https://*.protection.outlook.com",
        ],
        "signInAudience": "AzureADMultipleOrgs",
        "keyCredentials": [],
        "appRoles": [
            _app_role(
                wellknown.EOP_MANAGE_AS_APP_ROLE_ID,
                wellknown.EXCHANGE_MANAGE_AS_APP,
                wellknown.EXCHANGE_MANAGE_AS_APP,
                wellknown.EXCHANGE_MANAGE_AS_APP,
            ),
        ],
    }


def builtin_graph_sp(tenant_id: str) -> JsonObject:
    """The Microsoft Graph service principal with the application permissions cbacheck knows."""
    app_id = wellknown.MICROSOFT_GRAPH_APP_ID
    roles = [
        _app_role(role_id, name, name, f"Application permission {name}.")
        for name, role_id in {**wellknown.GRAPH_PERMISSION_IDS, **wellknown.GRAPH_MAILBOX_PERMISSION_IDS}.items()
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


# The names a built-in service principal answers to in a national cloud, in place of the global ones (the sandbox
# is a tenant of one cloud: a state document's "cloud"). Graph's is documented: an app-only token in US Government
# L4 asks for https://graph.microsoft.us/.default (https://learn.microsoft.com/graph/sdks/national-clouds). GCC High's
# Exchange Online and Security & Compliance hosts are documented (outlook.office365.us for Connect-ExchangeOnline
# -ExchangeEnvironmentName O365USGovGCCHigh, ps.compliance.protection.office365.us for Connect-IPPSSession,
# https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2); that the Exchange and EOP service
# principals list these names, EOP's as the wildcard https://*.protection.office365.us, is UNCONFIRMED (choice 37).
NATIONAL_NAMES: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("gcchigh", wellknown.MICROSOFT_GRAPH_APP_ID): ("https://graph.microsoft.us/", "https://graph.microsoft.us"),
    ("gcchigh", wellknown.EXCHANGE_ONLINE_APP_ID): (
        "https://outlook.office365.us/",
        "https://outlook.office365.us",
        f"{wellknown.EXCHANGE_ONLINE_APP_ID}/outlook.office365.us",
    ),
    ("gcchigh", wellknown.EOP_APP_ID): (
        "https://*.protection.office365.us",
        f"{wellknown.EOP_APP_ID}/*.protection.office365.us",
    ),
}


def in_cloud(sp: JsonObject, cloud: str) -> JsonObject:
    """The built-in service principal as a tenant of that cloud lists it (its names; the global ones elsewhere)."""
    names = NATIONAL_NAMES.get((cloud, str(sp["appId"])))
    if names:
        sp["servicePrincipalNames"] = [*names, sp["appId"]]
    return sp
