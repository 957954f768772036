"""Tokens: the app under test's Exchange token attempt (msal), and the auditor's and admin's Graph credentials."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import jwt
import msal
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from msal.exceptions import MsalServiceError

from cbacheck import certs
from cbacheck.collect.graph import TokenProvider
from cbacheck.collect.transport import stats_of
from cbacheck.config import Settings
from cbacheck.errors import CertificateError, CredentialError
from cbacheck.facts import Source, TokenAttempt, Unavailable

# The client assertion is signed as Microsoft's certificate-credentials page says: `alg` PS256 (PSS
# padding) with the SHA-256 thumbprint in `x5t#S256`
# (https://learn.microsoft.com/entra/identity-platform/certificate-credentials). msal takes that path
# when given the public certificate and no SHA-1 thumbprint (it calls the SHA-1 input deprecated), and
# then also sends the certificate in `x5c`.
CREDENTIAL_STYLE = "PS256 x5t#S256"
# azure-identity tokens are reused until this close to expiry (msal's own cache uses 5 minutes too).
REFRESH_MARGIN_S = 300
Identity = Literal["auditor", "admin"]
AZURE_IDENTITY_KINDS = ("default", "environment", "workload_identity", "managed_identity", "azure_cli", "device_code")


def authority_host_is_microsoft(login_url: str) -> bool:
    """Real clouds keep msal's authority validation; a private endpoint (the sandbox) cannot pass it."""
    return (urlsplit(login_url).hostname or "") in WELL_KNOWN_AUTHORITY_HOSTS


def build_msal_app(
    client_id: str, tenant: str, material: certs.SigningMaterial, login_url: str, session: requests.Session
) -> msal.ConfidentialClientApplication:
    """A confidential client signing its client assertion with the certificate (PS256, x5t#S256).

    Constructing it runs tenant discovery (a GET), so it may raise ValueError or a requests error.
    """
    kwargs: dict[str, Any] = {}
    if not authority_host_is_microsoft(login_url):
        kwargs["instance_discovery"] = False
    # The key object parsed and validated once by certs (msal itself hands its assertion signer a key
    # object when it decrypts a PEM): PyJWT would otherwise parse and validate the PEM again per assertion.
    key: Any = material.private_key if material.private_key is not None else material.private_key_pem
    stats = stats_of(session)
    # One http_cache for the identities of a run: the second one finds the discovery document there.
    with stats.discovery_lock:
        return msal.ConfidentialClientApplication(
            client_id,
            # PS256 with x5t#S256, as Microsoft's certificate-credentials page describes the assertion
            # (https://learn.microsoft.com/entra/identity-platform/certificate-credentials): msal signs so
            # when it is given the public certificate rather than a SHA-1 thumbprint.
            client_credential={"private_key": key, "public_certificate": material.certificate_pem},
            authority=f"{login_url}/{tenant}",
            # A region would make msal probe IMDS and rewrite the authority; cbacheck checks the global endpoint.
            azure_region=False,
            http_client=session,
            http_cache=stats.http_cache,
            **kwargs,
        )


def first_line(text: str) -> str:
    return text.replace("\r\n", "\n").split("\n", 1)[0].strip()


