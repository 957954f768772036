"""Values the sandbox's objects are made of: Graph times, GUIDs and the certificate inside a keyCredential."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

JsonObject = dict[str, Any]

# The appRoleId of an assignment that grants no particular role ("default access").
DEFAULT_ACCESS_ROLE: Final = "00000000-0000-0000-0000-000000000000"
_ID_NAMESPACE: Final = uuid.UUID("0b6f1b1e-6a52-4c59-9d2e-4bde3a1c7f10")


# --- time and identifiers -----------------------------------------------------------------------


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, whole seconds (Graph keeps no fractions)."""
    return datetime.now(UTC).replace(microsecond=0)


def graph_time(value: datetime) -> str:
    """A datetime as Graph writes DateTimeOffset values: ``2025-01-31T12:00:00Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """Parse an ISO 8601 time as Graph sends it; naive values are taken as UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def stable_guid(*parts: str) -> str:
    """A GUID derived from the given parts, the same on every run."""
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


def new_guid() -> str:
    """A fresh random GUID."""
    return str(uuid.uuid4())


def is_guid(value: object) -> bool:
    """True when value is a string holding a GUID."""
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def assignment_id() -> str:
    """An id shaped like the ids Graph gives app role and directory role assignments."""
    raw = uuid.uuid4().bytes + uuid.uuid4().bytes
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")[:43]


# --- certificates inside keyCredentials ---------------------------------------------------------


@dataclass(frozen=True)
class CertificateFacts:
    """What the sandbox needs from the certificate in one keyCredential."""

    certificate: x509.Certificate
    der: bytes
    sha1: bytes
    sha256: bytes
    key_size: int
    is_rsa: bool

    @property
    def sha1_hex(self) -> str:
        return self.sha1.hex().upper()


@functools.lru_cache(maxsize=4096)
def certificate_facts(key_b64: str) -> CertificateFacts:
    """Decode a keyCredential ``key`` (base64 DER); raises ValueError when it is not a certificate."""
    try:
        der = base64.b64decode("".join(key_b64.split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not valid base64 ({exc})") from exc
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ValueError(f"not the DER bytes of an X.509 certificate ({exc})") from exc
    public_key = cert.public_key()
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    key_size = public_key.key_size if isinstance(public_key, rsa.RSAPublicKey) else 0
    return CertificateFacts(
        certificate=cert,
        der=der,
        sha1=hashlib.sha1(der).digest(),  # noqa: S324 - the x5t thumbprint is SHA-1 by definition
        sha256=hashlib.sha256(der).digest(),
        key_size=key_size,
        is_rsa=is_rsa,
    )


def key_credential_for(cert_der: bytes, *, key_id: str, **overrides: Any) -> JsonObject:
    """A complete keyCredential for a DER certificate, as Graph stores an uploaded one."""
    key = base64.b64encode(cert_der).decode("ascii")
    return key_credential_from_facts(certificate_facts(key), key, key_id, overrides)


def key_credential_from_facts(
    facts: CertificateFacts, key: str, key_id: str, overrides: Mapping[str, Any]
) -> JsonObject:
    """A keyCredential for a decoded certificate: thumbprint, subject and window from it, then overrides."""
    cert = facts.certificate
    cred: JsonObject = {
        "customKeyIdentifier": base64.b64encode(facts.sha1).decode(),
        "displayName": cert.subject.rfc4514_string(),
        "endDateTime": graph_time(cert.not_valid_after_utc),
        "key": key,
        "keyId": key_id,
        "startDateTime": graph_time(cert.not_valid_before_utc),
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
    }
    cred.update(overrides)
    return cred
