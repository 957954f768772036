"""Inspecting a certificate: the CertFacts the checks judge (validity, key, usages, thumbprints) and their rows."""

from __future__ import annotations

import base64
import stat
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from cbacheck.facts import CertFacts

if TYPE_CHECKING:
    from cbacheck.certs.reading import LoadedFile

# Entra rejects smaller RSA keys for client assertions (AADSTS50032 "RSA key size 1024 is less than ...").
MIN_RSA_KEY_SIZE: Final = 2048
# Hashes CBA-CERT-006 accepts as "SHA-256 or stronger".
STRONG_SIGNATURE_HASHES: Final = frozenset({"sha256", "sha384", "sha512", "sha3-256", "sha3-384", "sha3-512"})
KEY_USAGE_FLAGS: Final = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)
EKU_NAMES: Final = {
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}


def certificate_facts(loaded: LoadedFile, path: Path, source: str, read_at: datetime) -> CertFacts:
    """The facts of a certificate file that was read, for the checks of link 1 to judge."""
    certificate = loaded.certificate
    key = loaded.private_key
    public_key = certificate.public_key()
    key_usage = _key_usage(certificate)
    extended_key_usage = _extended_key_usage(certificate)
    matches: bool | None = None
    reason = loaded.no_key_reason
    if key is not None:
        matches = key_matches(key, certificate)
        reason = "" if matches else "the private key does not belong to the certificate (their public keys differ)"
    return CertFacts(
        path=path,
        source=source,
        file_format=loaded.file_format,
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial=_serial_hex(certificate.serial_number),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        key_type=key_type(public_key),
        key_size=_key_size(public_key),
        signature_hash=_signature_hash(certificate),
        key_usage=key_usage,
        extended_key_usage=extended_key_usage,
        sha1_thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),
        sha256_thumbprint=certificate.fingerprint(hashes.SHA256()).hex().upper(),
        der_base64=base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii"),
        self_signed=_self_signed(certificate),
        private_key_present=key is not None,
        private_key_matches=matches,
        private_key_reason=reason,
        key_encrypted=loaded.key_encrypted if key is not None else None,
        file_mode=_file_mode(path) if key is not None else None,
        read_at=read_at,
    )


def _serial_hex(serial: int) -> str:
    text = f"{serial:X}"
    return text.zfill(len(text) + len(text) % 2)


def key_type(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return "EC"
    if isinstance(key, dsa.DSAPublicKey | dsa.DSAPrivateKey):
        return "DSA"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey):
        return "Ed448"
    return type(key).__name__


def _key_size(key: object) -> int | None:
    if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey):
        return key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.key_size
    return None


def _signature_hash(certificate: x509.Certificate) -> str | None:
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        # An algorithm cryptography does not know: report its OID rather than guess (never "strong").
        return certificate.signature_algorithm_oid.dotted_string
    return algorithm.name if algorithm is not None else None


def _key_usage(certificate: x509.Certificate) -> tuple[str, ...] | None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    names = [name for attribute, name in KEY_USAGE_FLAGS if getattr(usage, attribute)]
    if usage.key_agreement:  # encipher_only / decipher_only are only defined with keyAgreement
        names += [
            name
            for attribute, name in (("encipher_only", "encipherOnly"), ("decipher_only", "decipherOnly"))
            if getattr(usage, attribute)
        ]
    return tuple(names)


def _extended_key_usage(certificate: x509.Certificate) -> tuple[str, ...] | None:
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return tuple(EKU_NAMES.get(oid, oid.dotted_string) for oid in usages)


def _self_signed(certificate: x509.Certificate) -> bool:
    if certificate.subject != certificate.issuer:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    except ValueError:
        # cryptography refuses legacy hashes (SHA-1) here; such certificates exist, so verify the RSA signature
        # directly to still tell self-signed from issued.
        return _rsa_signature_valid(certificate)
    return True


def _rsa_signature_valid(certificate: x509.Certificate) -> bool:
    public_key = certificate.public_key()
    try:
        algorithm = certificate.signature_hash_algorithm
        parameters = certificate.signature_algorithm_parameters
    except (UnsupportedAlgorithm, ValueError):
        return False
    if not isinstance(public_key, rsa.RSAPublicKey) or algorithm is None:
        return False
    if not isinstance(parameters, padding.PKCS1v15 | padding.PSS):
        return False
    try:
        public_key.verify(certificate.signature, certificate.tbs_certificate_bytes, parameters, algorithm)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True


def key_matches(key: PrivateKeyTypes, certificate: x509.Certificate) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return bool(
            key.public_key().public_bytes(serialization.Encoding.DER, spki)
            == certificate.public_key().public_bytes(serialization.Encoding.DER, spki)
        )
    except (ValueError, UnsupportedAlgorithm):
        return False


def _file_mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def describe(facts: CertFacts) -> list[tuple[str, str]]:
    """Rows (label, value) for `cbacheck cert inspect`; public facts only."""
    if not facts.private_key_present:
        key_text = "absent"
    elif facts.private_key_matches:
        key_text = "present, matches the certificate"
    else:
        key_text = "present, does NOT match the certificate"
    if facts.key_encrypted is not None:
        key_text += ", password-protected" if facts.key_encrypted else ", not password-protected"
    if facts.private_key_reason:
        key_text += f" ({facts.private_key_reason})"
    size = f" {facts.key_size} bits" if facts.key_size is not None else ""
    rows = [
        ("File", f"{facts.path} ({facts.source})"),
        ("Format", {"der": "DER", "pem": "PEM", "pkcs12": "PKCS#12 (PFX)"}.get(facts.file_format, facts.file_format)),
        ("Subject", facts.subject),
        ("Issuer", facts.issuer + (" (self-signed)" if facts.self_signed else "")),
        ("Serial", facts.serial),
        ("Valid from", _utc(facts.not_before)),
        ("Valid until", _utc(facts.not_after)),
        ("Lifetime", f"{facts.lifetime_days:.0f} days"),
        ("Key", f"{facts.key_type}{size}"),
        ("Signature hash", facts.signature_hash or "none (the algorithm hashes internally)"),
        ("Key usage", _join(facts.key_usage)),
        ("Extended key usage", _join(facts.extended_key_usage)),
        ("SHA-1 thumbprint", facts.sha1_thumbprint),
        ("SHA-256 thumbprint", facts.sha256_thumbprint),
        ("Private key", key_text),
    ]
    if facts.file_mode is not None:
        rows.append(("File mode", f"{facts.file_mode:04o}"))
    return rows


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _join(values: Iterable[str] | None) -> str:
    return ", ".join(values) if values is not None else "(extension absent)"
