"""No private key, password or bearer token reaches the console, the reports or the journal of a real run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from cbacheck import cli
from cbacheck.commands import demo as democommand
from cbacheck.sandbox import Sandbox

PRIVATE_KEY = re.compile(r"-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----")
# A JWT: three base64url segments, the first two JSON objects ("eyJ" is base64 of '{"').
BEARER_TOKEN = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")
PASSWORD = "pw-marker-7d1f0c"


def test_fix_apply_run_leaks_no_key_password_or_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CBACHECK_CERT_PASSWORD", PASSWORD)
    monkeypatch.setenv("CBACHECK_ADMIN_CERT_PASSWORD", PASSWORD)
    report_dir = tmp_path / "reports"
    with Sandbox("demo-broken", propagation_s=0.5, workdir=tmp_path / "sandbox") as sb:
        options = democommand.sandbox_settings(sb, report_dir)
        args = [arg for name, value in options.items() for arg in (f"--{name.replace('_', '-')}", str(value))]
        status = cli.main(["run", *args, "--fix", "apply", "--yes", "--journal", str(tmp_path / "journal.jsonl")])
    console = capsys.readouterr()
    assert status == 0

    written = sorted(report_dir.iterdir()) + [tmp_path / "journal.jsonl"]
    assert {path.suffix for path in written} >= {".html", ".json", ".xml", ".jsonl"}
    texts = {str(path): path.read_text(encoding="utf-8") for path in written}
    texts["stdout"] = console.out
    texts["stderr"] = console.err
    for where, text in texts.items():
        assert not PRIVATE_KEY.search(text), where
        assert not BEARER_TOKEN.search(text), where
        assert PASSWORD not in text, where
    # The evidence is still there: the token's claims are shown, only the token itself is not.
    after_json = next(path for path in written if path.name.endswith("-after.json"))
    assert "Exchange.ManageAsApp" in texts[str(after_json)]
    assert '"wids"' in texts[str(after_json)]


def test_an_audit_with_supplied_certificates_leaks_no_key_password_or_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "certificates"
    folder.mkdir()
    report_dir = tmp_path / "reports"
    with Sandbox("healthy", workdir=tmp_path / "sandbox") as sb:
        pem = sb.identities["under_test"].cert_path.read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        encryption = serialization.BestAvailableEncryption(PASSWORD.encode())
        pfx = pkcs12.serialize_key_and_certificates(b"app", key, x509.load_pem_x509_certificate(pem), None, encryption)
        (folder / "app.pfx").write_bytes(pfx)
        (folder / "plain.pem").write_bytes(pem)  # an unencrypted PEM beside it: its key must not be echoed either
        monkeypatch.setenv("CBACHECK_CERTIFICATES_PASSWORD", PASSWORD)
        options = democommand.sandbox_settings(sb, report_dir)
        for name in ("app_id", "cert", "organization"):
            options.pop(name)
        args = [arg for name, value in options.items() for arg in (f"--{name.replace('_', '-')}", str(value))]
        cli.main(["audit", *args, "--certificates", str(folder)])
    console = capsys.readouterr()
    texts = {str(path): path.read_text(encoding="utf-8") for path in sorted(report_dir.iterdir())}
    assert {Path(where).suffix for where in texts} >= {".html", ".json", ".csv", ".md"}
    assert "CBA-EXO-001" in texts[str(report_dir / "audit.json")]  # the links were judged
    texts["stdout"], texts["stderr"] = console.out, console.err
    for where, text in texts.items():
        assert not PRIVATE_KEY.search(text), where
        assert not BEARER_TOKEN.search(text), where
        assert PASSWORD not in text, where
