"""Certificates of every shape the tests need, made at run time (never committed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "not-the-password"

# DER of AlgorithmIdentifier OIDs: sha256WithRSAEncryption and sha1WithRSAEncryption (same length).
_SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
_SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")

_RSA_KEYS: dict[int, rsa.RSAPrivateKey] = {}


def rsa_key(size: int = 2048) -> rsa.RSAPrivateKey:
    """RSA keys are slow to make: one per size per test session is enough."""
    if size not in _RSA_KEYS:
        _RSA_KEYS[size] = rsa.generate_private_key(public_exponent=65537, key_size=size)
    return _RSA_KEYS[size]


def fresh_rsa_key(size: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def dsa_key() -> dsa.DSAPrivateKey:
    return dsa.generate_private_key(key_size=2048)


def key_usage(*, digital_signature: bool = True, key_encipherment: bool = True) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def make_certificate(
    key: CertificateIssuerPrivateKeyTypes | None = None,
    *,
    common_name: str = "exo-automation",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    usage: x509.KeyUsage | None = None,
    with_key_usage: bool = True,
    extended_key_usage: bool = True,
) -> x509.Certificate:
    """A self-signed SHA-256 certificate, valid from a day before NOW for 180 days unless told otherwise."""
    key = key or rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=179))
    )
    if with_key_usage:
        builder = builder.add_extension(usage or key_usage(), critical=True)
    if extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(key, hashes.SHA256())


def sha1_signed_certificate(key: rsa.RSAPrivateKey | None = None) -> x509.Certificate:
    """A SHA-1 signed certificate, assembled by hand: cryptography no longer signs certificates with SHA-1."""
    key = key or rsa_key()
    template = make_certificate(key)
    tbs = template.tbs_certificate_bytes
    assert tbs.count(_SHA256_WITH_RSA) == 1
    tbs = tbs.replace(_SHA256_WITH_RSA, _SHA1_WITH_RSA)
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = _der(0x30, _SHA1_WITH_RSA + b"\x05\x00")
    der = _der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(encoded)]) + encoded + content


def der_bytes(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def pem_bytes(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: CertificateIssuerPrivateKeyTypes, password: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def pfx_bytes(
    certificate: x509.Certificate | None,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey | None,
    password: str | None,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(b"exo-automation", key, certificate, None, encryption)


def write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


@dataclass(frozen=True)
class CertFiles:
    """One certificate written in every format the reader accepts."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey
    der_cer: Path
    pem_cer: Path
    pem_with_key: Path
    encrypted_pem: Path
    pfx_with_password: Path
    pfx_without_password: Path


def write_all_formats(directory: Path) -> CertFiles:
    key = rsa_key()
    certificate = make_certificate(key)
    return CertFiles(
        certificate=certificate,
        key=key,
        der_cer=write(directory / "der.cer", der_bytes(certificate), 0o644),
        pem_cer=write(directory / "pem.cer", pem_bytes(certificate), 0o644),
        pem_with_key=write(directory / "plain.pem", pem_bytes(certificate) + key_pem(key)),
        encrypted_pem=write(directory / "encrypted.pem", pem_bytes(certificate) + key_pem(key, PASSWORD), 0o644),
        pfx_with_password=write(directory / "protected.pfx", pfx_bytes(certificate, key, PASSWORD), 0o644),
        pfx_without_password=write(directory / "open.pfx", pfx_bytes(certificate, key, None)),
    )
