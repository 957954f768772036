"""`cbacheck audit --certificates DIR`: the folder's files read with one password, matched to apps by thumbprint."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from cbacheck import cli
from cbacheck.auditfacts import Holder
from cbacheck.certs.folder import read_certificate_folder
from cbacheck.collect.audit_links import match_certificates
from cbacheck.errors import ExitCode, InputError
from cbacheck.facts import AppRegistration, KeyCredential, ServicePrincipal
from tests.unit.certfactory import ec_key, make_certificate, pem_bytes, rsa_key

PASSWORD = "folder-pw-3c9e"


def _pfx(path: Path, password: str) -> str:
    key = rsa_key()
    certificate = make_certificate(key)
    encryption = serialization.BestAvailableEncryption(password.encode())
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"app", key, certificate, None, encryption))
    return certificate.fingerprint(hashes.SHA1()).hex().upper()


def test_the_folders_files_are_read_with_one_password_and_unusable_ones_kept_with_why(tmp_path: Path) -> None:
    thumbprint = _pfx(tmp_path / "b.pfx", PASSWORD)
    (tmp_path / "a.pem").write_bytes(pem_bytes(make_certificate(ec_key())))  # a certificate without its key
    (tmp_path / "notes.txt").write_text("not a certificate", encoding="utf-8")
    found = read_certificate_folder(tmp_path, PASSWORD)
    assert [(f.name, f.thumbprint) for f in found] == [("a.pem", ""), ("b.pfx", thumbprint)]
    assert found[0].material is None and found[0].problem
    assert PASSWORD not in repr(found) and "PRIVATE KEY" not in repr(found)


def test_a_wrong_password_stops_the_audit_before_anything_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "certificates"
    folder.mkdir()
    _pfx(folder / "vendor.pfx", PASSWORD)
    monkeypatch.setenv("CBACHECK_CERTIFICATES_PASSWORD", "not-" + PASSWORD)
    reports = tmp_path / "reports"
    argv = ["audit", "--tenant", "contoso.onmicrosoft.com", "--report-dir", str(reports), "--certificates", str(folder)]
    assert cli.main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "vendor.pfx" in err and "CBACHECK_CERTIFICATES_PASSWORD" in err and PASSWORD not in err
    assert not reports.exists()  # nothing was written


def test_a_password_cannot_be_given_on_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        cli.main(["audit", "--tenant", "t", "--certificates-password", "x", "--certificates", str(tmp_path)])


def test_a_missing_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot list the folder"):
        read_certificate_folder(tmp_path / "absent", None)


def test_a_folder_without_certificate_files_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a certificate", encoding="utf-8")
    with pytest.raises(InputError, match=r"no \.pfx, \.p12 or \.pem file in the folder"):
        read_certificate_folder(tmp_path, None)


def test_files_match_the_apps_whose_uploaded_key_they_hold_and_the_rest_are_listed(tmp_path: Path) -> None:
    thumbprint = _pfx(tmp_path / "app.pfx", PASSWORD)
    _pfx(tmp_path / "other.pfx", PASSWORD)
    key = KeyCredential("k1", "AsymmetricX509Cert", "Verify", "", None, None, thumbprint, None)
    app = AppRegistration("obj-1", "app-1", "app one", "AzureADMyOrg", (key,), (), (), {})
    holder = Holder(ServicePrincipal("sp-1", "app-1", "app one", True, ()), "Application", ("x/y",), app)
    pairs, files = match_certificates([holder], read_certificate_folder(tmp_path, PASSWORD))
    assert list(pairs) == ["app-1"] and pairs["app-1"][1].name == "app.pfx"
    assert [(f.name, f.app_ids) for f in files] == [("app.pfx", ("app-1",)), ("other.pfx", ())]
