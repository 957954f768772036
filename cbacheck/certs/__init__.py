"""The local certificate of link 1: reading files, inspecting them into facts, generating new ones."""

from cbacheck.certs.generating import (
    BACKDATE,
    MAX_DAYS,
    MAX_GENERATED_KEY_SIZE,
    GeneratedCertificate,
    generate_certificate,
)
from cbacheck.certs.inspecting import MIN_RSA_KEY_SIZE, STRONG_SIGNATURE_HASHES, describe
from cbacheck.certs.reading import (
    MAX_FILE_BYTES,
    PASSWORD_ENV,
    PASSWORD_FILE_ENV,
    SigningMaterial,
    load_signing_material,
    preflight,
    read_certificate,
)
from cbacheck.facts import CertFacts

__all__ = [
    "BACKDATE",
    "MAX_DAYS",
    "MAX_FILE_BYTES",
    "MAX_GENERATED_KEY_SIZE",
    "MIN_RSA_KEY_SIZE",
    "PASSWORD_ENV",
    "PASSWORD_FILE_ENV",
    "STRONG_SIGNATURE_HASHES",
    "CertFacts",
    "GeneratedCertificate",
    "SigningMaterial",
    "describe",
    "generate_certificate",
    "load_signing_material",
    "preflight",
    "read_certificate",
]
