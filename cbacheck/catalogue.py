"""The requirement catalogue: one entry per check, the single source of its title, link, fix and remediation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SEVERITIES: Final = ("critical", "high", "medium", "low", "info")

# Planner names a requirement may point at; "manual" means the plan explains the step only.
FIXES: Final = (
    "new_certificate",
    "rotate_certificate",
    "create_app",
    "create_service_principal",
    "upload_certificate",
    "add_exchange_permission",
    "grant_exchange_consent",
    "assign_directory_role",
    "add_rbac_role_group",
    "remove_expired_keys",
    "use_initial_domain",
    "manual",
    "follows",
)

LINKS: Final = {
    1: "Certificate",
    2: "App registration",
    3: "Certificate uploaded",
    4: "Permission and consent",
    5: "Directory role",
    6: "Token and Exchange Online",
}

PORTAL_APP = "https://entra.microsoft.com/#view/Microsoft_AAD_RegisteredApps/ApplicationsListBlade"
PORTAL_ENTERPRISE_APPS = (
    "https://entra.microsoft.com/#view/Microsoft_AAD_IAM/StartboardApplicationsMenuBlade/~/AppAppsPreview"
)
PORTAL_ROLES = "https://entra.microsoft.com/#view/Microsoft_AAD_IAM/AllRolesBlade"
DOC_EXO_APP_ONLY = "https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2"
DOC_CERT_CREDENTIALS = "https://learn.microsoft.com/entra/identity-platform/certificate-credentials"
# "What to do if the Office 365 Exchange Online resource is not available in Microsoft Entra ID": add
# Exchange.ManageAsApp to an app's manifest (and consent), and the resource's service principal appears.
DOC_EXO_RESOURCE_MISSING = (
    "https://learn.microsoft.com/powershell/exchange/connect-exo-powershell-managed-identity"
    "#what-to-do-if-the-office-365-exchange-online-resource-is-not-available-in-microsoft-entra-id"
)
EXCHANGE_SP_REMEDY = (
    "Add Office 365 Exchange Online > Exchange.ManageAsApp to the app's manifest (requiredResourceAccess) and grant "
    "admin consent: Microsoft documents that this makes the Exchange Online service principal appear. If it still "
    "does not, check the tenant's Exchange Online subscription in the Microsoft 365 admin center."
)
DOC_EXO_ROLE_OPTIONS = f"{DOC_EXO_APP_ONLY}#step-5-assign-role-permissions-to-the-application"
DOC_EXO_CMDLET_PERMISSIONS = "https://learn.microsoft.com/powershell/exchange/find-exchange-cmdlet-permissions"


@dataclass(frozen=True)
class Requirement:
    id: str
    link: int
    title: str
    severity: str
    fix: str
    remediation: str
    after: tuple[str, ...] = ()  # upstream requirements whose failure explains this one
    reference: str = DOC_EXO_APP_ONLY


CATALOGUE: Final[dict[str, Requirement]] = {
    r.id: r
    for r in (
        # Link 1: the certificate.
        Requirement(
            "CBA-CERT-001",
            1,
            "The certificate file can be read",
            "critical",
            "new_certificate",
            "Point --cert at the .cer/.pem/.pfx file (PFX password in CBACHECK_CERT_PASSWORD), or create one: "
            "`cbacheck cert new --subject CN=exo-automation --out certs` "
            "(New-SelfSignedCertificate + Export-Certificate on Windows).",
        ),
        Requirement(
            "CBA-CERT-002",
            1,
            "A private key is available and matches the certificate",
            "critical",
            "new_certificate",
            "Use the PFX or PEM that holds the private key created with the certificate; a .cer holds only the "
            "public part. If the key is lost, create a new certificate and upload it.",
            after=("CBA-CERT-001",),
        ),
        Requirement(
            "CBA-CERT-003",
            1,
            "The certificate is valid now",
            "critical",
            "rotate_certificate",
            "Create a new certificate, upload it to the app (Certificates & secrets > Upload certificate) and "
            "switch the automation to it. Check the host clock if notBefore is in the future.",
            after=("CBA-CERT-001",),
            reference=DOC_CERT_CREDENTIALS,
        ),
        Requirement(
            "CBA-CERT-004",
            1,
            "The certificate does not expire within the rotation window",
            "high",
            "rotate_certificate",
            "Rotate now: create a new certificate, upload it beside the old one, prove the automation works with "
            "it, then remove the old key (`cbacheck run --fix apply` does this).",
            after=("CBA-CERT-003",),
        ),
        Requirement(
            "CBA-CERT-005",
            1,
            "The key is RSA of at least 2048 bits",
            "critical",
            "new_certificate",
            "Entra rejects smaller keys (AADSTS700027). Create the certificate with -KeyLength 2048 "
            "(or `cbacheck cert new`, RSA 2048 by default).",
            after=("CBA-CERT-001",),
            reference=DOC_CERT_CREDENTIALS,
        ),
        Requirement(
            "CBA-CERT-006",
            1,
            "The certificate is signed with SHA-256 or stronger",
            "medium",
            "new_certificate",
            "Policy, not a sign-in failure (a SHA-1 certificate still signs in): create the certificate with "
            "-HashAlgorithm SHA256 (the default of `cbacheck cert new`).",
            after=("CBA-CERT-001",),
        ),
        Requirement(
            "CBA-CERT-007",
            1,
            "The certificate lifetime is within the policy maximum",
            "low",
            "rotate_certificate",
            "Issue certificates for at most max_lifetime_days (CISA MS.AAD.5.7: 365 days) and rotate before expiry.",
            after=("CBA-CERT-001",),
        ),
        Requirement(
            "CBA-CERT-008",
            1,
            "The private key at rest is protected",
            "high",
            "manual",
            "Protect the key: export the PFX with a password (Export-PfxCertificate -Password), encrypt the PEM, "
            "or restrict the key file to its owner (chmod 600).",
            after=("CBA-CERT-002",),
        ),
        Requirement(
            "CBA-CERT-009",
            1,
            "Key usage, if present, allows digital signatures",
            "medium",
            "new_certificate",
            "The client assertion is a signature: create the certificate with KeyUsage DigitalSignature "
            "(New-SelfSignedCertificate -KeyUsage DigitalSignature).",
            after=("CBA-CERT-001",),
        ),
        # Link 2: the app registration.
        Requirement(
            "CBA-APP-001",
            2,
            "The app registration exists",
            "critical",
            "create_app",
            f"Register the app: Entra admin center > App registrations > New registration ({PORTAL_APP}), "
            "or check app_id and tenant for a typo (AADSTS700016).",
        ),
        Requirement(
            "CBA-APP-002",
            2,
            "Its service principal exists and is enabled",
            "critical",
            "create_service_principal",
            "Create the service principal (New-MgServicePrincipal -AppId <app id>) or enable it: Enterprise "
            f"applications > the app > Properties > Enabled for users to sign-in = Yes ({PORTAL_ENTERPRISE_APPS}).",
            after=("CBA-APP-001",),
        ),
        Requirement(
            "CBA-APP-003",
            2,
            "Sign-in audience is this organization only",
            "medium",
            "manual",
            "App registrations > the app > Authentication > Supported account types: Accounts in this "
            "organizational directory only, unless the app is meant to be multi-tenant (set multi_tenant).",
            after=("CBA-APP-001",),
        ),
        Requirement(
            "CBA-APP-004",
            2,
            "The app has no client secrets",
            "high",
            "manual",
            "App registrations > the app > Certificates & secrets > Client secrets: delete each secret once "
            "nothing uses it (cbacheck never deletes secrets itself).",
            after=("CBA-APP-001",),
        ),
        Requirement(
            "CBA-APP-005",
            2,
            "No expired key credentials are left on the app",
            "low",
            "remove_expired_keys",
            "Remove expired certificates under Certificates & secrets, or run with --remove-expired-keys --fix apply.",
            after=("CBA-APP-001",),
        ),
        # Link 3: the certificate uploaded.
        Requirement(
            "CBA-KEY-001",
            3,
            "The local certificate is uploaded to the app",
            "critical",
            "upload_certificate",
            "App registrations > the app > Certificates & secrets > Certificates > Upload certificate (the .cer "
            "file); cbacheck's fix adds it beside the existing keys.",
            after=("CBA-APP-001", "CBA-CERT-001"),
        ),
        Requirement(
            "CBA-KEY-002",
            3,
            "The uploaded key is valid now and usable for sign-in",
            "critical",
            "rotate_certificate",
            "Upload a current certificate (type AsymmetricX509Cert, usage Verify) and switch the automation to it.",
            after=("CBA-KEY-001",),
        ),
        Requirement(
            "CBA-KEY-003",
            3,
            "No uploaded key expires within expiry_days without a successor",
            "high",
            "rotate_certificate",
            "Upload a new certificate before the old key expires, switch the automation to it, then remove the "
            "old key.",
            after=("CBA-APP-001",),
            reference=DOC_CERT_CREDENTIALS,
        ),
        # Link 4: the permission and consent.
        Requirement(
            "CBA-PERM-001",
            4,
            "The Office 365 Exchange Online service principal exists in the tenant",
            "critical",
            "manual",
            EXCHANGE_SP_REMEDY + " Without the resource principal tokens fail with AADSTS500011.",
        ),
        Requirement(
            "CBA-PERM-002",
            4,
            "The app requests Exchange.ManageAsApp (configured)",
            "high",
            "add_exchange_permission",
            "App registrations > the app > API permissions > Add a permission > APIs my organization uses > "
            "Office 365 Exchange Online > Application permissions > Exchange.ManageAsApp. A permission id that "
            'does not exist on Office 365 Exchange Online makes admin consent fail with AADSTS650051 ("Claim is '
            'invalid"): remove it.',
            after=("CBA-APP-001",),
        ),
        Requirement(
            "CBA-PERM-003",
            4,
            "Admin consent for Exchange.ManageAsApp is granted",
            "critical",
            "grant_exchange_consent",
            "API permissions > Grant admin consent for <organization>; the result is an appRoleAssignment on the "
            "app's service principal (the manifest line alone grants nothing). If consent fails with AADSTS650051 "
            '("Claim is invalid ... does not exist on resource application"), the manifest names a wrong '
            "permission id (CBA-PERM-002).",
            after=("CBA-APP-002", "CBA-PERM-001"),
        ),
        Requirement(
            "CBA-PERM-004",
            4,
            "full_access_as_app is not granted",
            "high",
            "manual",
            "Remove the grant of full_access_as_app (full mailbox access over EWS) under Enterprise applications "
            "> the app > Permissions, unless a reviewed exception exists.",
            after=("CBA-APP-002",),
        ),
        Requirement(
            "CBA-PERM-005",
            4,
            "No application permissions beyond the allowed list",
            "medium",
            "manual",
            "Revoke the extra grants under Enterprise applications > the app > Permissions, or add them to "
            "allowed_permissions after review.",
            after=("CBA-APP-002",),
        ),
        # Link 5: the directory role.
        Requirement(
            "CBA-ROLE-001",
            5,
            "Exchange authorises the app: a supported directory role at tenant scope, or Exchange RBAC",
            "critical",
            "assign_directory_role",
            f"Either Roles and administrators > Exchange Administrator > Add assignments > the app ({PORTAL_ROLES}), "
            "active and scoped to the directory (not an administrative unit); or, for least privilege, "
            "New-ServicePrincipal -AppId <appId> -ObjectId <the service principal's object id> and "
            "Add-RoleGroupMember -Identity <role group> -Member <that ObjectId> in Exchange Online.",
            after=("CBA-APP-002",),
            reference=DOC_EXO_ROLE_OPTIONS,
        ),
        Requirement(
            "CBA-ROLE-002",
            5,
            "The app holds no role above what it needs",
            "high",
            "manual",
            "Remove Global Administrator / Privileged Role Administrator from the app's service principal; "
            "Exchange Administrator (or Global Reader for read-only use) is enough.",
            after=("CBA-APP-002",),
        ),
        Requirement(
            "CBA-ROLE-003",
            5,
            "Each cmdlet the automation runs is granted by a role the app holds in Exchange",
            "high",
            "add_rbac_role_group",
            "Add the app's service principal pointer to a role group whose roles hold the cmdlet "
            "(Add-RoleGroupMember, or set rbac_role_group and run --fix apply), or add such a role to its group "
            "(New-ManagementRoleAssignment); find the roles with Get-ManagementRole -Cmdlet <cmdlet>.",
            after=("CBA-ROLE-001",),
            reference=DOC_EXO_CMDLET_PERMISSIONS,
        ),
        # Link 6: connect.
        Requirement(
            "CBA-ORG-001",
            6,
            "Organization is the tenant's initial onmicrosoft.com domain",
            "high",
            "use_initial_domain",
            "Use the initial domain for Connect-ExchangeOnline -Organization (Entra admin center > Overview > "
            "Primary domain shows custom domains; the initial one ends in .onmicrosoft.com).",
        ),
        Requirement(
            "CBA-TOKEN-001",
            6,
            "The app obtains an Exchange token with the certificate",
            "critical",
            "follows",
            "Mend the upstream link the AADSTS code points at; the message names it.",
            after=(
                "CBA-CERT-002",
                "CBA-CERT-003",
                "CBA-CERT-005",
                "CBA-APP-002",
                "CBA-KEY-001",
                "CBA-KEY-002",
                "CBA-PERM-001",
            ),
            reference=DOC_CERT_CREDENTIALS,
        ),
        Requirement(
            "CBA-TOKEN-002",
            6,
            "The token carries the right audience, tenant, app, role and permission",
            "critical",
            "follows",
            "roles needs Exchange.ManageAsApp (admin consent) and wids the directory role; new grants can take "
            "minutes to appear in tokens.",
            after=("CBA-TOKEN-001", "CBA-PERM-003", "CBA-ROLE-001"),
        ),
        Requirement(
            "CBA-TOKEN-003",
            6,
            "The local clock agrees with Entra ID",
            "medium",
            "manual",
            "Synchronise the host clock (NTP); a skew of minutes makes client assertions fail with AADSTS700024.",
            after=("CBA-TOKEN-001",),
            reference=DOC_CERT_CREDENTIALS,
        ),
        Requirement(
            "CBA-EXO-001",
            6,
            "Exchange Online accepts the token",
            "critical",
            "follows",
            "With the token right, Exchange still needs a supported role and the right organization; the "
            "message quotes Exchange's answer.",
            after=("CBA-TOKEN-002", "CBA-ORG-001", "CBA-ROLE-001"),
        ),
    )
}


def requirement(req_id: str) -> Requirement | None:
    return CATALOGUE.get(req_id)


def upstream_closure(req_id: str) -> list[str]:
    """Every requirement upstream of req_id, nearest first (breadth-first over `after`)."""
    seen: list[str] = []
    queue = list(CATALOGUE[req_id].after) if req_id in CATALOGUE else []
    while queue:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.append(current)
        if current in CATALOGUE:
            queue.extend(CATALOGUE[current].after)
    return seen


def chain_order(req_id: str) -> tuple[int, str]:
    """Sort key: link first, then ID, so the report reads in chain order."""
    req = CATALOGUE.get(req_id)
    return (req.link if req else 99, req_id)


# --- The tenant audit (`cbacheck audit`): requirements judged per principal, without any private key ----
# Link 0 is "the tenant's principals"; these IDs are evaluated by report/audit.py, not by checks/.
DOC_APP_MANAGEMENT = "https://learn.microsoft.com/entra/identity/enterprise-apps/manage-application-permissions"
# Microsoft's page that states EWS "is planned for deprecation in October 2026" (the Admin API overview).
DOC_EWS_RETIREMENT = "https://learn.microsoft.com/exchange/reference/admin-api-overview"
DOC_REMOVE_UNUSED_APPS = "https://learn.microsoft.com/entra/identity/monitoring-health/recommendation-remove-unused-apps"
DOC_RBAC_FOR_APPS = "https://learn.microsoft.com/exchange/permissions-exo/application-rbac"

AUDIT_CATALOGUE: Final[dict[str, Requirement]] = {
    r.id: r
    for r in (
        Requirement(
            "CBA-AUD-001",
            2,
            "The principal's service principal is enabled",
            "high",
            "manual",
            "Enable the service principal, or remove its Exchange permissions if it is retired.",
            reference=DOC_APP_MANAGEMENT,
        ),
        Requirement(
            "CBA-AUD-002",
            2,
            "The app registration lives in this tenant and is single-tenant",
            "medium",
            "manual",
            "Set signInAudience to AzureADMyOrg, or review why another tenant's app holds "
            "Exchange app-only access here.",
            reference=DOC_APP_MANAGEMENT,
        ),
        Requirement(
            "CBA-AUD-003",
            3,
            "The app holds no client secrets",
            "high",
            "manual",
            "Remove the client secrets (Certificates & secrets); Exchange app-only access needs a certificate.",
            reference=DOC_CERT_CREDENTIALS,
        ),
        Requirement(
            "CBA-AUD-004",
            3,
            "No uploaded key expires within expiry_days without a successor",
            "high",
            "rotate_certificate",
            "Upload a new certificate before the old one expires and switch the automation to it.",
            reference=DOC_CERT_CREDENTIALS,
        ),
        Requirement(
            "CBA-AUD-005",
            3,
            "No uploaded key lives longer than max_lifetime_days",
            "medium",
            "manual",
            "Replace long-lived certificates with ones inside max_lifetime_days.",
            reference=DOC_CERT_CREDENTIALS,
        ),
        Requirement(
            "CBA-AUD-006",
            3,
            "No expired keys or secrets are left on the app",
            "low",
            "remove_expired_keys",
            "Remove expired keyCredentials and passwordCredentials.",
            reference=DOC_CERT_CREDENTIALS,
        ),
        Requirement(
            "CBA-AUD-007",
            5,
            "The principal holds no over-privileged directory role",
            "high",
            "manual",
            "Replace Global Administrator or Privileged Role Administrator with Exchange Administrator or "
            "Exchange RBAC.",
            reference=DOC_EXO_ROLE_OPTIONS,
        ),
        Requirement(
            "CBA-AUD-008",
            5,
            "An Exchange.ManageAsApp holder is authorised in Exchange Online",
            "critical",
            "manual",
            "Assign a supported Entra role tenant-wide, or an Exchange RBAC role group "
            "(option 3 of the app-only article).",
            reference=DOC_EXO_ROLE_OPTIONS,
        ),
        Requirement(
            "CBA-AUD-009",
            4,
            "An Exchange.ManageAsApp holder requests the permission in its manifest",
            "low",
            "manual",
            "Add Office 365 Exchange Online > Exchange.ManageAsApp to requiredResourceAccess "
            "so the manifest says what is granted.",
        ),
        Requirement(
            "CBA-AUD-010",
            4,
            "A full_access_as_app holder is listed with its EWS status",
            "medium",
            "manual",
            "Move the app from EWS to Microsoft Graph with RBAC for Applications before EWS is "
            "switched off; remove full_access_as_app when done.",
            reference=DOC_EWS_RETIREMENT,
        ),
        Requirement(
            "CBA-AUD-011",
            4,
            "Graph mailbox permissions are scoped",
            "high",
            "manual",
            "Scope the app with RBAC for Applications (management scopes) instead of tenant-wide Graph "
            "Mail/Calendars/Contacts permissions, and remove the Entra grant: the two add up, so a scoped "
            "assignment limits nothing while the Entra grant stays.",
            reference=DOC_RBAC_FOR_APPS,
        ),
        Requirement(
            "CBA-AUD-012",
            2,
            "The app has no owners who could add a credential",
            "medium",
            "manual",
            "Remove the owners of apps that hold Exchange app-only access; manage them through a role "
            "(Cloud Application Administrator) whose use is logged and reviewed.",
            reference=DOC_APP_MANAGEMENT,
        ),
        Requirement(
            "CBA-AUD-013",
            4,
            "The app has signed in within unused_days",
            "medium",
            "manual",
            "Confirm with the app's owner that it is still needed; remove its Exchange permissions (or the app) if "
            "not. An unused app with standing Exchange access is credentials nobody watches.",
            reference=DOC_REMOVE_UNUSED_APPS,
        ),
        Requirement(
            "CBA-AUD-014",
            4,
            "RBAC for Applications assignments are limited to a resource scope",
            "high",
            "manual",
            "Give each Application role assignment a management scope (-CustomResourceScope) or an administrative unit "
            "(-RecipientAdministrativeUnitScope); without one it covers every mailbox.",
            reference=DOC_RBAC_FOR_APPS,
        ),
    )
}
