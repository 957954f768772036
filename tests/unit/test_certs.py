"""Reading, loading and generating certificates (cbacheck.certs) on files made at run time."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from certfactory import (
    NOW,
    PASSWORD,
    WRONG_PASSWORD,
    CertFiles,
    der_bytes,
    dsa_key,
    ec_key,
    fresh_rsa_key,
    key_pem,
    key_usage,
    make_certificate,
    pem_bytes,
    pfx_bytes,
    rsa_key,
    sha1_signed_certificate,
    write,
    write_all_formats,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from cbacheck import certs
from cbacheck.errors import CbaCheckError, CertificateError

SOURCE = "option --cert"
THUMBPRINT_SHA1 = re.compile(r"^[0-9A-F]{40}$")
THUMBPRINT_SHA256 = re.compile(r"^[0-9A-F]{64}$")


@pytest.fixture
def files(tmp_path: Path) -> CertFiles:
    return write_all_formats(tmp_path)


def read(path: Path, password: str | None = None) -> certs.CertFacts:
    return certs.read_certificate(path, password, SOURCE, now=NOW)


def read_error(path: Path, password: str | None = None) -> str:
    with pytest.raises(CertificateError) as caught:
        read(path, password)
    message = str(caught.value)
    assert str(path) in message
    assert SOURCE in message
    assert "Traceback" not in message
    assert "\n" not in message, "one clear line"
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in message
    assert caught.value.path == str(path)
    assert caught.value.source == SOURCE
    assert caught.value.next_step
    return message


# --- Every accepted format ------------------------------------------------------------------------


def test_der_cer_gives_certificate_facts_without_key(files: CertFiles) -> None:
    facts = read(files.der_cer)
    expected_sha1 = hashlib.sha1(der_bytes(files.certificate)).hexdigest().upper()
    assert facts.file_format == "der"
    assert facts.subject == "CN=exo-automation"
    assert facts.issuer == "CN=exo-automation"
    assert facts.self_signed is True
    assert facts.sha1_thumbprint == expected_sha1
    assert facts.sha256_thumbprint == hashlib.sha256(der_bytes(files.certificate)).hexdigest().upper()
    assert base64.b64decode(facts.der_base64) == der_bytes(files.certificate)
    assert facts.key_type == "RSA"
    assert facts.key_size == 2048
    assert facts.signature_hash == "sha256"
    assert facts.key_usage == ("digitalSignature", "keyEncipherment")
    assert facts.extended_key_usage == ("clientAuth",)
    assert facts.not_before == files.certificate.not_valid_before_utc
    assert facts.not_after == files.certificate.not_valid_after_utc
    assert facts.serial == f"{files.certificate.serial_number:X}".zfill(len(facts.serial))
    assert facts.private_key_present is False
    assert facts.private_key_matches is None
    assert facts.key_encrypted is None
    assert facts.file_mode is None
    assert "only the certificate" in facts.private_key_reason
    assert facts.read_at == NOW
    assert facts.source == SOURCE
    assert facts.path == files.der_cer


def test_pem_cer_is_detected_by_content(files: CertFiles) -> None:
    facts = read(files.pem_cer)
    assert facts.file_format == "pem"
    assert facts.sha1_thumbprint == read(files.der_cer).sha1_thumbprint
    assert facts.private_key_present is False


def test_der_content_in_a_pem_named_file_is_read_as_der(tmp_path: Path, files: CertFiles) -> None:
    misnamed = write(tmp_path / "really-der.pem", files.der_cer.read_bytes())
    assert read(misnamed).file_format == "der"


def test_pem_with_unencrypted_key_reports_matching_key_and_mode(files: CertFiles) -> None:
    facts = read(files.pem_with_key)
    assert facts.file_format == "pem"
    assert facts.private_key_present is True
    assert facts.private_key_matches is True
    assert facts.private_key_reason == ""
    assert facts.key_encrypted is False
    assert facts.file_mode == 0o600


def test_encrypted_pem_with_password_reports_encrypted_key(files: CertFiles) -> None:
    facts = read(files.encrypted_pem, PASSWORD)
    assert facts.private_key_matches is True
    assert facts.key_encrypted is True
    assert facts.file_mode == 0o644


def test_pfx_with_password(files: CertFiles) -> None:
    facts = read(files.pfx_with_password, PASSWORD)
    assert facts.file_format == "pkcs12"
    assert facts.private_key_matches is True
    assert facts.key_encrypted is True
    assert facts.sha1_thumbprint == read(files.der_cer).sha1_thumbprint


def test_pfx_without_password_reads_even_when_a_password_is_set(files: CertFiles) -> None:
    for password in (None, PASSWORD):
        facts = read(files.pfx_without_password, password)
        assert facts.file_format == "pkcs12"
        assert facts.private_key_matches is True
        assert facts.key_encrypted is False


def test_pfx_with_legacy_tripledes_protection(tmp_path: Path, files: CertFiles) -> None:
    legacy = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(PASSWORD.encode())
    )
    data = pkcs12.serialize_key_and_certificates(b"legacy", files.key, files.certificate, None, legacy)
    facts = read(write(tmp_path / "legacy.pfx", data), PASSWORD)
    assert facts.key_encrypted is True
    assert facts.private_key_matches is True


def test_pfx_with_certificate_only_has_no_key(tmp_path: Path, files: CertFiles) -> None:
    path = write(tmp_path / "nokey.pfx", pfx_bytes(files.certificate, None, PASSWORD))
    facts = read(path, PASSWORD)
    assert facts.private_key_present is False
    assert facts.key_encrypted is None
    assert "no private key" in facts.private_key_reason


def test_chain_pem_picks_the_certificate_the_key_belongs_to(tmp_path: Path) -> None:
    leaf_key = fresh_rsa_key()
    leaf = make_certificate(leaf_key, common_name="leaf")
    other = make_certificate(rsa_key(), common_name="other")
    path = write(tmp_path / "chain.pem", pem_bytes(other) + pem_bytes(leaf) + key_pem(leaf_key))
    facts = read(path)
    assert facts.subject == "CN=leaf"
    assert facts.private_key_matches is True


def test_now_defaults_to_the_current_time(files: CertFiles) -> None:
    facts = certs.read_certificate(files.der_cer, None, SOURCE)
    assert facts.read_at.tzinfo is not None
    assert facts.read_at > NOW - timedelta(days=3650)


# --- Bad input that cannot be read: one clear CertificateError ---------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in read_error(tmp_path / "absent.pfx")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert "directory" in read_error(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in read_error(write(tmp_path / "empty.cer", b""))


def test_whitespace_only_file_is_empty(tmp_path: Path) -> None:
    assert "empty" in read_error(write(tmp_path / "blank.pem", b"\n  \n"))


def test_garbage_bytes(tmp_path: Path) -> None:
    message = read_error(write(tmp_path / "garbage.cer", os.urandom(64).replace(b"\x30", b"\x31") + b"\x00"))
    assert "neither DER X.509, PEM nor PKCS#12" in message


def test_text_that_is_not_pem(tmp_path: Path) -> None:
    assert "not a certificate" in read_error(write(tmp_path / "notes.crt", b"hello, this is not a certificate\n"))


def test_truncated_der(tmp_path: Path, files: CertFiles) -> None:
    data = der_bytes(files.certificate)
    assert "truncated" in read_error(write(tmp_path / "cut.cer", data[: len(data) // 2]))


def test_truncated_pem(tmp_path: Path, files: CertFiles) -> None:
    data = pem_bytes(files.certificate)
    message = read_error(write(tmp_path / "cut.pem", data[: len(data) // 2]))
    assert "no certificate" in message
    assert "truncated" in message


def test_damaged_pem_body(tmp_path: Path, files: CertFiles) -> None:
    lines = pem_bytes(files.certificate).splitlines(keepends=True)
    damaged = lines[0] + b"AAAA" + lines[1][4:] + b"".join(lines[2:5]) + lines[-1]
    assert "damaged" in read_error(write(tmp_path / "damaged.pem", damaged))


def test_truncated_pfx(tmp_path: Path, files: CertFiles) -> None:
    data = files.pfx_with_password.read_bytes()
    assert "truncated" in read_error(write(tmp_path / "cut.pfx", data[:200]), PASSWORD)


def test_pfx_wrong_password_names_the_env_variable(files: CertFiles) -> None:
    message = read_error(files.pfx_with_password, WRONG_PASSWORD)
    assert "CBACHECK_CERT_PASSWORD" in message
    assert "rejected" in message


def test_pfx_missing_password_names_the_env_variable(files: CertFiles) -> None:
    message = read_error(files.pfx_with_password, None)
    assert "CBACHECK_CERT_PASSWORD is not set" in message
    assert "CBACHECK_CERT_PASSWORD_FILE" in message


def test_encrypted_pem_without_password(files: CertFiles) -> None:
    assert "encrypted and CBACHECK_CERT_PASSWORD is not set" in read_error(files.encrypted_pem, None)


def test_encrypted_pem_with_wrong_password(files: CertFiles) -> None:
    assert "does not decrypt" in read_error(files.encrypted_pem, WRONG_PASSWORD)


def test_pem_holding_only_a_key(tmp_path: Path) -> None:
    message = read_error(write(tmp_path / "key.pem", key_pem(rsa_key())))
    assert "private key but no certificate" in message


def test_der_holding_only_a_key(tmp_path: Path) -> None:
    der_key = rsa_key().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert "private key but no certificate" in read_error(write(tmp_path / "key.der", der_key))


def test_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    pipe = tmp_path / "cert.pem"
    os.mkfifo(pipe)
    assert "not a regular file" in read_error(pipe)


def test_a_pipe_swapped_in_after_a_check_is_refused_on_the_open_file(
    tmp_path: Path, files: CertFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = tmp_path / "cert.pem"
    os.mkfifo(pipe)
    regular = files.pem_with_key.stat()
    real_stat = Path.stat

    def looks_regular(self: Path, **kwargs: Any) -> os.stat_result:
        return regular if self == pipe else real_stat(self, **kwargs)

    # Whatever a look at the path said before, the file opened is judged: reading a pipe would block for ever.
    monkeypatch.setattr(Path, "stat", looks_regular)
    refusals: list[str] = []
    reader = threading.Thread(target=lambda: refusals.append(read_error(pipe)), daemon=True)
    reader.start()
    reader.join(timeout=10)

    assert not reader.is_alive(), "the reader blocks on the pipe"
    assert "not a regular file" in refusals[0]


def test_huge_file_is_refused(tmp_path: Path) -> None:
    huge = tmp_path / "backup.pfx"
    with huge.open("wb") as handle:
        handle.truncate(certs.MAX_FILE_BYTES + 1)
    assert "far larger than any certificate" in read_error(huge)


def test_password_variable_named_in_messages_is_the_one_given(files: CertFiles) -> None:
    with pytest.raises(CertificateError) as caught:
        certs.read_certificate(
            files.pfx_with_password, None, "option --auditor-cert", password_env="CBACHECK_AUDITOR_CERT_PASSWORD"
        )
    assert "CBACHECK_AUDITOR_CERT_PASSWORD is not set" in str(caught.value)
    assert "CBACHECK_AUDITOR_CERT_PASSWORD_FILE" in str(caught.value)
    with pytest.raises(CertificateError, match="password from CBACHECK_ADMIN_CERT_PASSWORD was rejected"):
        certs.load_signing_material(
            files.pfx_with_password, WRONG_PASSWORD, "env", password_env="CBACHECK_ADMIN_CERT_PASSWORD"
        )


def test_malformed_part_found_late_is_a_read_error(files: CertFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    def malformed(certificate: x509.Certificate) -> None:
        raise ValueError("error parsing asn1 value: duplicate extension")

    # cryptography parses extensions lazily; a broken one surfaces only when the facts are built.
    monkeypatch.setattr(certs.inspecting, "_key_usage", malformed)
    assert "malformed (error parsing asn1 value" in read_error(files.der_cer)


def test_permission_denied_is_reported_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = write(tmp_path / "locked.pem", b"x")

    real_open = os.open

    def refuse(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    # Root ignores file modes, so the refusal is simulated to keep the test meaningful everywhere.
    monkeypatch.setattr(os, "open", refuse)
    assert "permission denied" in read_error(target)


# --- Readable but wrong: facts for the checks, not read errors --------------------------------------


def test_key_that_does_not_match_is_a_fact(tmp_path: Path, files: CertFiles) -> None:
    path = write(tmp_path / "mismatch.pem", pem_bytes(files.certificate) + key_pem(fresh_rsa_key()))
    facts = read(path)
    assert facts.private_key_present is True
    assert facts.private_key_matches is False
    assert "does not belong" in facts.private_key_reason


def test_ec_key_is_a_fact(tmp_path: Path) -> None:
    key = ec_key()
    path = write(tmp_path / "ec.pem", pem_bytes(make_certificate(key)) + key_pem(key))
    facts = read(path)
    assert facts.key_type == "EC"
    assert facts.key_size == 256
    assert facts.private_key_matches is True


def test_dsa_key_is_a_fact(tmp_path: Path) -> None:
    key = dsa_key()
    path = write(tmp_path / "dsa.pem", pem_bytes(make_certificate(key)) + key_pem(key))
    facts = read(path)
    assert facts.key_type == "DSA"
    assert facts.key_size == 2048


def test_expired_certificate_is_a_fact(tmp_path: Path) -> None:
    cert = make_certificate(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=35))
    facts = read(write(tmp_path / "expired.cer", der_bytes(cert)))
    assert facts.not_after < facts.read_at


def test_not_yet_valid_certificate_is_a_fact(tmp_path: Path) -> None:
    cert = make_certificate(not_before=NOW + timedelta(days=2), not_after=NOW + timedelta(days=100))
    facts = read(write(tmp_path / "future.cer", der_bytes(cert)))
    assert facts.not_before > facts.read_at


def test_1024_bit_rsa_is_a_fact(tmp_path: Path) -> None:
    facts = read(write(tmp_path / "small.cer", der_bytes(make_certificate(rsa_key(1024)))))
    assert (facts.key_type, facts.key_size) == ("RSA", 1024)


def test_sha1_signed_certificate_is_a_fact(tmp_path: Path) -> None:
    facts = read(write(tmp_path / "sha1.cer", der_bytes(sha1_signed_certificate())))
    assert facts.signature_hash == "sha1"
    assert facts.self_signed is True


def test_key_usage_without_digital_signature_is_a_fact(tmp_path: Path) -> None:
    cert = make_certificate(usage=key_usage(digital_signature=False, key_encipherment=True))
    facts = read(write(tmp_path / "enc-only.cer", der_bytes(cert)))
    assert facts.key_usage == ("keyEncipherment",)


def test_absent_key_usage_is_none_not_empty(tmp_path: Path) -> None:
    cert = make_certificate(with_key_usage=False, extended_key_usage=False)
    facts = read(write(tmp_path / "bare.cer", der_bytes(cert)))
    assert facts.key_usage is None
    assert facts.extended_key_usage is None


def test_certificate_issued_by_another_is_not_self_signed(tmp_path: Path) -> None:
    issuer_key = fresh_rsa_key()
    subject_key = rsa_key()
    name = x509.Name.from_rfc4514_string("CN=exo-automation")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name.from_rfc4514_string("CN=Contoso Issuing CA"))
        .public_key(subject_key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .sign(issuer_key, hashes.SHA256())
    )
    facts = read(write(tmp_path / "issued.cer", der_bytes(cert)))
    assert facts.self_signed is False
    assert facts.issuer == "CN=Contoso Issuing CA"
    assert facts.serial == "07"


# --- Signing material ----------------------------------------------------------------------------


def test_signing_material_from_pfx_matches_the_certificate(files: CertFiles) -> None:
    material = certs.load_signing_material(files.pfx_with_password, PASSWORD, SOURCE)
    key = serialization.load_pem_private_key(material.private_key_pem.encode(), None)
    assert material.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert key.public_key().public_numbers() == files.key.public_key().public_numbers()  # type: ignore[union-attr]
    assert x509.load_pem_x509_certificate(material.certificate_pem.encode()) == files.certificate
    assert material.sha1_thumbprint == files.certificate.fingerprint(hashes.SHA1()).hex().upper()
    assert THUMBPRINT_SHA256.match(material.sha256_thumbprint)


def test_signing_material_repr_hides_the_key(files: CertFiles) -> None:
    material = certs.load_signing_material(files.encrypted_pem, PASSWORD, SOURCE)
    shown = repr(material) + str(material)
    assert "PRIVATE KEY" not in shown
    assert material.private_key_pem.strip().splitlines()[1] not in shown
    assert material.sha1_thumbprint in shown


@pytest.mark.parametrize("name", ["der_cer", "pem_cer"])
def test_signing_material_needs_a_key(files: CertFiles, name: str) -> None:
    path = getattr(files, name)
    with pytest.raises(CertificateError, match="no private key") as caught:
        certs.load_signing_material(path, None, SOURCE)
    assert str(path) in str(caught.value)


def test_signing_material_refuses_a_key_that_does_not_match(tmp_path: Path, files: CertFiles) -> None:
    path = write(tmp_path / "mismatch.pem", pem_bytes(files.certificate) + key_pem(fresh_rsa_key()))
    with pytest.raises(CertificateError, match="does not belong"):
        certs.load_signing_material(path, None, SOURCE)


def test_signing_material_refuses_ec_keys(tmp_path: Path) -> None:
    key = ec_key()
    path = write(tmp_path / "ec.pem", pem_bytes(make_certificate(key)) + key_pem(key))
    with pytest.raises(CertificateError, match="RSA only"):
        certs.load_signing_material(path, None, SOURCE)


def test_signing_material_wrong_password_never_shows_it(files: CertFiles) -> None:
    with pytest.raises(CertificateError) as caught:
        certs.load_signing_material(files.pfx_with_password, WRONG_PASSWORD, SOURCE)
    assert WRONG_PASSWORD not in str(caught.value)
    assert "CBACHECK_CERT_PASSWORD" in str(caught.value)


# --- Generation -----------------------------------------------------------------------------------


def test_generate_without_password_writes_cer_and_pem_only(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    made = certs.generate_certificate("CN=exo-automation", out, now=NOW)
    assert sorted(p.name for p in out.iterdir()) == ["exo-automation.cer", "exo-automation.pem"]
    assert made.pfx_path is None
    assert made.key_encrypted is False
    assert stat.S_IMODE(made.pem_path.stat().st_mode) == 0o600
    assert THUMBPRINT_SHA1.match(made.sha1_thumbprint)
    assert THUMBPRINT_SHA256.match(made.sha256_thumbprint)
    der = made.cer_path.read_bytes()
    assert base64.b64decode(made.der_base64) == der
    assert hashlib.sha1(der).hexdigest().upper() == made.sha1_thumbprint
    assert hashlib.sha256(der).hexdigest().upper() == made.sha256_thumbprint
    assert made.not_before == NOW - certs.BACKDATE
    assert made.not_after - made.not_before == timedelta(days=365)


def test_generated_certificate_meets_every_link_1_rule(tmp_path: Path) -> None:
    made = certs.generate_certificate("CN=exo-automation", tmp_path, now=NOW)
    facts = certs.read_certificate(made.pem_path, None, SOURCE, now=NOW)
    cer_facts = certs.read_certificate(made.cer_path, None, SOURCE, now=NOW)
    assert cer_facts.file_format == "der"
    assert cer_facts.sha1_thumbprint == facts.sha1_thumbprint == made.sha1_thumbprint
    assert facts.subject == "CN=exo-automation" == made.subject
    assert facts.self_signed is True
    assert (facts.key_type, facts.key_size, facts.signature_hash) == ("RSA", 2048, "sha256")
    assert facts.key_usage == ("digitalSignature", "keyEncipherment")
    assert facts.extended_key_usage == ("clientAuth",)
    assert facts.private_key_matches is True
    assert facts.key_encrypted is False
    assert facts.file_mode == 0o600
    assert facts.lifetime_days == 365
    assert facts.not_before <= NOW < facts.not_after


def test_generate_with_password_writes_encrypted_pem_and_pfx(tmp_path: Path) -> None:
    made = certs.generate_certificate("CN=exo automation/ops", tmp_path, password=PASSWORD, days=30, now=NOW)
    assert made.pfx_path is not None
    assert made.pem_path.name == "exo-automation-ops.pem"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "exo-automation-ops.cer",
        "exo-automation-ops.pem",
        "exo-automation-ops.pfx",
    ]
    assert stat.S_IMODE(made.pfx_path.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in made.pem_path.read_bytes()
    key, cert, _ = pkcs12.load_key_and_certificates(made.pfx_path.read_bytes(), PASSWORD.encode())
    assert key is not None and cert is not None
    assert cert.fingerprint(hashes.SHA1()).hex().upper() == made.sha1_thumbprint
    for path in (made.pem_path, made.pfx_path):
        facts = certs.read_certificate(path, PASSWORD, SOURCE, now=NOW)
        assert facts.key_encrypted is True
        assert facts.private_key_matches is True
    assert made.not_after - made.not_before == timedelta(days=30)


def test_generate_with_larger_key(tmp_path: Path) -> None:
    made = certs.generate_certificate("CN=big", tmp_path, key_size=3072, now=NOW)
    assert certs.read_certificate(made.cer_path, None, SOURCE).key_size == 3072


def test_generate_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    existing = write(tmp_path / "exo-automation.pem", b"keep me")
    with pytest.raises(CbaCheckError, match="refusing to overwrite") as caught:
        certs.generate_certificate("CN=exo-automation", tmp_path, password=PASSWORD, now=NOW)
    assert str(existing) in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exo-automation.pem"]
    assert existing.read_bytes() == b"keep me"


def test_generate_refuses_an_existing_pfx_only_when_it_would_write_one(tmp_path: Path) -> None:
    without_password, with_password = tmp_path / "a", tmp_path / "b"
    for folder in (without_password, with_password):
        folder.mkdir()
        write(folder / "exo-automation.pfx", b"old")
    made = certs.generate_certificate("CN=exo-automation", without_password, now=NOW)
    assert made.pfx_path is None
    assert (without_password / "exo-automation.pfx").read_bytes() == b"old"
    with pytest.raises(CbaCheckError, match="exo-automation.pfx"):
        certs.generate_certificate("CN=exo-automation", with_password, password=PASSWORD, now=NOW)
    assert sorted(p.name for p in with_password.iterdir()) == ["exo-automation.pfx"]


def test_generate_cleans_up_when_a_file_appears_meanwhile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def racing_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if str(path).endswith(".pem"):
            Path(path).write_bytes(b"someone else")  # appears between the check and the write
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", racing_open)
    with pytest.raises(CbaCheckError, match="appeared while writing"):
        certs.generate_certificate("CN=race", tmp_path, now=NOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.pem"]
    assert (tmp_path / "race.pem").read_bytes() == b"someone else"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("exo-automation", "must look like CN=NAME"),
        ("O=Contoso", "must look like CN=NAME"),
        ("CN=", "CN="),
        ("CN=...", "no usable file name"),
    ],
)
def test_generate_rejects_bad_subjects(tmp_path: Path, subject: str, expected: str) -> None:
    with pytest.raises(CbaCheckError, match=re.escape(expected)) as caught:
        certs.generate_certificate(subject, tmp_path, now=NOW)
    assert repr(subject) in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("days", "key_size", "expected"), [(0, 2048, "--days 0"), (30, 1024, "--key-size 1024")])
def test_generate_rejects_bad_numbers(tmp_path: Path, days: int, key_size: int, expected: str) -> None:
    with pytest.raises(CbaCheckError, match=re.escape(expected)):
        certs.generate_certificate("CN=x", tmp_path, days=days, key_size=key_size, now=NOW)
    assert list(tmp_path.iterdir()) == []


def test_generate_rejects_an_empty_password(tmp_path: Path) -> None:
    with pytest.raises(CbaCheckError, match="set but empty"):
        certs.generate_certificate("CN=x", tmp_path, password="", now=NOW)


def test_generate_rejects_a_file_as_out_dir(tmp_path: Path) -> None:
    not_a_dir = write(tmp_path / "file", b"")
    with pytest.raises(CbaCheckError, match="is a file, not a folder"):
        certs.generate_certificate("CN=x", not_a_dir, now=NOW)


# --- describe -------------------------------------------------------------------------------------


def test_describe_lists_every_public_fact_and_never_the_key(files: CertFiles) -> None:
    facts = read(files.encrypted_pem, PASSWORD)
    rows = dict(certs.describe(facts))
    assert rows["Subject"] == "CN=exo-automation"
    assert rows["Issuer"] == "CN=exo-automation (self-signed)"
    assert rows["Serial"] == facts.serial
    assert rows["Valid from"] == facts.not_before.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert rows["Valid until"] == facts.not_after.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert rows["Key"] == "RSA 2048 bits"
    assert rows["Signature hash"] == "sha256"
    assert rows["Key usage"] == "digitalSignature, keyEncipherment"
    assert rows["SHA-1 thumbprint"] == facts.sha1_thumbprint
    assert rows["SHA-256 thumbprint"] == facts.sha256_thumbprint
    assert rows["Private key"] == "present, matches the certificate, password-protected"
    assert rows["File mode"] == "0644"
    text = "\n".join(value for _, value in certs.describe(facts))
    assert "PRIVATE KEY" not in text
    assert PASSWORD not in text


def test_describe_explains_an_absent_key_and_absent_extensions(tmp_path: Path) -> None:
    cert = make_certificate(with_key_usage=False, extended_key_usage=False)
    rows = dict(certs.describe(read(write(tmp_path / "bare.cer", der_bytes(cert)))))
    assert rows["Private key"].startswith("absent (the file holds only the certificate")
    assert rows["Key usage"] == "(extension absent)"
    assert "File mode" not in rows
