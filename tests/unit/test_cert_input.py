"""Certificate input at the trust boundary: files cryptography rejects, missing passwords and keys, absurd values."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cbacheck import certs, cli
from cbacheck.errors import CertificateError, ExitCode

PASSWORD = "correct horse battery staple"
VERSION_3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2: X.509 v3
SUBJECT_KEY_ID_OID = bytes.fromhex("0603551d0e")
AUTHORITY_KEY_ID_OID = bytes.fromhex("0603551d23")


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _der(key: rsa.RSAPrivateKey, extensions: list[x509.ExtensionType]) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd-certificate")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=90))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _patched(der: bytes, old: bytes, new: bytes) -> bytes:
    assert der.count(old) == 1 and len(old) == len(new)
    return der.replace(old, new)


def invalid_version(key: rsa.RSAPrivateKey) -> bytes:
    """The version field says 8 (cryptography raises InvalidVersion, not ValueError)."""
    return _patched(_der(key, []), VERSION_3, bytes.fromhex("a003020107"))


def duplicated_extension(key: rsa.RSAPrivateKey) -> bytes:
    """Two subjectKeyIdentifier extensions (cryptography raises DuplicateExtension when extensions are read)."""
    der = _der(key, [x509.SubjectKeyIdentifier(b"\x01" * 20), x509.AuthorityKeyIdentifier(b"\x01" * 20, None, None)])
    return _patched(der, AUTHORITY_KEY_ID_OID, SUBJECT_KEY_ID_OID)


def x400_address_in_san(key: rsa.RSAPrivateKey) -> bytes:
    """A SAN entry of type x400Address (cryptography raises UnsupportedGeneralNameType)."""
    der = _der(key, [x509.SubjectAlternativeName([x509.DNSName("zzzz.example")])])
    return _patched(der, b"\x82\x0czzzz.example", b"\xa3\x0czzzz.example")


ODD_CERTIFICATES = {
    "invalid version": invalid_version,
    "duplicated extension": duplicated_extension,
    "x400Address in the SAN": x400_address_in_san,
}
# What the reason repeats of cryptography's own words for each kind.
REASONS = {
    "invalid version": "is not a valid X509 version",
    "duplicated extension": "Duplicate 2.5.29.14 extension",
    "x400Address in the SAN": "x400Address",
}


def pem_with_key(der: bytes, key: rsa.RSAPrivateKey) -> bytes:
    body = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    certificate = "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.encode("ascii") + key_pem


def run(tmp_path: Path, *argv: str) -> tuple[int, dict[str, object] | None]:
    """`cbacheck run` in-process; the exit code and the JSON report (None when none was written)."""
    reports = tmp_path / "reports"
    code = cli.main(["run", "--report-dir", str(reports), *argv])
    written = sorted(reports.glob("*.json")) if reports.exists() else []
    return code, json.loads(written[0].read_text(encoding="utf-8")) if written else None


def outcome(document: dict[str, object] | None, requirement: str) -> dict[str, str]:
    assert document is not None
    records = {r["id"]: r for r in document["requirements"]}  # type: ignore[attr-defined]
    return records[requirement]  # type: ignore[no-any-return]


# --- Certificates cryptography rejects with exceptions other than ValueError --------------------------


@pytest.mark.parametrize("kind", sorted(ODD_CERTIFICATES))
def test_a_certificate_cryptography_rejects_is_a_read_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "odd.cer"
    path.write_bytes(ODD_CERTIFICATES[kind](_key()))

    with pytest.raises(CertificateError, match=REASONS[kind]):
        certs.read_certificate(path, None, "test")


@pytest.mark.parametrize("kind", sorted(ODD_CERTIFICATES))
def test_cert_inspect_of_a_rejected_certificate_is_one_line_and_exit_2(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "odd.cer"
    path.write_bytes(ODD_CERTIFICATES[kind](_key()))

    code = cli.main(["cert", "inspect", str(path)])

    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert err.count("\n") == 1 and err.startswith("cbacheck: cannot read certificate") and REASONS[kind] in err


@pytest.mark.parametrize("kind", sorted(ODD_CERTIFICATES))
def test_run_with_a_rejected_certificate_fails_cba_cert_001_with_the_reason(tmp_path: Path, kind: str) -> None:
    key = _key()
    path = tmp_path / "odd.pem"
    path.write_bytes(pem_with_key(ODD_CERTIFICATES[kind](key), key))

    code, document = run(tmp_path, "--cert", str(path))

    assert code == ExitCode.FAILED
    record = outcome(document, "CBA-CERT-001")
    assert record["outcome"] == "failed" and REASONS[kind] in record["message"]


# --- A missing or wrong password, or no private key: input errors before anything is evaluated --------


@pytest.fixture
def protected(tmp_path: Path) -> certs.GeneratedCertificate:
    return certs.generate_certificate("CN=protected", tmp_path / "made", password=PASSWORD)


def test_run_with_a_pfx_and_no_password_is_an_input_error_naming_the_setting(
    tmp_path: Path, protected: certs.GeneratedCertificate, capsys: pytest.CaptureFixture[str]
) -> None:
    assert protected.pfx_path is not None

    code, document = run(tmp_path, "--cert", str(protected.pfx_path))

    err = capsys.readouterr().err
    assert code == ExitCode.USAGE and document is None
    assert "cert_password" in err and "CBACHECK_CERT_PASSWORD" in err and "CBACHECK_CERT_PASSWORD_FILE" in err


def test_run_with_a_wrong_password_is_an_input_error(
    tmp_path: Path,
    protected: certs.GeneratedCertificate,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert protected.pfx_path is not None
    monkeypatch.setenv("CBACHECK_CERT_PASSWORD", "not the password")

    code, document = run(tmp_path, "--cert", str(protected.pfx_path))

    err = capsys.readouterr().err
    assert code == ExitCode.USAGE and document is None
    assert "rejected" in err and "cert_password" in err
    assert "not the password" not in err


def test_run_with_an_encrypted_pem_and_no_password_is_an_input_error(
    tmp_path: Path, protected: certs.GeneratedCertificate, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document = run(tmp_path, "--cert", str(protected.pem_path))

    assert code == ExitCode.USAGE and document is None
    assert "cert_password" in capsys.readouterr().err


def test_run_with_the_cer_instead_of_the_key_file_is_an_input_error(
    tmp_path: Path, protected: certs.GeneratedCertificate, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document = run(tmp_path, "--cert", str(protected.cer_path))

    err = capsys.readouterr().err
    assert code == ExitCode.USAGE and document is None
    assert f"cert = {str(protected.cer_path)!r}" in err and "no private key" in err


def test_run_with_the_right_password_evaluates(
    tmp_path: Path, protected: certs.GeneratedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert protected.pfx_path is not None
    monkeypatch.setenv("CBACHECK_CERT_PASSWORD", PASSWORD)

    code, document = run(tmp_path, "--cert", str(protected.pfx_path))

    assert code == ExitCode.OK
    assert outcome(document, "CBA-CERT-001")["outcome"] == "passed"


def test_run_with_a_file_that_is_not_a_certificate_fails_cba_cert_001(tmp_path: Path) -> None:
    path = tmp_path / "notes.pem"
    path.write_bytes(b"these are not the bytes of a certificate")

    code, document = run(tmp_path, "--cert", str(path))

    assert code == ExitCode.FAILED
    record = outcome(document, "CBA-CERT-001")
    assert record["outcome"] == "failed" and "not a certificate" in record["message"]


# --- cert new with absurd values --------------------------------------------------------------------------


@pytest.mark.parametrize("days", ["99999999", "0", "-3", "36501", str(10**30)])
def test_cert_new_with_an_absurd_validity_is_one_line_and_exit_2(
    tmp_path: Path, days: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["cert", "new", "--subject", "CN=x", "--out", str(tmp_path / "out"), "--days", days])

    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert err.count("\n") == 1 and f"--days {days}" in err
    assert not (tmp_path / "out").exists()
