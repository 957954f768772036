"""Reading certificate files (.cer/.crt, .pem, .pfx/.p12) and the key material to sign client assertions with."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from cbacheck.certs import validated
from cbacheck.certs.inspecting import certificate_facts, key_matches, key_type
from cbacheck.config import Refused, Settings, read_regular_file
from cbacheck.errors import CertificateError, InputError
from cbacheck.facts import CertFacts

PASSWORD_ENV: Final = "CBACHECK_CERT_PASSWORD"
PASSWORD_FILE_ENV: Final = "CBACHECK_CERT_PASSWORD_FILE"
# A PFX with a long chain is a few tens of kilobytes; anything this large is the wrong file.
MAX_FILE_BYTES: Final = 1024 * 1024
_PEM_BLOCK_RE = re.compile(validated.PEM_BLOCK_PATTERN, re.DOTALL)
_PKCS7_DATA_OID_PREFIX = bytes.fromhex("06092a864886f70d0107")  # 1.2.840.113549.1.7.x (data / signedData)
# What cryptography raises for a certificate it will not parse: ValueError for broken DER, and classes of its
# own (not ValueError subclasses) for an X.509 version it does not know, a duplicated extension or a general
# name type it does not support. Caught by class, so every certificate of that kind is one read error.
CERTIFICATE_REJECTED: Final = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
NEXT_STEP_NEW = (
    "Check the path (a .cer/.crt, .pem or .pfx/.p12 file), or create a certificate with `cbacheck cert new`."
)


def _password_next_step(password_env: str) -> str:
    return (
        f"Set the password in {password_env} (or name a file holding it in {password_env}_FILE), "
        "or use a PEM file instead."
    )


class PasswordProblem(CertificateError):
    """The private key is protected and the password is missing or does not open it."""


@dataclass(frozen=True)
class SigningMaterial:
    """The certificate and its RSA key, ready for msal's client_credential; the key stays in memory."""

    private_key_pem: str = field(repr=False)  # PKCS#8, unencrypted: never log or persist it
    certificate_pem: str
    sha1_thumbprint: str  # 40 uppercase hex
    sha256_thumbprint: str  # 64 uppercase hex
    # The key already parsed and validated, for signing without parsing the PEM again.
    private_key: rsa.RSAPrivateKey | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class LoadedFile:
    """A parsed certificate file before it becomes facts."""

    certificate: x509.Certificate
    private_key: PrivateKeyTypes | None
    file_format: str
    key_encrypted: bool | None
    no_key_reason: str


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
        return certificate_facts(loaded, path, source, read_at)
    except CERTIFICATE_REJECTED as err:
        # cryptography parses extensions, names and keys lazily, so a malformed part only shows up here.
        raise _malformed(path, source, err) from None


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
            f"the private key is {key_type(key)}, but Entra ID signs client assertions with RSA only",
            "Create an RSA certificate with `cbacheck cert new` and upload it to the app.",
        )
    if not key_matches(key, loaded.certificate):
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
        private_key=key,
    )


def _read_bytes(path: Path, source: str) -> bytes:
    """The certificate file's bytes (config.files' one regular-file reader); CertificateError worded for link 1."""
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)
    except Refused as refused:
        reason, next_step = _certificate_file_refusal(refused)
        raise CertificateError(str(path), source, reason, next_step) from None
    if not data.strip():
        raise CertificateError(str(path), source, "the file is empty", NEXT_STEP_NEW)
    return data


def _certificate_file_refusal(refused: Refused) -> tuple[str, str]:
    if refused.kind == "permission":
        return "permission denied", "Run as a user who may read the file, or fix its permissions (chmod 600)."
    reason = {
        "missing": "the file does not exist",
        "directory": "it is a directory, not a certificate file",
        # A pipe or device would block or never end; a certificate is always a plain file.
        "not-regular": "it is not a regular file (a pipe, socket or device)",
        "too-large": f"the file is {refused.size} bytes, far larger than any certificate file",
        "grew": f"the file grew past {MAX_FILE_BYTES} bytes while being read, far larger than any certificate file",
    }.get(refused.kind, f"the file cannot be read: {refused.detail}")
    return reason, NEXT_STEP_NEW


def _malformed(path: Path, source: str, err: Exception) -> CertificateError:
    return CertificateError(str(path), source, f"the certificate is malformed ({err})", NEXT_STEP_NEW)


# Parsing a private key runs OpenSSL's RSA consistency check (50-100 ms for 2048 bits), and one run reads the
# same files for link 1, the preflight, the app's token and the auditor: each content (with its password) is
# parsed once per process. Keyed by digests, so a file rewritten by a fix is parsed again; failures are not kept.
_PARSED_LIMIT: Final = 16
_parsed: OrderedDict[tuple[bytes, bytes | None], LoadedFile] = OrderedDict()
_parsed_lock = threading.Lock()


