"""The key the sandbox signs access tokens with, and the check of a token presented to Graph or Exchange."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cbacheck.sandbox.values import JsonObject

CLOCK_SKEW_S: Final = 300


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
