"""Generating a self-signed certificate for app-only sign-in, as New-SelfSignedCertificate does."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cbacheck.certs.inspecting import MIN_RSA_KEY_SIZE
from cbacheck.certs.reading import PASSWORD_ENV
from cbacheck.errors import CbaCheckError

MAX_GENERATED_KEY_SIZE: Final = 8192
# A century: enough for any real use, and far from the year 9999 that an X.509 date cannot pass.
MAX_DAYS: Final = 36500
# New-SelfSignedCertificate also back-dates NotBefore, so a host whose clock runs a little behind
# still accepts the certificate at once.
BACKDATE: Final = timedelta(minutes=5)


@dataclass(frozen=True)
class GeneratedCertificate:
    """What `generate_certificate` wrote: the paths and what the Entra portal will show."""

    subject: str
    cer_path: Path  # DER, the file to upload to the app
    pem_path: Path  # certificate + private key, mode 0600
    pfx_path: Path | None  # only when a password was given
    sha1_thumbprint: str
    sha256_thumbprint: str
    not_before: datetime
    not_after: datetime
    der_base64: str
    key_size: int
    key_encrypted: bool


def generate_certificate(
    subject: str,
    out_dir: Path,
    *,
    days: int = 365,
    key_size: int = 2048,
    password: str | None = None,
    now: datetime | None = None,
) -> GeneratedCertificate:
    """Create a self-signed RSA/SHA-256 certificate for app-only sign-in, as New-SelfSignedCertificate does.

    Writes NAME.cer (DER, to upload), NAME.pem (certificate + key, mode 0600, key encrypted when a
    password is given) and NAME.pfx (only with a password). Refuses to overwrite anything.
    """
    name = _subject_name(subject)
    common_name = name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    file_stem = _file_stem(str(common_name), subject)
    _check_request(days, key_size, password, out_dir)
    targets = _targets(out_dir, file_stem, with_pfx=password is not None)

    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    not_before = moment - BACKDATE
    not_after = not_before + timedelta(days=days)
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    certificate = _self_signed_certificate(name, key, not_before, not_after)
    der = certificate.public_bytes(serialization.Encoding.DER)

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_all_or_nothing(_file_contents(targets, file_stem, key, certificate, password))
    return GeneratedCertificate(
        subject=certificate.subject.rfc4514_string(),
        cer_path=targets[0],
        pem_path=targets[1],
        pfx_path=targets[2] if password is not None else None,
        sha1_thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),
        sha256_thumbprint=certificate.fingerprint(hashes.SHA256()).hex().upper(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        der_base64=base64.b64encode(der).decode("ascii"),
        key_size=key_size,
        key_encrypted=password is not None,
    )


def _check_request(days: int, key_size: int, password: str | None, out_dir: Path) -> None:
    """CbaCheckError for a value cbacheck will not create a certificate with; nothing is written then."""
    if not 1 <= days <= MAX_DAYS:
        raise CbaCheckError(f"--days {days} is out of range: give 1 to {MAX_DAYS} (100 years)")
    if not MIN_RSA_KEY_SIZE <= key_size <= MAX_GENERATED_KEY_SIZE:
        raise CbaCheckError(
            f"--key-size {key_size} is out of range: Entra ID needs at least {MIN_RSA_KEY_SIZE} bits "
            f"(cbacheck creates at most {MAX_GENERATED_KEY_SIZE})"
        )
    if password == "":
        raise CbaCheckError(
            f"{PASSWORD_ENV} is set but empty; unset it for an unencrypted key, or set a password to protect the key"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise CbaCheckError(f"--out {str(out_dir)!r} is a file, not a folder")


def _targets(out_dir: Path, file_stem: str, *, with_pfx: bool) -> list[Path]:
    """NAME.cer, NAME.pem (and NAME.pfx); CbaCheckError when any of them exists already."""
    targets = [out_dir / f"{file_stem}.cer", out_dir / f"{file_stem}.pem"]
    if with_pfx:
        targets.append(out_dir / f"{file_stem}.pfx")
    existing = [str(target) for target in targets if target.exists() or target.is_symlink()]
    if existing:
        raise CbaCheckError(
            f"refusing to overwrite {', '.join(repr(p) for p in existing)}; nothing was written. "
            "Choose another --out folder or --subject, or move the old files away first."
        )
    return targets


def _file_contents(
    targets: list[Path], file_stem: str, key: rsa.RSAPrivateKey, certificate: x509.Certificate, password: str | None
) -> list[tuple[Path, bytes, int]]:
    """(path, bytes, mode) of each file: the DER to upload, the PEM with the key, the PFX with a password."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode("utf-8"))
        if password is not None
        else serialization.NoEncryption()
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    contents: list[tuple[Path, bytes, int]] = [(targets[0], der, 0o644), (targets[1], pem, 0o600)]
    if password is not None:
        pfx = pkcs12.serialize_key_and_certificates(file_stem.encode("utf-8"), key, certificate, None, encryption)
        contents.append((targets[2], pfx, 0o600))
    return contents


def _subject_name(subject: str) -> x509.Name:
    text = subject.strip()
    if not text.upper().startswith("CN="):
        raise CbaCheckError(f"--subject {subject!r} must look like CN=NAME, for example CN=exo-automation")
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as err:
        raise CbaCheckError(f"--subject {subject!r} is not a distinguished name like CN=NAME ({err})") from None
    common_names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not common_names or not str(common_names[0].value).strip():
        raise CbaCheckError(f"--subject {subject!r} has an empty CN; use CN=NAME, for example CN=exo-automation")
    return name


def _file_stem(common_name: str, subject: str) -> str:
    """The CN as a file name: letters, digits, dot, dash and underscore; anything else becomes '-'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", common_name.strip()).strip(".-")
    if not stem:
        raise CbaCheckError(
            f"--subject {subject!r}: the CN gives no usable file name; use letters or digits, e.g. CN=exo-automation"
        )
    return stem


def _self_signed_certificate(
    name: x509.Name, key: rsa.RSAPrivateKey, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    public_key: CertificateIssuerPublicKeyTypes = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)  # positive, at most 127 bits
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # The client assertion is a signature (digitalSignature); keyEncipherment matches the
            # New-SelfSignedCertificate default so the same file works for Windows tooling.
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_all_or_nothing(contents: list[tuple[Path, bytes, int]]) -> None:
    """Create each file exclusively with its final mode; on any failure remove what was written."""
    written: list[Path] = []
    try:
        for target, data, mode in contents:
            # O_EXCL: never follow or replace something that appeared since the check; the mode is set
            # at creation so the key is never readable by others, not even for an instant.
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
            written.append(target)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
    except FileExistsError as err:
        _remove(written)
        raise CbaCheckError(
            f"refusing to overwrite {err.filename!r}, which appeared while writing; nothing was written"
        ) from None
    except OSError as err:
        _remove(written)
        raise CbaCheckError(
            f"cannot write {err.filename!r}: {err.strerror or err}; nothing was written. "
            "Check that the --out folder is writable."
        ) from None


def _remove(paths: list[Path]) -> None:
    for path in paths:
        # Best effort: the original error is the one to report.
        with contextlib.suppress(OSError):
            path.unlink()
