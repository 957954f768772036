"""Entra ID endpoints of the sandbox: OpenID discovery, JWKS and the client-credentials token endpoint."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from werkzeug.wrappers import Request, Response

from cbacheck import wellknown
from cbacheck.sandbox.response import Call, json_response
from cbacheck.sandbox.state import (
    CertificateFacts,
    JsonObject,
    TenantState,
    certificate_facts,
    parse_time,
)

ASSERTION_ALGORITHMS: Final = ("RS256", "PS256")
MIN_RSA_BITS: Final = 2048
CLOCK_SKEW_S: Final = 300
TOKEN_LIFETIME_S: Final = 3599
# Entra back-dates iat/nbf of access tokens by five minutes to absorb clock skew.
TOKEN_BACKDATE_S: Final = 300
DEFAULT_SCOPE_SUFFIX: Final = "/.default"
MULTI_TENANT_ALIASES: Final = frozenset({"common", "organizations", "consumers"})
_TENANT_SHAPE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
_CERT_DOCS: Final = "https://learn.microsoft.com/entra/identity-platform/certificate-credentials"


# --- AADSTS errors: one table ------------------------------------------------------------------
# Texts are Microsoft's where FACTS.md 3.5 / PEERS.md (c) quote a real message; entries marked
# UNCONFIRMED use the documented code with wording chosen here (docs/sandbox.md lists them).


@dataclass(frozen=True)
class Aadsts:
    """One Entra error: AADSTS code, OAuth ``error`` value, HTTP status and message template."""

    code: int
    error: str
    status: int
    text: str


AADSTS: Final[dict[str, Aadsts]] = {
    "tenant_not_found": Aadsts(
        90002,
        "invalid_request",
        400,
        "Tenant '{tenant}' not found. This may happen if there are no active subscriptions for "
        "the tenant. Check to make sure you have the correct tenant ID. Check with your "
        "subscription administrator.",
    ),
    # UNCONFIRMED: wording from third-party tables.
    "tenant_malformed": Aadsts(
        900023,
        "invalid_request",
        400,
        "Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain.",
    ),
    # UNCONFIRMED: client credentials against /common or /organizations.
    "no_tenant": Aadsts(
        50059,
        "invalid_request",
        400,
        "No tenant-identifying information found in either the request or implied by any provided credentials.",
    ),
    # UNCONFIRMED wording.
    "missing_parameter": Aadsts(
        900144,
        "invalid_request",
        400,
        "The request body must contain the following parameter: '{parameter}'.",
    ),
    # UNCONFIRMED wording.
    "unsupported_grant": Aadsts(
        70003,
        "unsupported_grant_type",
        400,
        "The app requested an unsupported grant type '{grant_type}'.",
    ),
    "app_not_found": Aadsts(
        700016,
        "unauthorized_client",
        400,
        "Application with identifier '{app_id}' was not found in the directory '{directory}'. "
        "This can happen if the application has not been installed by the administrator of the "
        "tenant or consented to by any user in the tenant. You may have sent your "
        "authentication request to the wrong tenant.",
    ),
    "client_secret": Aadsts(
        7000215,
        "invalid_client",
        401,
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app '{app_id}'.",
    ),
    # UNCONFIRMED: the `error` value.
    "no_assertion": Aadsts(
        7000218,
        "invalid_client",
        401,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ),
    # UNCONFIRMED wording: the doc names the reasons (format, audience, issuer, time range).
    "invalid_jwt": Aadsts(50027, "invalid_client", 401, "JWT token is invalid or malformed. {reason}"),
    "subject_mismatch": Aadsts(
        50048,
        "invalid_client",
        401,
        "Subject mismatches Issuer claim in the client assertion. Contact the tenant admin.",
    ),
    # UNCONFIRMED wording.
    "issuer_mismatch": Aadsts(
        700021,
        "invalid_client",
        401,
        "Client assertion application identifier doesn't match 'client_id' parameter. Review "
        f"the documentation at {_CERT_DOCS} .",
    ),
    "time_range": Aadsts(
        700024,
        "invalid_client",
        401,
        "Client assertion is not within its valid time range. Current time: {now}, assertion "
        "valid from {nbf}, expiry time of assertion {exp}. Review the documentation at "
        f"{_CERT_DOCS} .",
    ),
    "key_not_found": Aadsts(
        700027,
        "invalid_client",
        401,
        "The certificate with identifier used to sign the client assertion is not registered on "
        "application. [Reason - The key was not found., Thumbprint of key used by client: "
        "'{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph "
        "to see configured keys for app Id '{app_id}'. Review the documentation at "
        "https://docs.microsoft.com/en-us/graph/deployments if you are not using the Public "
        "Cloud.]",
    ),
    "key_expired": Aadsts(
        700027,
        "invalid_client",
        401,
        "Client assertion contains an invalid signature. [Reason - The key used is expired., "
        "Thumbprint of key used by client: '{thumbprint}', Found key 'Start={start}, End={end}']",
    ),
    # UNCONFIRMED wording (same family as key_expired).
    "key_not_yet_valid": Aadsts(
        700027,
        "invalid_client",
        401,
        "Client assertion contains an invalid signature. [Reason - The key is not yet valid., "
        "Thumbprint of key used by client: '{thumbprint}', Found key 'Start={start}, End={end}']",
    ),
    # The doc text, with the bracketed detail Entra adds (detail wording UNCONFIRMED).
    "bad_signature": Aadsts(
        700027,
        "invalid_client",
        401,
        "Client assertion failed signature validation. [Reason - The provided signature value "
        "did not match the expected signature value., Thumbprint of key used by client: "
        "'{thumbprint}', Found key 'Start={start}, End={end}']",
    ),
    "no_thumbprint": Aadsts(700027, "invalid_client", 401, "Client assertion failed signature validation."),
    "small_key": Aadsts(
        700027,
        "invalid_client",
        401,
        "RSA key size {size} is less than the minimum required 2048 bits",
    ),
    # UNCONFIRMED wording; the doc says "The application is disabled."
    "app_disabled": Aadsts(7000112, "unauthorized_client", 400, "Application '{app_id}'({name}) is disabled."),
    "scope_missing": Aadsts(
        70011, "invalid_scope", 400, "The provided request must include a 'scope' input parameter."
    ),
    "scope_invalid": Aadsts(
        70011,
        "invalid_scope",
        400,
        "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
    ),
    "resource_not_found": Aadsts(
        500011,
        "invalid_resource",
        400,
        "The resource principal named {resource} was not found in the tenant named {directory}. "
        "This can happen if the application has not been installed by the administrator of the "
        "tenant or consented to by any user in the tenant. You might have sent your "
        "authentication request to the wrong tenant.",
    ),
}


class AadstsError(Exception):
    """A token request fails with an AADSTS error; ``response`` renders Microsoft's body."""

    def __init__(self, key: str, **values: str) -> None:
        self.spec = AADSTS[key]
        self.key = key
        self.message = self.spec.text.format(**values)
        super().__init__(f"AADSTS{self.spec.code}: {self.message}")

    def response(self, call: Call) -> Response:
        now = datetime.now(UTC)
        timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        trace_id = call.request_id
        correlation_id = call.client_request_id
        body = {
            "error": self.spec.error,
            "error_description": (
                f"AADSTS{self.spec.code}: {self.message}\r\nTrace ID: {trace_id}\r\n"
                f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
            ),
            "error_codes": [self.spec.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.spec.code}",
        }
        return json_response(body, self.spec.status, headers=_NO_CACHE)


