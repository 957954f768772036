"""Read, inspect and create the local certificate of link 1, and load its key for signing (local files only)."""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cbacheck.errors import CbaCheckError, CertificateError
from cbacheck.facts import CertFacts

# Entra rejects smaller RSA keys for client assertions (AADSTS700027 "RSA key size 1024 is less than ...").
MIN_RSA_KEY_SIZE: Final = 2048
# Hashes CBA-CERT-006 accepts as "SHA-256 or stronger".
STRONG_SIGNATURE_HASHES: Final = frozenset({"sha256", "sha384", "sha512", "sha3-256", "sha3-384", "sha3-512"})
PASSWORD_ENV: Final = "CBACHECK_CERT_PASSWORD"
PASSWORD_FILE_ENV: Final = "CBACHECK_CERT_PASSWORD_FILE"
MAX_GENERATED_KEY_SIZE: Final = 8192
# A PFX with a long chain is a few tens of kilobytes; anything this large is the wrong file.
MAX_FILE_BYTES: Final = 1024 * 1024
# New-SelfSignedCertificate also back-dates NotBefore, so a host whose clock runs a little behind
# still accepts the certificate at once.
BACKDATE: Final = timedelta(minutes=5)

_PEM_BLOCK_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_PKCS7_DATA_OID_PREFIX = bytes.fromhex("06092a864886f70d0107")  # 1.2.840.113549.1.7.x (data / signedData)

_KEY_USAGE_FLAGS: Final = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)
_EKU_NAMES: Final = {
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}

NEXT_STEP_NEW = (
    "Check the path (a .cer/.crt, .pem or .pfx/.p12 file), or create a certificate with `cbacheck cert new`."
)


def _password_next_step(password_env: str) -> str:
    return (
        f"Set the password in {password_env} (or name a file holding it in {password_env}_FILE), "
        "or use a PEM file instead."
    )


@dataclass(frozen=True)
class SigningMaterial:
    """The certificate and its RSA key, ready for msal's client_credential; the key stays in memory."""

    private_key_pem: str = field(repr=False)  # PKCS#8, unencrypted: never log or persist it
    certificate_pem: str
    sha1_thumbprint: str  # 40 uppercase hex
    sha256_thumbprint: str  # 64 uppercase hex


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


@dataclass(frozen=True)
class _Loaded:
    """A parsed certificate file before it becomes facts."""

    certificate: x509.Certificate
    private_key: PrivateKeyTypes | None
    file_format: str
    key_encrypted: bool | None
    no_key_reason: str


# --- Reading -----------------------------------------------------------------------------------


def read_certificate(
    path: Path,
    password: str | None,
    source: str,
    *,
    now: datetime | None = None,
    password_env: str = PASSWORD_ENV,
) -> CertFacts:
    """Read a .cer/.crt (DER or PEM), .pem (certificate and key) or .pfx/.p12 file into CertFacts.

    The format is detected from the content. A file that cannot be read at all raises
    CertificateError; what is wrong with a readable certificate (wrong key, EC key, expired...)
    is recorded as a fact for the checks to judge.
    """
    read_at = now or datetime.now(UTC)
    data = _read_bytes(path, source)
    loaded = _load(data, path, password, source, password_env)
    try:
        return _facts(loaded, path, source, read_at)
    except (ValueError, UnsupportedAlgorithm) as err:
        # cryptography parses extensions, names and keys lazily, so a malformed part only shows up here.
        raise CertificateError(str(path), source, f"the certificate is malformed ({err})", NEXT_STEP_NEW) from None


def load_signing_material(
    path: Path, password: str | None, source: str, *, password_env: str = PASSWORD_ENV
) -> SigningMaterial:
    """The RSA key and certificate to sign client assertions with; CertificateError when unusable."""
    loaded = _load(_read_bytes(path, source), path, password, source, password_env)
    key = loaded.private_key
    if key is None:
        raise CertificateError(
            str(path),
            source,
            f"no private key: {loaded.no_key_reason}",
            "Use the PFX or PEM that holds the private key created with this certificate.",
        )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError(
            str(path),
            source,
            f"the private key is {_key_type(key)}, but Entra ID signs client assertions with RSA only",
            "Create an RSA certificate with `cbacheck cert new` and upload it to the app.",
        )
    if not _key_matches(key, loaded.certificate):
        raise CertificateError(
            str(path),
            source,
            "the private key does not belong to the certificate (their public keys differ)",
            "Use the key file created together with this certificate.",
        )
    certificate = loaded.certificate
    return SigningMaterial(
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii"),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        sha1_thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),
        sha256_thumbprint=certificate.fingerprint(hashes.SHA256()).hex().upper(),
    )


