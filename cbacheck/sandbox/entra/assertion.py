"""Verification of a client assertion: the JWT an app signs with its certificate to ask for a token.

https://learn.microsoft.com/entra/identity-platform/certificate-credentials
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import jwt

from cbacheck.sandbox.entra.errors import AadstsError
from cbacheck.sandbox.entra.signer import CLOCK_SKEW_S, b64url_decode
from cbacheck.sandbox.response import Call
from cbacheck.sandbox.state import TenantState
from cbacheck.sandbox.values import CertificateFacts, JsonObject, certificate_facts, parse_time

log = logging.getLogger("cbacheck.sandbox")

ASSERTION_ALGORITHMS: Final = ("RS256", "PS256")
MIN_RSA_BITS: Final = 2048
CERTIFICATE_KEY_TYPES: Final = ("AsymmetricX509Cert", "X509CertAndPassword")
# Signature checks only: audience, issuer and times are checked below with Entra's own errors.
_SIGNATURE_ONLY: Final = {
    "verify_aud": False,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


@dataclass(frozen=True)
class MatchedKey:
    """The app's keyCredential whose certificate the assertion header names."""

    credential: JsonObject
    facts: CertificateFacts


class AssertionVerifier:
    """Checks client assertions against the keyCredentials of the tenant's applications."""

    def __init__(self, state: TenantState) -> None:
        self.state = state

    def verify(self, assertion: str, app: JsonObject, call: Call, tenant: str) -> JsonObject:
        """The assertion's claims, once header, key, key window, signature, audience and times hold."""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            raise AadstsError("invalid_jwt", reason="The token is not in JWS compact format.") from None
        alg = header.get("alg")
        if alg not in ASSERTION_ALGORITHMS:
            raise AadstsError("invalid_jwt", reason=f"Signing algorithm {alg!r} is not supported; use RS256 or PS256.")
        digest_kind, thumbprint = thumbprint_of(header)
        if thumbprint is None:
            raise AadstsError("no_thumbprint")
        hex_print = thumbprint.hex().upper()
        match = self.find_key(app, digest_kind, thumbprint)
        if match is None:
            raise AadstsError("key_not_found", thumbprint=hex_print, app_id=app["appId"])
        window = _check_key(match, hex_print)
        try:
            claims: JsonObject = jwt.decode(
                assertion,
                match.facts.certificate.public_key(),  # type: ignore[arg-type]
                algorithms=[str(alg)],
                options=_SIGNATURE_ONLY,  # type: ignore[arg-type]
            )
        except jwt.InvalidSignatureError:
            raise AadstsError("bad_signature", **window) from None
        except jwt.InvalidTokenError as exc:
            raise AadstsError("invalid_jwt", reason=f"{exc}.") from None
        self._check_audience(claims.get("aud"), call, tenant)
        _check_time(claims)
        return claims

    def find_key(self, app: JsonObject, digest_kind: str, thumbprint: bytes) -> MatchedKey | None:
        """The app's certificate key with this SHA-1 or SHA-256 thumbprint, once it has propagated."""
        for cred in app.get("keyCredentials") or []:
            if cred.get("type") not in CERTIFICATE_KEY_TYPES:
                continue
            if not self.state.in_effect(str(cred.get("keyId", ""))):
                continue  # added too recently: not yet replicated to the token service
            if cred.get("key") is None:
                _explain_key_without_bytes(app, cred, digest_kind, thumbprint)
                continue
            try:
                facts = certificate_facts(str(cred.get("key", "")))
            except ValueError:
                continue
            digest = facts.sha256 if digest_kind == "sha256" else facts.sha1
            if digest == thumbprint:
                return MatchedKey(cred, facts)
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


def _explain_key_without_bytes(app: JsonObject, cred: JsonObject, digest_kind: str, thumbprint: bytes) -> None:
    """Log why a key the assertion names is not used: the state holds its thumbprint but not its certificate."""
    if digest_kind != "sha1" or not _names_thumbprint(cred.get("customKeyIdentifier"), thumbprint):
        return
    log.warning(
        "sandbox: app %s: keyCredential %s has thumbprint %s but no key bytes (the state was captured "
        "without $select=keyCredentials), so it cannot verify the assertion; answering AADSTS700027",
        app.get("appId"),
        cred.get("keyId"),
        thumbprint.hex().upper(),
    )


def _names_thumbprint(custom_key_identifier: object, thumbprint: bytes) -> bool:
    """customKeyIdentifier holds the SHA-1 thumbprint as base64 (as Graph computes it) or as hex."""
    if not isinstance(custom_key_identifier, str):
        return False
    if custom_key_identifier.upper() == thumbprint.hex().upper():
        return True
    try:
        return base64.b64decode(custom_key_identifier, validate=True) == thumbprint
    except (binascii.Error, ValueError):
        return False


def _check_key(match: MatchedKey, hex_print: str) -> dict[str, str]:
    """RSA size and the keyCredential's start/end window; returns the window for error texts."""
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
    return window


def _check_time(claims: Mapping[str, Any]) -> None:
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


def thumbprint_of(header: Mapping[str, Any]) -> tuple[str, bytes | None]:
    """The certificate thumbprint an assertion header names: x5t#S256 first, then x5t."""
    for name, kind in (("x5t#S256", "sha256"), ("x5t", "sha1")):
        value = header.get(name)
        if isinstance(value, str) and value:
            try:
                return kind, b64url_decode(value)
            except (binascii.Error, ValueError):
                return kind, None
    return "sha1", None


def _dotnet_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%m/%d/%Y %H:%M:%S")


def _aadsts_time(epoch: float | None) -> str:
    if epoch is None:
        return "(none)"
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    except (OverflowError, OSError, ValueError):  # beyond the years a datetime holds
        return str(epoch)