def decode_without_verifying(access_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT, for evidence only: cbacheck is not the audience and cannot verify it."""
    header = dict(jwt.get_unverified_header(access_token))
    claims = dict(jwt.decode(access_token, options={"verify_signature": False}))
    return header, claims


def _failure_attempt(base: dict[str, Any], result: dict[str, Any], elapsed_ms: float) -> TokenAttempt:
    codes = tuple(int(c) for c in result.get("error_codes") or () if str(c).isdigit())
    return TokenAttempt(
        **base,
        acquired=False,
        error=str(result.get("error", "unknown_error")),
        error_codes=codes,
        error_description=first_line(str(result.get("error_description", ""))),
        correlation_id=str(result.get("correlation_id", "")),
        trace_id=str(result.get("trace_id", "")),
        timestamp=str(result.get("timestamp", "")),
        elapsed_ms=elapsed_ms,
    )


def _discovery_failure(
    base: dict[str, Any], authority: str, session: requests.Session, err: ValueError, started: float
) -> TokenAttempt | Unavailable:
    """msal's ValueError hides the identity platform's answer; fetch the discovery document to keep it."""
    url = f"{authority}/v2.0/.well-known/openid-configuration"
    try:
        response = session.get(url)
        body = response.json()
    except (requests.RequestException, ValueError):
        return Unavailable(
            "the app's Exchange token",
            f"msal could not use the authority {authority}: {first_line(str(err))}",
        )
    elapsed_ms = (time.perf_counter() - started) * 1000
    if isinstance(body, dict) and body.get("error"):
        # An AADSTS answer (e.g. AADSTS90002 tenant not found) is a fact about the tenant, not a fault.
        return _failure_attempt(base, body, elapsed_ms)
    return Unavailable(
        "the app's Exchange token",
        f"msal could not use the authority {authority} (discovery answered {response.status_code}): "
        f"{first_line(str(err))}",
        source=Source("GET", url, response.status_code, request_id=response.headers.get("request-id", "")),
    )


def attempt_app_token(
    settings: Settings,
    session: requests.Session,
    material: certs.SigningMaterial | CertificateError,
) -> TokenAttempt | Unavailable:
    """Ask for an Exchange Online token as the app under test, the way Connect-ExchangeOnline does.

    An answer from the identity platform (a token or an AADSTS error) is a TokenAttempt; no answer
    (network, 5xx, not JSON) is Unavailable, because nothing was proven either way. The token
    itself is never kept: only its decoded header and claims.
    """
    attempt, _ = acquire_app_token(settings, session, material)
    return attempt


def acquire_app_token(
    settings: Settings,
    session: requests.Session,
    material: certs.SigningMaterial | CertificateError,
    resource: str = "",
) -> tuple[TokenAttempt | Unavailable, str | None]:
    """`attempt_app_token` plus the bearer string, for the Exchange probe only (the caller drops it).

    `resource` is another profile's (Security & Compliance); Exchange Online's by default.
    """
    cloud = settings.cloud_endpoints
    scope = f"{resource or cloud.exchange_resource}/.default"
    what = f"the app's token for {resource}" if resource else "the app's Exchange token"
    if not (settings.tenant and settings.app_id):
        return Unavailable(what, "tenant and app_id must both be set to ask for a token"), None
    authority = f"{cloud.login_url}/{settings.tenant}"
    if isinstance(material, CertificateError):
        return Unavailable(
            what, f"the app's certificate cannot sign a client assertion: {material}", error=material
        ), None
    base: dict[str, Any] = {
        "authority": authority,
        "scope": scope,
        "client_id": settings.app_id,
        "credential_style": CREDENTIAL_STYLE,
    }
    started = time.perf_counter()
    try:
        app = build_msal_app(settings.app_id, settings.tenant, material, cloud.login_url, session)
    except ValueError as err:
        return _discovery_failure(base, authority, session, err, started), None
    except requests.RequestException as err:
        return Unavailable(what, no_answer_text(authority, err)), None
    try:
        result = app.acquire_token_for_client([scope])
    except MsalServiceError as err:
        # msal raises this for a 5xx or an answer without an OAuth error: the platform proved nothing.
        return Unavailable(what, f"the token endpoint of {authority} failed: {err}; run again later"), None
    except requests.HTTPError as err:
        status = err.response.status_code if err.response is not None else None
        return Unavailable(what, f"the token endpoint of {authority} failed with HTTP {status}; run again later"), None
    except requests.RequestException as err:
        return Unavailable(what, no_answer_text(authority, err)), None
    except ValueError as err:
        return Unavailable(what, f"the token endpoint of {authority} did not answer JSON: {type(err).__name__}"), None
    elapsed_ms = (time.perf_counter() - started) * 1000
    if not isinstance(result, dict):
        return Unavailable(what, f"msal returned no answer for {authority}"), None
    access_token = result.get("access_token")
    if not isinstance(access_token, str):
        return _failure_attempt(base, result, elapsed_ms), None
    try:
        header, claims = decode_without_verifying(access_token)
    except jwt.PyJWTError as err:
        return Unavailable(what, f"the identity platform issued a token that is not a JWT: {type(err).__name__}"), None
    return TokenAttempt(**base, acquired=True, header=header, claims=claims, elapsed_ms=elapsed_ms), access_token


def no_answer_text(authority: str, err: Exception) -> str:
    host = urlsplit(authority).netloc
    return (
        f"no answer from {host} ({type(err).__name__}); check the network path, login_url and ca_bundle, then run again"
    )


# --- The auditor and the admin --------------------------------------------------------------------


class CertificateAppProvider:
    """Graph tokens for a certificate app via msal; msal's in-memory cache serves repeats in the run."""

    def __init__(
        self,
        identity: str,
        description: str,
        client_id: str,
        tenant: str,
        material: certs.SigningMaterial,
        login_url: str,
        session: requests.Session,
    ) -> None:
        self.identity = identity
        self.description = description
        self.client_id = client_id
        self.tenant = tenant
        self.material = material
        self.login_url = login_url
        self.session = session
        self._app: msal.ConfidentialClientApplication | None = None

    def token(self, scope: str) -> str:
        authority = f"{self.login_url}/{self.tenant}"
        try:
            if self._app is None:
                self._app = build_msal_app(self.client_id, self.tenant, self.material, self.login_url, self.session)
            result = self._app.acquire_token_for_client([scope])
        except ValueError as err:
            raise CredentialError(
                f"the {self.identity} ({self.description}) cannot sign in at {authority}: {first_line(str(err))}"
            ) from err
        except MsalServiceError as err:
            raise CredentialError(
                f"the {self.identity} ({self.description}) cannot sign in at {authority}: {err}; run again later"
            ) from err
        except requests.RequestException as err:
            raise CredentialError(
                f"the {self.identity} ({self.description}) cannot sign in: {no_answer_text(authority, err)}"
            ) from err
        access_token = result.get("access_token") if isinstance(result, dict) else None
        if isinstance(access_token, str):
            return access_token
        details = result if isinstance(result, dict) else {}
        codes = details.get("error_codes") or []
        code = f"AADSTS{codes[0]}" if codes else str(details.get("error", "no answer"))
        raise CredentialError(
            f"the {self.identity} ({self.description}) cannot get a token for {scope} from {authority}: "
            f"{code}: {first_line(str(details.get('error_description', '')))}. "
            f"Check {self.identity}_app_id, {self.identity}_cert and that the certificate is uploaded to that app."
        )


@dataclass
class _CachedToken:
    value: str
    expires_on: float


class AzureIdentityProvider:
    """Graph tokens from an azure-identity credential, cached until shortly before they expire."""

    def __init__(self, identity: str, description: str, credential: Any, session: requests.Session) -> None:
        self.identity = identity
        self.description = description
        self.credential = credential
        self.stats = stats_of(session)
        self._cache: dict[str, _CachedToken] = {}

    def token(self, scope: str) -> str:
        cached = self._cache.get(scope)
        if cached is not None and cached.expires_on - REFRESH_MARGIN_S > time.time():
            return cached.value
        from azure.core.exceptions import AzureError  # azure-identity credentials only: not loaded for the others

        self.stats.count("token_requests")
        try:
            access = self.credential.get_token(scope)
        except AzureError as err:
            message = first_line(str(getattr(err, "message", "") or err))
            raise CredentialError(
                f"the {self.identity} ({self.description}) cannot get a token for {scope}: {message}"
            ) from err
        self._cache[scope] = _CachedToken(str(access.token), float(access.expires_on))
        return str(access.token)


def _azure_identity_credential(settings: Settings, identity: Identity, kind: str) -> Any:
    import azure.identity as azid

    cloud = settings.cloud_endpoints
    app_id = getattr(settings, f"{identity}_app_id")
    common: dict[str, Any] = {"authority": cloud.login_url}
    if settings.ca_bundle:
        common["connection_verify"] = str(settings.ca_bundle)
    if not authority_host_is_microsoft(cloud.login_url):
        common["disable_instance_discovery"] = True
    if kind == "default":
        extra = {"managed_identity_client_id": app_id} if app_id else {}
        return azid.DefaultAzureCredential(**common, **extra)
    if kind == "environment":
        return azid.EnvironmentCredential(**common)
    if kind == "workload_identity":
        return azid.WorkloadIdentityCredential(
            tenant_id=settings.tenant, **({"client_id": app_id} if app_id else {}), **common
        )
    if kind == "managed_identity":
        managed: dict[str, Any] = {"client_id": app_id} if app_id else {}
        if settings.ca_bundle:
            managed["connection_verify"] = str(settings.ca_bundle)
        return azid.ManagedIdentityCredential(**managed)
    if kind == "azure_cli":
        return azid.AzureCliCredential(tenant_id=settings.tenant or "")
    if kind == "device_code":

        def show_prompt(verification_uri: str, user_code: str, expires_on: datetime) -> None:
            # stderr, so the prompt never mixes with report output on stdout.
            print(
                f"cbacheck {identity}: open {verification_uri} and enter the code {user_code} "
                f"(valid until {expires_on:%H:%M UTC}).",
                file=sys.stderr,
                flush=True,
            )

        device: dict[str, Any] = {"tenant_id": settings.tenant, "prompt_callback": show_prompt, **common}
        if app_id:
            device["client_id"] = app_id
        return azid.DeviceCodeCredential(**device)
    raise CredentialError(f"{identity}_credential = {kind!r} is not one of: certificate, auto, {AZURE_IDENTITY_KINDS}")


def _certificate_provider(
    settings: Settings, session: requests.Session, identity: str, description: str, app_id: str, cert_setting: str
) -> CertificateAppProvider:
    path = getattr(settings, cert_setting)
    password = getattr(settings, f"{cert_setting}_password")
    if not settings.tenant:
        raise CredentialError(f"the {identity} needs a tenant to sign in to; set tenant (--tenant or CBACHECK_TENANT)")
    try:
        material = certs.load_signing_material(path, password, settings.source(cert_setting))
    except CertificateError as err:
        raise CredentialError(f"the {identity} ({description}) cannot sign in: {err}") from err
    return CertificateAppProvider(
        identity, description, app_id, settings.tenant, material, settings.cloud_endpoints.login_url, session
    )


def graph_token_provider(settings: Settings, session: requests.Session, role: Identity) -> TokenProvider:
    """The Graph credential of the auditor (reads) or the admin (applies fixes), as configured.

    Raises CredentialError when the identity is not configured or its certificate is unusable;
    token failures later raise CredentialError from `token()`, naming the AADSTS code and text.
    """
    kind = getattr(settings, f"{role}_credential")
    app_id = getattr(settings, f"{role}_app_id")
    cert = getattr(settings, f"{role}_cert")
    if kind == "certificate" or (kind == "auto" and app_id and cert):
        if not (app_id and cert):
            raise CredentialError(f"{role}_credential = 'certificate' needs {role}_app_id and {role}_cert")
        return _certificate_provider(settings, session, role, f"certificate app {app_id}", app_id, f"{role}_cert")
    if kind == "auto":
        if role == "admin":
            raise CredentialError(
                "applying fixes needs an admin identity: set admin_app_id and admin_cert (a certificate app with "
                "Application.ReadWrite.All, AppRoleAssignment.ReadWrite.All and RoleManagement.ReadWrite.Directory), "
                "or admin_credential = default / device_code"
            )
        if not (settings.app_id and settings.cert):
            raise CredentialError(
                "no auditor is configured and the app under test has no certificate to read Graph with: set "
                "auditor_app_id and auditor_cert, or auditor_credential = default / device_code"
            )
        # A service principal may read its own application and service principal without any Graph
        # permission (https://learn.microsoft.com/graph/api/serviceprincipal-get); the other reads then answer
        # 403, naming what to grant.
        return _certificate_provider(
            settings,
            session,
            role,
            f"the app under test {settings.app_id}, no auditor configured",
            settings.app_id,
            "cert",
        )
    credential = _azure_identity_credential(settings, role, kind)
    return AzureIdentityProvider(role, f"azure-identity {type(credential).__name__}", credential, session)


def describe_provider(provider: TokenProvider) -> str:
    """How an identity signs in, for the report."""
    return str(getattr(provider, "description", type(provider).__name__))