def _read_bytes(path: Path, source: str) -> bytes:
    def fail(reason: str, next_step: str = NEXT_STEP_NEW) -> CertificateError:
        return CertificateError(str(path), source, reason, next_step)

    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise fail("it is a directory, not a certificate file")
        if not stat.S_ISREG(info.st_mode):
            # A pipe or device would block or never end; a certificate is always a plain file.
            raise fail("it is not a regular file (a pipe, socket or device)")
        if info.st_size > MAX_FILE_BYTES:
            raise fail(f"the file is {info.st_size} bytes, far larger than any certificate file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail("the file does not exist") from None
    except IsADirectoryError:
        raise fail("it is a directory, not a certificate file") from None
    except PermissionError:
        raise fail(
            "permission denied", "Run as a user who may read the file, or fix its permissions (chmod 600)."
        ) from None
    except OSError as err:
        if err.errno == errno.EISDIR:
            raise fail("it is a directory, not a certificate file") from None
        raise fail(f"the file cannot be read: {err.strerror or err}") from None
    if not data.strip():
        raise fail("the file is empty")
    return data


def _load(data: bytes, path: Path, password: str | None, source: str, password_env: str) -> _Loaded:
    if b"-----BEGIN" in data:
        return _load_pem(data, path, password, source, password_env)
    declared = _der_declared_length(data)
    if declared is not None and declared > len(data):
        raise CertificateError(
            str(path),
            source,
            f"the file is truncated: it holds {len(data)} bytes but its content declares {declared}",
            "Copy the file again from where it was exported, or create a new certificate with `cbacheck cert new`.",
        )
    if _looks_like_pkcs12(data):
        return _load_pkcs12(data, path, password, source, password_env)
    try:
        return _Loaded(
            x509.load_der_x509_certificate(data),
            None,
            "der",
            None,
            "the file holds only the certificate (DER); the private key is in the PFX or PEM created with it",
        )
    except ValueError:
        pass
    if _der_private_key(data):
        raise CertificateError(
            str(path),
            source,
            "the file holds a private key but no certificate",
            "Use the certificate file (.cer/.pem/.pfx) instead; a PEM may hold the certificate and key together.",
        )
    raise CertificateError(
        str(path),
        source,
        "not a certificate: the content is neither DER X.509, PEM nor PKCS#12 (PFX)",
        NEXT_STEP_NEW,
    )


def _der_declared_length(data: bytes) -> int | None:
    """Total length the outer DER SEQUENCE declares, or None when the bytes do not start one."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def _looks_like_pkcs12(data: bytes) -> bool:
    """PFX = SEQUENCE { INTEGER 3, ContentInfo { OID pkcs7-data|signedData, ... }, ... } (RFC 7292)."""
    header = data[:32]
    version_at = header.find(b"\x02\x01\x03")
    return 0 < version_at <= 6 and _PKCS7_DATA_OID_PREFIX in header[version_at:]


def _der_private_key(data: bytes) -> bool:
    try:
        serialization.load_der_private_key(data, None)
    except TypeError:
        return True  # encrypted PKCS#8: still a key
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def _load_pkcs12(data: bytes, path: Path, password: str | None, source: str, password_env: str) -> _Loaded:
    try:
        # A PFX without a password is tried first: the password is then irrelevant and the key unprotected.
        key, certificate, extra_certificates = pkcs12.load_key_and_certificates(data, None)
        encrypted = False
    except ValueError as no_password_error:
        if "Could not deserialize" in str(no_password_error):
            raise CertificateError(
                str(path),
                source,
                "the PFX is damaged or truncated (Could not deserialize PKCS12 data)",
                "Export the PFX again (Export-PfxCertificate), or create a new certificate with `cbacheck cert new`.",
            ) from None
        if password is None:
            raise CertificateError(
                str(path),
                source,
                f"the PFX is protected by a password and {password_env} is not set",
                _password_next_step(password_env),
            ) from None
        try:
            key, certificate, extra_certificates = pkcs12.load_key_and_certificates(data, password.encode("utf-8"))
        except ValueError as err:
            raise CertificateError(
                str(path),
                source,
                f"the password from {password_env} was rejected ({err})",
                "Check the password, or export the PFX again with a known one, or use a PEM file instead.",
            ) from None
        encrypted = True
    if certificate is None and extra_certificates:
        # A PFX exported without its key keeps the certificate as an unpaired bag.
        certificate = extra_certificates[0]
    if certificate is None:
        raise CertificateError(
            str(path),
            source,
            "the PFX holds no certificate",
            "Export the PFX again with its certificate (Export-PfxCertificate -Cert ...).",
        )
    return _Loaded(
        certificate,
        key,
        "pkcs12",
        encrypted if key is not None else None,
        "" if key is not None else "the PFX holds only the certificate, no private key",
    )


def _load_pem(data: bytes, path: Path, password: str | None, source: str, password_env: str) -> _Loaded:
    blocks = [(match.group(1).decode("ascii"), match.group(0)) for match in _PEM_BLOCK_RE.finditer(data)]
    cert_blocks = [block for label, block in blocks if label in ("CERTIFICATE", "X509 CERTIFICATE")]
    key_blocks = [block for label, block in blocks if label.endswith("PRIVATE KEY")]
    if not cert_blocks:
        if key_blocks:
            raise CertificateError(
                str(path),
                source,
                "the PEM holds a private key but no certificate",
                "Append the certificate to the file (or use the .cer/.pfx instead) so key and certificate "
                "travel together.",
            )
        labels = ", ".join(sorted({label for label, _ in blocks})) or "none complete"
        raise CertificateError(
            str(path),
            source,
            f"the PEM holds no certificate (blocks found: {labels}); it may be truncated",
            NEXT_STEP_NEW,
        )
    certificates: list[x509.Certificate] = []
    for block in cert_blocks:
        try:
            certificates.append(x509.load_pem_x509_certificate(block))
        except ValueError as err:
            raise CertificateError(
                str(path),
                source,
                f"the PEM certificate block is damaged ({err})",
                "Copy the file again from where it was exported, or create one with `cbacheck cert new`.",
            ) from None
    if not key_blocks:
        return _Loaded(
            certificates[0],
            None,
            "pem",
            None,
            "the PEM holds only the certificate; the private key is in the PFX or PEM created with it",
        )
    key, encrypted = _load_pem_key(key_blocks[0], path, password, source, password_env)
    # A chain file lists several certificates: the one the key belongs to is the app's.
    leaf = next((cert for cert in certificates if _key_matches(key, cert)), certificates[0])
    return _Loaded(leaf, key, "pem", encrypted, "")


def _load_pem_key(
    block: bytes, path: Path, password: str | None, source: str, password_env: str
) -> tuple[PrivateKeyTypes, bool]:
    try:
        return serialization.load_pem_private_key(block, None), False
    except TypeError:
        pass  # encrypted: needs the password
    except (ValueError, UnsupportedAlgorithm) as err:
        raise CertificateError(
            str(path),
            source,
            f"the PEM private key block is damaged or of an unsupported kind ({err})",
            "Export the key again, or create a new certificate with `cbacheck cert new`.",
        ) from None
    if password is None:
        raise CertificateError(
            str(path),
            source,
            f"the private key in the PEM is encrypted and {password_env} is not set",
            _password_next_step(password_env),
        )
    try:
        return serialization.load_pem_private_key(block, password.encode("utf-8")), True
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CertificateError(
            str(path),
            source,
            f"the password from {password_env} does not decrypt the private key in the PEM",
            "Check the password, or export the key again with a known one.",
        ) from None


# --- Facts ---------------------------------------------------------------------------------------


def _facts(loaded: _Loaded, path: Path, source: str, read_at: datetime) -> CertFacts:
    certificate = loaded.certificate
    key = loaded.private_key
    public_key = certificate.public_key()
    key_usage = _key_usage(certificate)
    extended_key_usage = _extended_key_usage(certificate)
    matches: bool | None = None
    reason = loaded.no_key_reason
    if key is not None:
        matches = _key_matches(key, certificate)
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
        key_type=_key_type(public_key),
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


def _key_type(key: object) -> str:
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
    names = [name for attribute, name in _KEY_USAGE_FLAGS if getattr(usage, attribute)]
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
    return tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in usages)


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


def _key_matches(key: PrivateKeyTypes, certificate: x509.Certificate) -> bool:
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


# --- Creating ----------------------------------------------------------------------------------


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
    if days < 1:
        raise CbaCheckError(f"--days {days} must be at least 1")
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
    targets = [out_dir / f"{file_stem}.cer", out_dir / f"{file_stem}.pem"]
    if password is not None:
        targets.append(out_dir / f"{file_stem}.pfx")
    existing = [str(target) for target in targets if target.exists() or target.is_symlink()]
    if existing:
        raise CbaCheckError(
            f"refusing to overwrite {', '.join(repr(p) for p in existing)}; nothing was written. "
            "Choose another --out folder or --subject, or move the old files away first."
        )

    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    not_before = moment - BACKDATE
    not_after = not_before + timedelta(days=days)
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    certificate = _self_signed_certificate(name, key, not_before, not_after)

    der = certificate.public_bytes(serialization.Encoding.DER)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode("utf-8"))
        if password is not None
        else serialization.NoEncryption()
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    contents: list[tuple[Path, bytes, int]] = [(targets[0], der, 0o644), (targets[1], pem, 0o600)]
    if password is not None:
        pfx = pkcs12.serialize_key_and_certificates(file_stem.encode("utf-8"), key, certificate, None, encryption)
        contents.append((targets[2], pfx, 0o600))

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_all_or_nothing(contents)
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
