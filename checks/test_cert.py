"""Link 1, the local certificate and its private key (CBA-CERT-*)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from cbacheck.certs import MIN_RSA_KEY_SIZE, STRONG_SIGNATURE_HASHES
from cbacheck.chain import cannot_verify, follows_from
from cbacheck.config import Settings
from cbacheck.facts import CertFacts

if TYPE_CHECKING:
    from cbacheck.evidence import Evidence

THUMBPRINT_SHA1 = re.compile(r"^[0-9A-F]{40}$")
# Group and other permission bits: any of them set lets someone besides the owner read or change the key.
GROUP_OTHER_BITS = 0o077
# EdDSA certificates are signed without a separate hash; their strength matches SHA-512.
HASHLESS_KEY_TYPES = frozenset({"Ed25519", "Ed448"})


def _name(cert: CertFacts) -> str:
    """How a finding names the certificate: subject and the thumbprint the Entra portal shows."""
    return f"certificate {cert.subject} (SHA-1 {cert.sha1_thumbprint}) in {str(cert.path)!r}"


def _identity(evidence: Evidence, cert: CertFacts) -> None:
    evidence.add("file", {"path": str(cert.path), "from": cert.source, "format": cert.file_format})
    evidence.add("subject", cert.subject)
    evidence.add("sha1_thumbprint", cert.sha1_thumbprint)
    evidence.add("sha256_thumbprint", cert.sha256_thumbprint)
    evidence.add("checked_at", cert.read_at)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@pytest.mark.requirement("CBA-CERT-001")
def test_certificate_file_readable(local_cert_facts: CertFacts, evidence: Evidence) -> None:
    """The certificate file can be read

    Everything else in link 1, and the thumbprint Entra ID matches in link 3, comes from this file.
    An unreadable file fails here with the reader's message; the plugin does that in the fixture.
    """
    cert = local_cert_facts
    _identity(evidence, cert)
    evidence.observed("format", cert.file_format)
    evidence.observed("issuer", cert.issuer)
    evidence.observed("serial", cert.serial)
    evidence.observed("der_base64", cert.der_base64)
    evidence.expected("a .cer/.crt (DER or PEM), .pem or .pfx/.p12 file holding one X.509 certificate")
    assert cert.der_base64 and THUMBPRINT_SHA1.match(cert.sha1_thumbprint), (
        f"{str(cert.path)!r} ({cert.source}) gave no usable certificate: thumbprint {cert.sha1_thumbprint!r}; "
        "expected a certificate with a 40-hex SHA-1 thumbprint"
    )


@pytest.mark.requirement("CBA-CERT-002")
def test_private_key_matches_certificate(local_cert_facts: CertFacts, evidence: Evidence) -> None:
    """A private key is available and matches the certificate

    The app signs its client assertion with the private key; Entra ID checks the signature against
    the uploaded certificate, so a missing or foreign key fails with AADSTS700027.
    """
    cert = local_cert_facts
    _identity(evidence, cert)
    evidence.observed("private_key_present", cert.private_key_present)
    evidence.observed("private_key_matches", cert.private_key_matches)
    if cert.private_key_reason:
        evidence.observed("reason", cert.private_key_reason)
    evidence.expected("the file holds a private key whose public key equals the certificate's")
    assert cert.private_key_present, (
        f"{_name(cert)} has no private key: {cert.private_key_reason or 'none found'}; "
        "expected the PFX or PEM holding the key created with the certificate"
    )
    assert cert.private_key_matches is True, (
        f"{_name(cert)}: {cert.private_key_reason or 'the private key does not match'}; "
        "expected the key created with this certificate"
    )


@pytest.mark.requirement("CBA-CERT-003")
def test_certificate_valid_now(local_cert_facts: CertFacts, evidence: Evidence) -> None:
    """The certificate is valid now

    Entra ID refuses assertions signed with a certificate outside its validity (AADSTS700027
    "The key used is expired"). "Now" is when the file was read.
    """
    cert = local_cert_facts
    now = cert.read_at
    _identity(evidence, cert)
    evidence.observed("notBefore", cert.not_before)
    evidence.observed("notAfter", cert.not_after)
    evidence.expected(f"notBefore <= now < notAfter, now = {now.isoformat()}")
    assert cert.not_before <= now, (
        f"{_name(cert)} is not valid until {_day(cert.not_before)}, after the check time {_day(now)}; "
        "expected notBefore <= now (check the host clock, or wait)"
    )
    assert now < cert.not_after, (
        f"{_name(cert)} expired {_day(cert.not_after)}, before the check time {_day(now)}; expected notAfter > now"
    )


@pytest.mark.requirement("CBA-CERT-004")
def test_certificate_not_expiring_within_rotation_window(
    local_cert_facts: CertFacts, cba_settings: Settings, evidence: Evidence
) -> None:
    """The certificate does not expire within the rotation window

    App-only sign-in stops the moment the certificate expires; rotating inside the window leaves
    time to upload the new one and prove it works.
    """
    cert = local_cert_facts
    now = cert.read_at
    window = cba_settings.expiry_days
    left = cert.not_after - now
    _identity(evidence, cert)
    evidence.observed("notAfter", cert.not_after)
    evidence.observed("days_left", round(left.total_seconds() / 86400, 1))
    evidence.expected(f"at least {window} days left (expiry_days, {cba_settings.source('expiry_days')})")
    if left <= timedelta(0):
        follows_from("CBA-CERT-003", f"{_name(cert)} already expired {_day(cert.not_after)}")
    assert left >= timedelta(days=window), (
        f"{_name(cert)} expires {_day(cert.not_after)}, {left.days} days after the check; "
        f"expected at least {window} days (expiry_days)"
    )


@pytest.mark.requirement("CBA-CERT-005")
def test_key_is_rsa_2048_or_larger(local_cert_facts: CertFacts, evidence: Evidence) -> None:
    """The key is RSA of at least 2048 bits

    Entra ID signs-in apps with RSA certificates only, and rejects keys under 2048 bits
    (AADSTS50032 WeakRsaKey, "RSA key size 1024 is less than the minimum required 2048 bits").
    """
    cert = local_cert_facts
    _identity(evidence, cert)
    evidence.observed("key_type", cert.key_type)
    evidence.observed("key_size", cert.key_size)
    evidence.expected(f"RSA, at least {MIN_RSA_KEY_SIZE} bits")
    assert cert.key_type == "RSA", f"{_name(cert)} has a {cert.key_type} key; expected RSA"
    assert cert.key_size is not None and cert.key_size >= MIN_RSA_KEY_SIZE, (
        f"{_name(cert)} has an RSA key of {cert.key_size} bits; expected at least {MIN_RSA_KEY_SIZE}"
    )


@pytest.mark.requirement("CBA-CERT-006")
def test_signature_hash_sha256_or_stronger(local_cert_facts: CertFacts, evidence: Evidence) -> None:
    """The certificate is signed with SHA-256 or stronger

    A hardening policy: SHA-1 signatures are collision-prone. Entra checks the assertion's signature and
    the key, not the certificate's own signature hash, so a SHA-1 certificate still signs in.
    """
    cert = local_cert_facts
    _identity(evidence, cert)
    evidence.observed("signature_hash", cert.signature_hash)
    evidence.expected(f"one of {', '.join(sorted(STRONG_SIGNATURE_HASHES))} (or an EdDSA signature, hashless)")
    if cert.signature_hash is None:
        assert cert.key_type in HASHLESS_KEY_TYPES, (
            f"{_name(cert)} names no signature hash for a {cert.key_type} key; expected SHA-256 or stronger"
        )
        return
    assert cert.signature_hash in STRONG_SIGNATURE_HASHES, (
        f"{_name(cert)} is signed with {cert.signature_hash}; expected SHA-256 or stronger"
    )


@pytest.mark.requirement("CBA-CERT-007")
def test_certificate_lifetime_within_policy(
    local_cert_facts: CertFacts, cba_settings: Settings, evidence: Evidence
) -> None:
    """The certificate lifetime is within the policy maximum

    Short-lived certificates limit what a stolen key is worth (CISA MS.AAD.5.7: 365 days).
    """
    cert = local_cert_facts
    maximum = cba_settings.max_lifetime_days
    _identity(evidence, cert)
    evidence.observed("notBefore", cert.not_before)
    evidence.observed("notAfter", cert.not_after)
    evidence.observed("lifetime_days", round(cert.lifetime_days, 2))
    evidence.expected(
        f"notAfter - notBefore <= {maximum} days (max_lifetime_days, {cba_settings.source('max_lifetime_days')})"
    )
    assert cert.lifetime_days <= maximum, (
        f"{_name(cert)} is valid for {cert.lifetime_days:.1f} days ({_day(cert.not_before)} to "
        f"{_day(cert.not_after)}); expected at most {maximum} days (max_lifetime_days)"
    )


@pytest.mark.requirement("CBA-CERT-008")
def test_private_key_protected_at_rest(local_cert_facts: CertFacts, evidence: Evidence) -> None:
    """The private key at rest is protected

    Anyone who reads the key can sign in as the app. A password (encrypted PEM, PFX) or a file
    only its owner can read protects it. A file without a key (.cer) says nothing about where
    the key is kept: that follows from CBA-CERT-002 and cannot pass here.
    """
    cert = local_cert_facts
    _identity(evidence, cert)
    evidence.observed("private_key_present", cert.private_key_present)
    evidence.observed("key_encrypted", cert.key_encrypted)
    evidence.observed("file_mode", None if cert.file_mode is None else f"{cert.file_mode:04o}")
    evidence.expected("an encrypted PEM or a PFX with a password, or a key file with no group/other access (0600)")
    if not cert.private_key_present:
        follows_from("CBA-CERT-002", f"{_name(cert)} holds no private key, so its protection at rest cannot be judged")
    if cert.key_encrypted:
        return
    if cert.file_mode is None:
        cannot_verify(
            "the permissions of the key file",
            f"the mode of {str(cert.path)!r} could not be read, and the key in it is not encrypted",
        )
    assert cert.file_mode & GROUP_OTHER_BITS == 0, (
        f"the private key of {_name(cert)} is not password-protected and the file mode is "
        f"{cert.file_mode:04o} (group/others have access); expected a password or mode 0600"
    )


@pytest.mark.requirement("CBA-CERT-009")
def test_key_usage_allows_digital_signature(local_cert_facts: CertFacts, evidence: Evidence) -> None:
    """Key usage, if present, allows digital signatures

    The client assertion is a signature; a KeyUsage extension that leaves out digitalSignature
    forbids exactly that. Without the extension, every usage is allowed.
    """
    cert = local_cert_facts
    _identity(evidence, cert)
    evidence.observed("key_usage", list(cert.key_usage) if cert.key_usage is not None else "(extension absent)")
    evidence.observed("extended_key_usage", list(cert.extended_key_usage or ()))
    evidence.expected("no KeyUsage extension, or one that includes digitalSignature")
    if cert.key_usage is None:
        return
    assert "digitalSignature" in cert.key_usage, (
        f"{_name(cert)} has KeyUsage {', '.join(cert.key_usage) or '(empty)'}; expected it to include digitalSignature"
    )