_NO_CACHE: Final = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


# --- the sandbox's own signing key -------------------------------------------------------------


class AccessTokenError(Exception):
    """An access token presented to Graph or Exchange is missing or not valid; str() says why."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWT headers carry thumbprints."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without ``=`` padding (msal pads x5t, others do not)."""
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """The key the sandbox signs access tokens with, published in its JWKS."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.windows.net")])
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .sign(self.key, hashes.SHA256())
        )
        self.der = self.certificate.public_bytes(serialization.Encoding.DER)
        self.kid = b64url(hashlib.sha1(self.der).digest())  # noqa: S324 - Entra kid is the SHA-1 x5t
        self.public_key = self.key.public_key()

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            dict(claims),
            self.key,
            algorithm="RS256",
            headers={"typ": "JWT", "x5t": self.kid, "kid": self.kid},
        )

    def jwk(self, issuer: str) -> JsonObject:
        numbers = self.public_key.public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64url(n),
            "e": b64url(e),
            "x5c": [base64.b64encode(self.der).decode("ascii")],
            "issuer": issuer,
        }

    def decode(self, token: str, *, audiences: frozenset[str], tenant_id: str) -> JsonObject:
        """Verify an access token the sandbox issued; raise AccessTokenError with the reason."""
        if not token:
            raise AccessTokenError("missing", "Access token is empty.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AccessTokenError("malformed", "IDX14100: JWT is not well formed.") from None
        if header.get("kid") != self.kid:
            raise AccessTokenError("signature", "Access token validation failure: unknown signing key.")
        try:
            claims: JsonObject = jwt.decode(
                token,
                self.public_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "aud", "iss", "tid"]},
                leeway=CLOCK_SKEW_S,
            )
        except jwt.ExpiredSignatureError:
            raise AccessTokenError("expired", "Lifetime validation failed, the token is expired.") from None
        except jwt.InvalidTokenError as exc:
            raise AccessTokenError("signature", f"Access token validation failure. {exc}") from None
        if str(claims.get("aud")).rstrip("/").lower() not in audiences:
            raise AccessTokenError("audience", "Access token validation failure. Invalid audience.")
        if claims.get("iss") != f"https://sts.windows.net/{tenant_id}/":
            raise AccessTokenError("issuer", "Access token validation failure. Invalid issuer.")
        return claims


# --- endpoints ---------------------------------------------------------------------------------


def _dotnet_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%m/%d/%Y %H:%M:%S")


def _aadsts_time(epoch: float | None) -> str:
    if epoch is None:
        return "(none)"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


@dataclass(frozen=True)
class _MatchedKey:
    credential: JsonObject
    facts: CertificateFacts


class IdentityService:
    """The login endpoints of one sandbox tenant."""

    def __init__(self, state: TenantState, signer: TokenSigner) -> None:
        self.state = state
        self.signer = signer

    # tenant path segment
    def _check_tenant(self, tenant: str, *, allow_alias: bool) -> None:
        if tenant.lower() in MULTI_TENANT_ALIASES:
            if allow_alias:
                return
            raise AadstsError("no_tenant")
        if not _TENANT_SHAPE.match(tenant):
            raise AadstsError("tenant_malformed", tenant=tenant)
        if not self.state.resolve_tenant(tenant):
            raise AadstsError("tenant_not_found", tenant=tenant)

    def openid_configuration(self, request: Request, call: Call, tenant: str) -> Response:
        try:
            self._check_tenant(tenant, allow_alias=True)
        except AadstsError as exc:
            # UNCONFIRMED: the `error` value of a discovery failure (recordings sanitize it).
            if exc.key == "tenant_not_found":
                exc.spec = Aadsts(exc.spec.code, "invalid_tenant", 400, exc.spec.text)
            return exc.response(call)
        base = call.base_url
        tid = "{tenantid}" if tenant.lower() in MULTI_TENANT_ALIASES else self.state.tenant_id
        doc = {
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "cloud_instance_name",
                "cloud_instance_host_name",
                "cloud_graph_host_name",
                "msgraph_host",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "kerberos_endpoint": f"{base}/{tenant}/kerberos",
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
        return json_response(doc, headers={"Cache-Control": "max-age=86400, private"})

    def jwks(self, request: Request, call: Call, tenant: str) -> Response:
        try:
            self._check_tenant(tenant, allow_alias=True)
        except AadstsError as exc:
            return exc.response(call)
        issuer = f"{call.base_url}/{self.state.tenant_id}/v2.0"
        return json_response({"keys": [self.signer.jwk(issuer)]})

    def token(self, request: Request, call: Call, tenant: str) -> Response:
        try:
            with self.state.lock:
                body = self._issue(request, call, tenant)
        except AadstsError as exc:
            return exc.response(call)
        return json_response(body, headers={**_NO_CACHE, "x-ms-request-id": call.request_id})

    # the client-credentials grant, checked in the order Entra reports problems
    def _issue(self, request: Request, call: Call, tenant: str) -> JsonObject:
        self._check_tenant(tenant, allow_alias=False)
        form = request.form
        grant_type = form.get("grant_type")
        if not grant_type:
            raise AadstsError("missing_parameter", parameter="grant_type")
        if grant_type != "client_credentials":
            raise AadstsError("unsupported_grant", grant_type=grant_type)
        client_id = form.get("client_id", "")
        if not client_id:
            raise AadstsError("missing_parameter", parameter="client_id")
        app = self.state.application(app_id=client_id)
        sp = self.state.service_principal(app_id=client_id)
        if app is None or sp is None:
            raise AadstsError("app_not_found", app_id=client_id, directory=self.state.display_name)
        if form.get("client_secret"):
            # The sandbox keeps no secret values: every secret is a wrong one.
            raise AadstsError("client_secret", app_id=client_id)
        assertion = form.get("client_assertion", "")
        if not assertion:
            raise AadstsError("no_assertion")
        if form.get("client_assertion_type") != wellknown.CLIENT_ASSERTION_TYPE:
            raise AadstsError("missing_parameter", parameter="client_assertion_type")
        claims = self._verify_assertion(assertion, app, call, tenant)
        if claims.get("sub") != claims.get("iss"):
            raise AadstsError("subject_mismatch")
        if claims.get("iss") != client_id:
            raise AadstsError("issuer_mismatch")
        if sp.get("accountEnabled") is False:
            raise AadstsError("app_disabled", app_id=client_id, name=str(sp.get("displayName")))
        resource, resource_sp = self._resource(form.get("scope"))
        return self._access_token(app, sp, resource, resource_sp)

    def _verify_assertion(self, assertion: str, app: JsonObject, call: Call, tenant: str) -> JsonObject:
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            raise AadstsError("invalid_jwt", reason="The token is not in JWS compact format.") from None
        alg = header.get("alg")
        if alg not in ASSERTION_ALGORITHMS:
            raise AadstsError("invalid_jwt", reason=f"Signing algorithm {alg!r} is not supported; use RS256 or PS256.")
        digest_kind, thumbprint = _thumbprint(header)
        if thumbprint is None:
            raise AadstsError("no_thumbprint")
        hex_print = thumbprint.hex().upper()
        match = self._find_key(app, digest_kind, thumbprint)
        if match is None:
            raise AadstsError("key_not_found", thumbprint=hex_print, app_id=app["appId"])
        if match.facts.key_size < MIN_RSA_BITS:
            raise AadstsError("small_key", size=str(match.facts.key_size))
        start = parse_time(str(match.credential.get("startDateTime")))
        end = parse_time(str(match.credential.get("endDateTime")))
        now = datetime.now(UTC)
        window = {"thumbprint": hex_print, "start": _dotnet_time(start), "end": _dotnet_time(end)}
        if now >= end:
            raise AadstsError("key_expired", **window)
        if now < start - timedelta(seconds=CLOCK_SKEW_S):
            raise AadstsError("key_not_yet_valid", **window)
        try:
            claims: JsonObject = jwt.decode(
                assertion,
                match.facts.certificate.public_key(),  # type: ignore[arg-type]
                algorithms=[str(alg)],
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise AadstsError("bad_signature", **window) from None
        except jwt.InvalidTokenError as exc:
            raise AadstsError("invalid_jwt", reason=f"{exc}.") from None
        self._check_audience(claims.get("aud"), call, tenant)
        self._check_time(claims)
        return claims

    def _find_key(self, app: JsonObject, digest_kind: str, thumbprint: bytes) -> _MatchedKey | None:
        for cred in app.get("keyCredentials") or []:
            if cred.get("type") not in ("AsymmetricX509Cert", "X509CertAndPassword"):
                continue
            if not self.state.in_effect(str(cred.get("keyId", ""))):
                continue  # added too recently: not yet replicated to the token service
            try:
                facts = certificate_facts(str(cred.get("key", "")))
            except ValueError:
                continue
            digest = facts.sha256 if digest_kind == "sha256" else facts.sha1
            if digest == thumbprint:
                return _MatchedKey(cred, facts)
        return None

    def _check_audience(self, aud: object, call: Call, tenant: str) -> None:
        audiences = aud if isinstance(aud, list) else [aud]
        for value in audiences:
            if not isinstance(value, str):
                continue
            parts = urlsplit(value)
            segments = parts.path.strip("/").split("/")
            if (
                parts.scheme == "https"
                and (parts.netloc == urlsplit(call.base_url).netloc or parts.netloc == "login.microsoftonline.com")
                and len(segments) >= 3
                and self.state.resolve_tenant(segments[0])
                and "/".join(segments[1:]) in ("oauth2/v2.0/token", "oauth2/token")
            ):
                return
        raise AadstsError(
            "invalid_jwt",
            reason=(
                f"Unexpected audience {aud!r}; the assertion's aud must be the token endpoint, "
                f"{call.base_url}/{tenant}/oauth2/v2.0/token."
            ),
        )

    def _check_time(self, claims: Mapping[str, Any]) -> None:
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float):
            raise AadstsError("invalid_jwt", reason="The assertion has no 'exp' claim.")
        now = time.time()
        too_late = now > exp + CLOCK_SKEW_S
        too_early = isinstance(nbf, int | float) and now < nbf - CLOCK_SKEW_S
        if too_late or too_early:
            raise AadstsError(
                "time_range",
                now=_aadsts_time(now),
                nbf=_aadsts_time(nbf if isinstance(nbf, int | float) else None),
                exp=_aadsts_time(exp),
            )

    def _resource(self, scope: str | None) -> tuple[str, JsonObject]:
        if not scope or not scope.strip():
            raise AadstsError("scope_missing")
        scopes = scope.split()
        resources = {s[: -len(DEFAULT_SCOPE_SUFFIX)] for s in scopes if s.endswith(DEFAULT_SCOPE_SUFFIX)}
        if len(resources) != 1 or len(scopes) != 1:
            raise AadstsError("scope_invalid", scope=scope)
        resource = resources.pop()
        resource_sp = self.state.service_principal_for_resource(resource)
        if resource_sp is None:
            raise AadstsError("resource_not_found", resource=resource, directory=self.state.tenant_id)
        return resource, resource_sp

    def _access_token(self, app: JsonObject, sp: JsonObject, resource: str, resource_sp: JsonObject) -> JsonObject:
        now = int(time.time())
        tid = self.state.tenant_id
        claims: JsonObject = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{tid}/",
            "iat": now - TOKEN_BACKDATE_S,
            "nbf": now - TOKEN_BACKDATE_S,
            "exp": now + TOKEN_LIFETIME_S,
            "aio": b64url(secrets.token_bytes(48)),
            "app_displayname": app.get("displayName"),
            "appid": app["appId"],
            "appidacr": "2",
            "idp": f"https://sts.windows.net/{tid}/",
            "idtyp": "app",
            "oid": sp["id"],
            "rh": f"1.{b64url(secrets.token_bytes(32))}.",
            "sub": sp["id"],
            "tid": tid,
            "uti": b64url(uuid.uuid4().bytes),
            "ver": "1.0",
        }
        roles = self.state.granted_app_roles(sp, resource_sp)
        if roles:
            claims["roles"] = roles
        wids = self.state.active_directory_roles(sp)
        if wids:
            claims["wids"] = wids
        return {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_S,
            "ext_expires_in": TOKEN_LIFETIME_S,
            "access_token": self.signer.sign(claims),
        }


def _thumbprint(header: Mapping[str, Any]) -> tuple[str, bytes | None]:
    """The certificate thumbprint an assertion header names: x5t#S256 first, then x5t."""
    for name, kind in (("x5t#S256", "sha256"), ("x5t", "sha1")):
        value = header.get(name)
        if isinstance(value, str) and value:
            try:
                return kind, b64url_decode(value)
            except (binascii.Error, ValueError):
                return kind, None
    return "sha1", None
