"""The Graph shape of the sandbox's objects: collections, full property templates and rendering."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from cbacheck.sandbox.values import JsonObject

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
# The lists of the state's `exchange` object (Exchange RBAC, in the shape the cmdlets print).
# Application relationships kept beside the objects (never inside them, so no GET of an application shows them):
# application object id -> directoryObjects (owners) or federatedIdentityCredential objects.
RELATIONS: Final = ("owners", "federatedIdentityCredentials")
# Report and policy objects a state document may hold besides the collections (read by `cbacheck audit`).
SIGN_IN_ACTIVITIES: Final = "servicePrincipalSignInActivities"
APP_MANAGEMENT_POLICY: Final = "defaultAppManagementPolicy"
# A tenant that never set the policy: disabled, no restrictions (shape of
# https://learn.microsoft.com/graph/api/resources/tenantappmanagementpolicy; the untouched values are UNCONFIRMED,
# docs/sandbox.md choice 35).
DEFAULT_APP_MANAGEMENT_POLICY: Final = {
    "id": "00000000-0000-0000-0000-000000000000",
    "displayName": "Default app management tenant policy",
    "description": "Default tenant policy that enforces app management restrictions on applications and service "
    "principals.",
    "isEnabled": False,
    "applicationRestrictions": {"passwordCredentials": [], "keyCredentials": []},
    "servicePrincipalRestrictions": {"passwordCredentials": [], "keyCredentials": []},
}
EXCHANGE_COLLECTIONS: Final = (
    "servicePrincipals",
    "roleGroups",
    "managementRoleAssignments",
    "managementRoles",
    "managementScopes",  # RBAC for Applications' resource scopes (Get-ManagementScope)
    "applicationAccessPolicies",  # Get-ApplicationAccessPolicy: the older limit on Entra-granted mailbox access
    "organizationConfig",  # at most one object: the EWS settings Get-OrganizationConfig adds (sandbox.md)
)
# Security & Compliance PowerShell's own RBAC objects: the same shape, a separate collection (sandbox.md).
COMPLIANCE: Final = "compliance"

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
