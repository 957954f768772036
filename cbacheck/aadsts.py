"""The AADSTS table: what each code of the identity platform means in this chain, and the requirement it breaks."""

from __future__ import annotations

from dataclasses import dataclass

from cbacheck import wellknown
from cbacheck.catalogue import (
    DOC_CERT_CREDENTIALS,
    DOC_EXO_APP_ONLY,
    DOC_EXO_RESOURCE_MISSING,
    EXCHANGE_SP_REMEDY,
)

DOC_AADSTS = "https://learn.microsoft.com/entra/identity-platform/reference-error-codes"
DOC_CLIENT_CREDENTIALS = "https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow"
DOC_NATIONAL_CLOUDS = "https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud"
DOC_WORKLOAD_CA = "https://learn.microsoft.com/entra/identity/conditional-access/workload-identity"


@dataclass(frozen=True)
class Entry:
    """One row of the catalogue; `text` (lower case) narrows a code to one variant of Microsoft's message."""

    code: int
    name: str
    cause: str
    requirement: str
    next_step: str
    doc: str = DOC_AADSTS
    text: tuple[str, ...] = ()
    setting: str = ""


# Codes and names: https://learn.microsoft.com/entra/identity-platform/reference-error-codes; the `text` variants
# are the wordings Entra returns (e.g. AADSTS700027 "The key was not found." or "The key used is expired.").
# Variants of one code come first, most specific first; the row without `text` is the code's fallback.
AADSTS: tuple[Entry, ...] = (
    Entry(
        700027,
        "InvalidClientAssertion (RSA key too small)",
        "the certificate's RSA key is shorter than 2048 bits, which Entra refuses",
        "CBA-CERT-005",
        "create a new RSA 2048 certificate (`cbacheck cert new`), upload it and switch the automation to it",
        DOC_CERT_CREDENTIALS,
        text=("rsa key size", "less than the minimum"),
    ),
    Entry(
        700027,
        "InvalidClientAssertion (key expired)",
        "the keyCredential on the app that matches the certificate has expired",
        "CBA-KEY-002",
        "upload a current certificate to the app and switch the automation to it",
        DOC_CERT_CREDENTIALS,
        text=("expired",),
    ),
    Entry(
        700027,
        "InvalidClientAssertion (key not registered)",
        "the certificate that signed the client assertion is not one of the app's keyCredentials "
        "(not uploaded, another app's certificate, or the wrong file selected)",
        "CBA-KEY-001",
        "upload the certificate's .cer to the app (Certificates & secrets > Upload certificate) "
        "or point cert at the certificate that is uploaded",
        DOC_CERT_CREDENTIALS,
        text=("not registered", "key was not found"),
    ),
    Entry(
        700027,
        "InvalidClientAssertion",
        "Entra could not validate the client assertion's signature with any key on the app; most often the "
        "certificate is not uploaded to this app",
        "CBA-KEY-001",
        "compare the certificate's SHA-1 thumbprint with the app's certificates; upload it if it is missing",
        DOC_CERT_CREDENTIALS,
    ),
    Entry(
        50032,
        "WeakRsaKey",
        "the certificate's RSA key is shorter than 2048 bits, which Entra refuses",
        "CBA-CERT-005",
        "create a new RSA 2048 certificate (`cbacheck cert new`), upload it and switch the automation to it",
        DOC_CERT_CREDENTIALS,
    ),
    # Reported by users (not in Microsoft's error table): an application without a service principal.
    Entry(
        7000229,
        "Client application missing service principal",
        "the app registration exists but has no service principal (enterprise application) in this tenant",
        "CBA-APP-002",
        "create the service principal (New-MgServicePrincipal -AppId <app id>, or cbacheck's fix)",
    ),
    # A wrapper: its answer names the specific code beside it, which is looked up first.
    Entry(
        70002,
        "InvalidClientCredentials",
        "Entra could not validate the app's credentials; no more specific code came with it",
        "CBA-KEY-001",
        "compare the certificate's SHA-1 thumbprint with the app's certificates, and check its key size and dates",
        DOC_CERT_CREDENTIALS,
    ),
    Entry(
        700016,
        "UnauthorizedClient_DoesNotMatchRequest",
        "no application with this app id exists in this tenant: a typo in app_id, the wrong tenant, a deleted "
        "app, or a multi-tenant app not yet consented here",
        "CBA-APP-001",
        "check app_id and tenant against Entra admin center > App registrations",
        setting="app_id",
    ),
    Entry(
        7000112,
        "UnauthorizedClientApplicationDisabled",
        "the app's service principal is disabled (accountEnabled false)",
        "CBA-APP-002",
        "Enterprise applications > the app > Properties > Enabled for users to sign-in = Yes",
    ),
    Entry(
        90002,
        "InvalidTenantName",
        "the tenant value is not a tenant in this cloud: a typo, a domain that is not verified in it, "
        "or a tenant of another national cloud",
        "",
        "set tenant to the tenant ID (GUID) or its initial .onmicrosoft.com domain, and cloud to its cloud",
        setting="tenant",
    ),
    Entry(
        900023,
        "InvalidTenantIdentifier",
        "the tenant value is neither a GUID nor a domain name",
        "",
        "set tenant to the tenant ID (GUID) or its initial .onmicrosoft.com domain",
        setting="tenant",
    ),
    Entry(
        50049,
        "NoSuchInstanceForDiscovery",
        "the login endpoint is not a known Entra instance for this cloud",
        "",
        "check cloud and login_url",
        DOC_NATIONAL_CLOUDS,
        setting="login_url",
    ),
    Entry(
        500011,
        "InvalidResourceServicePrincipalNotFound",
        "the tenant has no Office 365 Exchange Online service principal (it appears once an app requests "
        "Exchange.ManageAsApp with consent; otherwise no Exchange Online subscription), or the Exchange resource "
        "asked for belongs to another cloud",
        "CBA-PERM-001",
        EXCHANGE_SP_REMEDY + " Check cloud too.",
        DOC_EXO_RESOURCE_MISSING,
    ),
    Entry(
        650052,
        "The app needs access to a service the organization has not subscribed to",
        "the tenant has no Exchange Online subscription, so the Exchange resource is not enabled",
        "CBA-PERM-001",
        "check the tenant's Exchange Online subscription in the Microsoft 365 admin center",
    ),
    # Seen when admin consent is granted (MicrosoftDocs/office-docs-powershell#8853), not from a
    # client-credentials token request: the advice lives with CBA-PERM-002/003; this row only explains
    # the code should an answer carry it.
    Entry(
        650051,
        "Claim is invalid (permission does not exist on the resource)",
        "requiredResourceAccess names a permission id that does not exist on Office 365 Exchange Online, so "
        f"admin consent fails (Exchange.ManageAsApp is {wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID})",
        "CBA-PERM-002",
        "remove the wrong permission and add Exchange.ManageAsApp from 'APIs my organization uses'",
        DOC_EXO_APP_ONLY,
    ),
    Entry(
        700024,
        "SignedAssertionInvalidTimeRange",
        "the client assertion is not within its valid time range: the host clock is wrong",
        "CBA-TOKEN-003",
        "synchronise the host clock (NTP) and try again",
        DOC_CERT_CREDENTIALS,
    ),
    Entry(
        50027,
        "InvalidJwtToken (time range)",
        "the client assertion is outside its valid time range: the host clock is wrong",
        "CBA-TOKEN-003",
        "synchronise the host clock (NTP) and try again",
        DOC_CERT_CREDENTIALS,
        text=("time range",),
    ),
    Entry(
        50027,
        "InvalidJwtToken",
        "the client assertion is malformed or names an unexpected issuer or audience (login endpoint of another "
        "cloud, or a proxy rewriting the request)",
        "",
        "check cloud and login_url; the assertion's audience must be the token endpoint it is sent to",
        DOC_CERT_CREDENTIALS,
        setting="login_url",
    ),
    Entry(
        50048,
        "SubjectMismatchesIssuer",
        "the client assertion's sub and iss differ; both must be the app id",
        "",
        "sign the assertion with iss = sub = the app id (msal does); check app_id",
        DOC_CERT_CREDENTIALS,
        setting="app_id",
    ),
    Entry(
        50012,
        "AuthenticationFailed",
        "the signing certificate's thumbprint is not authorised for the app or the signature is invalid",
        "CBA-KEY-001",
        "upload the certificate to the app, and check the private key belongs to it",
        DOC_CERT_CREDENTIALS,
    ),
    Entry(
        700030,
        "InvalidCertificate (subject name not authorised)",
        "subject name and issuer authentication is not set up for this certificate; cbacheck signs with a "
        "thumbprint, which needs the certificate uploaded",
        "CBA-KEY-001",
        "upload the certificate itself to the app",
        DOC_CERT_CREDENTIALS,
    ),
    Entry(
        1000502,
        "CertificateIsOutsideValidityWindow",
        "the certificate used to sign is expired or not yet valid",
        "CBA-CERT-003",
        "create a new certificate, upload it and switch the automation to it; check the host clock",
        DOC_CERT_CREDENTIALS,
    ),
    Entry(
        7000214,
        "Certificate revoked",
        "the certificate was revoked",
        "CBA-KEY-002",
        "create and upload a new certificate",
        DOC_CERT_CREDENTIALS,
    ),
    Entry(
        7000277,
        "Certificate revoked",
        "the certificate was revoked",
        "CBA-KEY-002",
        "create and upload a new certificate",
        DOC_CERT_CREDENTIALS,
    ),
    Entry(
        7000274,
        "Certificate error",
        "a certificate problem that Microsoft's public error table does not describe; identity libraries treat "
        "this code as a certificate error, and Microsoft's text says which",
        "CBA-KEY-002",
        "read Microsoft's text; upload a current certificate if it names the key",
        DOC_CERT_CREDENTIALS,
    ),
    Entry(
        7000218,
        "Missing client credential",
        "the request carried neither a client assertion nor a secret: the certificate's private key was not "
        "available to sign",
        "CBA-CERT-002",
        "point cert at a PFX or PEM that holds the private key",
        DOC_CLIENT_CREDENTIALS,
    ),
    Entry(
        7000215,
        "InvalidClientSecret",
        "the automation signs in with a client secret, not the certificate (cbacheck itself never sends one)",
        "CBA-APP-004",
        "switch the automation to the certificate and delete the secret",
    ),
    Entry(
        7000222,
        "InvalidClientSecretExpiredKeysProvided",
        "the automation signs in with an expired client secret, not the certificate",
        "CBA-APP-004",
        "switch the automation to the certificate and delete the secret",
    ),
    Entry(
        53003,
        "BlockedByConditionalAccess",
        "a Conditional Access policy for workload identities blocks this service principal (location or risk)",
        "",
        "review Conditional Access policies that target the app's service principal",
        DOC_WORKLOAD_CA,
    ),
    Entry(
        70011,
        "InvalidScope",
        "the scope is not the Exchange resource's /.default of this cloud",
        "",
        "check cloud and exchange_url; the scope must be <Exchange resource>/.default",
        DOC_NATIONAL_CLOUDS,
        setting="cloud",
    ),
)


def find_entry(code: int, text: str) -> Entry | None:
    """The most specific row for the code whose text variant appears in Microsoft's message."""
    lowered = text.lower()
    rows = [row for row in AADSTS if row.code == code]
    for row in rows:
        if row.text and any(fragment in lowered for fragment in row.text):
            return row
    return next((row for row in rows if not row.text), None)