def _load(data: bytes, path: Path, password: str | None, source: str, password_env: str) -> LoadedFile:
    digest = hashlib.sha256(data).digest()
    password_digest = hashlib.sha256(password.encode("utf-8")).digest() if password is not None else None
    # The lock is held while parsing: the auditor's Graph and Exchange paths ask for the same key at once, and
    # the second must find the first's result rather than parse again.
    with _parsed_lock:
        cached = _parsed.get((digest, password_digest))
        if cached is not None:
            return cached
        try:
            loaded = _load_by_format(data, path, password, source, password_env)
        except CertificateError:
            raise
        except CERTIFICATE_REJECTED as err:
            raise _malformed(path, source, err) from None
        _parsed[(digest, password_digest)] = loaded
        while len(_parsed) > _PARSED_LIMIT:
            _parsed.popitem(last=False)
        return loaded


def _load_by_format(data: bytes, path: Path, password: str | None, source: str, password_env: str) -> LoadedFile:
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
        return LoadedFile(
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


def _load_pkcs12(data: bytes, path: Path, password: str | None, source: str, password_env: str) -> LoadedFile:
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
            raise PasswordProblem(
                str(path),
                source,
                f"the PFX is protected by a password and {password_env} is not set",
                _password_next_step(password_env),
            ) from None
        try:
            key, certificate, extra_certificates = pkcs12.load_key_and_certificates(data, password.encode("utf-8"))
        except ValueError as err:
            raise PasswordProblem(
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
    return LoadedFile(
        certificate,
        key,
        "pkcs12",
        encrypted if key is not None else None,
        "" if key is not None else "the PFX holds only the certificate, no private key",
    )


def _load_pem(data: bytes, path: Path, password: str | None, source: str, password_env: str) -> LoadedFile:
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
        except CERTIFICATE_REJECTED as err:
            raise CertificateError(
                str(path),
                source,
                f"the PEM certificate block is damaged ({err})",
                "Copy the file again from where it was exported, or create one with `cbacheck cert new`.",
            ) from None
    if not key_blocks:
        return LoadedFile(
            certificates[0],
            None,
            "pem",
            None,
            "the PEM holds only the certificate; the private key is in the PFX or PEM created with it",
        )
    key, encrypted = _load_pem_key(key_blocks[0], path, password, source, password_env)
    # A chain file lists several certificates: the one the key belongs to is the app's.
    leaf = next((cert for cert in certificates if key_matches(key, cert)), certificates[0])
    return LoadedFile(leaf, key, "pem", encrypted, "")


def _load_pem_key(
    block: bytes, path: Path, password: str | None, source: str, password_env: str
) -> tuple[PrivateKeyTypes, bool]:
    """The key and whether it was encrypted; OpenSSL validates it unless these very bytes were validated before."""
    digest = validated.key_digest(block)
    known = validated.validated_before(digest)
    checked_apart = not known and validated.validated_apart(digest)
    key, encrypted = _parse_pem_key(block, path, password, source, password_env, known or checked_apart)
    if not known and isinstance(key, rsa.RSAPrivateKey):
        validated.remember(digest)
    return key, encrypted


def _parse_pem_key(
    block: bytes, path: Path, password: str | None, source: str, password_env: str, validated_before: bool
) -> tuple[PrivateKeyTypes, bool]:
    try:
        return serialization.load_pem_private_key(block, None, unsafe_skip_rsa_key_validation=validated_before), False
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
        raise PasswordProblem(
            str(path),
            source,
            f"the private key in the PEM is encrypted and {password_env} is not set",
            _password_next_step(password_env),
        )
    try:
        key = serialization.load_pem_private_key(
            block, password.encode("utf-8"), unsafe_skip_rsa_key_validation=validated_before
        )
        return key, True
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PasswordProblem(
            str(path),
            source,
            f"the password from {password_env} does not decrypt the private key in the PEM",
            "Check the password, or export the key again with a known one.",
        ) from None


def preflight(settings: Settings) -> None:
    """InputError, before anything is evaluated, when the app's certificate file cannot be used as given.

    A password that is missing or wrong, and a file without the private key (the .cer given instead
    of the .pfx), are mistakes in the input: nothing about the certificate could be judged, and a
    plan built on them could replace a healthy certificate. A file that cannot be parsed is left
    to CBA-CERT-001, which fails with the reason.
    """
    path = settings.cert
    if path is None:
        return
    source = settings.source("cert")
    setting = f"cert = {str(path)!r} ({source})"
    try:
        loaded = _load(_read_bytes(path, source), path, settings.cert_password, source, PASSWORD_ENV)
        certificate_facts(loaded, path, source, datetime.now(UTC))
    except PasswordProblem as err:
        raise InputError(
            [
                f"{setting}: {err.reason}; set cert_password through {PASSWORD_ENV} or a file named by "
                f"{PASSWORD_FILE_ENV}"
            ]
        ) from None
    except (CertificateError, *CERTIFICATE_REJECTED):
        return  # unreadable or malformed: CBA-CERT-001 fails with the reason
    if loaded.private_key is None:
        raise InputError(
            [
                f"{setting} holds no private key ({loaded.no_key_reason}); set cert to the .pfx or .pem "
                "that holds the key created with this certificate"
            ]
        )
