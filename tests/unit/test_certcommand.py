"""`cbacheck cert new` and `cbacheck cert inspect` through cbacheck.commands.cert."""

from __future__ import annotations

import argparse
import io
import re
import stat
from pathlib import Path

import pytest
from certfactory import PASSWORD, WRONG_PASSWORD, CertFiles, write, write_all_formats

from cbacheck.commands import cert as certcommand


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="cbacheck")
    certcommand.add_parser(root.add_subparsers(dest="command"))
    return root


def run(
    parser: argparse.ArgumentParser, argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = certcommand.run(parser.parse_args(argv), env=env or {}, cwd=cwd, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(err: str, *expected: str) -> None:
    assert err.startswith("cbacheck: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err


def test_new_writes_files_and_prints_thumbprints_dates_and_next_step(
    parser: argparse.ArgumentParser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(parser, ["cert", "new", "--subject", "CN=exo-automation", "--out", "certs"], tmp_path)
    assert (code, err) == (0, "")
    cer = Path("certs") / "exo-automation.cer"
    pem = Path("certs") / "exo-automation.pem"
    assert str(cer) in out and str(pem) in out
    assert re.search(r"^SHA-1 thumbprint:\s+[0-9A-F]{40}$", out, re.MULTILINE)
    assert re.search(r"^SHA-256 thumbprint:\s+[0-9A-F]{64}$", out, re.MULTILINE)
    assert re.search(r"^Valid from:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", out, re.MULTILINE)
    assert re.search(r"^Valid until:\s+\d{4}-\d\d-\d\d", out, re.MULTILINE)
    assert "Next: upload exo-automation.cer to the app" in out
    assert "not encrypted" in out
    assert "PRIVATE KEY" not in out


def test_new_writes_into_out_relative_to_the_working_directory(
    parser: argparse.ArgumentParser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, _ = run(parser, ["cert", "new", "--subject", "CN=ops", "--out", "certs", "--days", "90"], tmp_path)
    assert code == 0
    assert stat.S_IMODE((tmp_path / "certs" / "ops.pem").stat().st_mode) == 0o600
    assert not (tmp_path / "certs" / "ops.pfx").exists()


def test_new_with_password_from_env_writes_pfx_and_never_prints_it(
    parser: argparse.ArgumentParser, tmp_path: Path
) -> None:
    out_dir = tmp_path / "certs"
    code, out, err = run(
        parser,
        ["cert", "new", "--subject", "CN=exo-automation", "--out", str(out_dir), "--key-size", "3072"],
        tmp_path,
        env={"CBACHECK_CERT_PASSWORD": PASSWORD},
    )
    assert (code, err) == (0, "")
    assert (out_dir / "exo-automation.pfx").is_file()
    assert "RSA 3072 bits" in out
    assert "encrypted with the password" in out
    assert PASSWORD not in out
    assert "--cert " + str(out_dir / "exo-automation.pfx") in out


def test_new_with_password_file(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    secret = write(tmp_path / "password.txt", (PASSWORD + "\n").encode())
    out_dir = tmp_path / "certs"
    code, _, _ = run(
        parser,
        ["cert", "new", "--subject", "CN=exo-automation", "--out", str(out_dir)],
        tmp_path,
        env={"CBACHECK_CERT_PASSWORD_FILE": str(secret)},
    )
    assert code == 0
    code, out, _ = run(
        parser,
        ["cert", "inspect", str(out_dir / "exo-automation.pfx")],
        tmp_path,
        env={"CBACHECK_CERT_PASSWORD_FILE": str(secret)},
    )
    assert code == 0
    assert "password-protected" in out


def test_new_refuses_to_overwrite(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    argv = ["cert", "new", "--subject", "CN=exo-automation", "--out", str(tmp_path)]
    assert run(parser, argv, tmp_path)[0] == 0
    before = (tmp_path / "exo-automation.pem").read_bytes()
    code, out, err = run(parser, argv, tmp_path)
    assert (code, out) == (2, "")
    assert_one_line_error(err, "refusing to overwrite", str(tmp_path / "exo-automation.cer"))
    assert (tmp_path / "exo-automation.pem").read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--subject", "exo-automation"], "must look like CN=NAME"),
        (["--subject", "CN=x", "--key-size", "1024"], "--key-size 1024"),
        (["--subject", "CN=x", "--days", "0"], "--days 0"),
    ],
)
def test_new_bad_input_is_one_line(
    parser: argparse.ArgumentParser, tmp_path: Path, extra: list[str], expected: str
) -> None:
    code, _, err = run(parser, ["cert", "new", "--out", str(tmp_path / "out"), *extra], tmp_path)
    assert code == 2
    assert_one_line_error(err, expected)
    assert not (tmp_path / "out").exists()


def test_password_is_not_a_command_line_option(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["cert", "new", "--subject", "CN=x", "--out", str(tmp_path), "--password", "x"])
    assert caught.value.code == 2


@pytest.mark.parametrize("name", ["der_cer", "pem_cer", "pem_with_key", "encrypted_pem", "pfx_with_password"])
def test_inspect_prints_every_fact(parser: argparse.ArgumentParser, tmp_path: Path, name: str) -> None:
    files: CertFiles = write_all_formats(tmp_path)
    path = getattr(files, name)
    code, out, err = run(parser, ["cert", "inspect", str(path)], tmp_path, env={"CBACHECK_CERT_PASSWORD": PASSWORD})
    assert (code, err) == (0, "")
    for label in (
        "Subject",
        "Issuer",
        "Serial",
        "Valid from",
        "Valid until",
        "Key",
        "Signature hash",
        "Key usage",
        "SHA-1 thumbprint",
        "SHA-256 thumbprint",
        "Private key",
    ):
        assert re.search(rf"^{label}:\s+\S", out, re.MULTILINE), label
    assert "RSA 2048 bits" in out
    assert PASSWORD not in out
    assert "PRIVATE KEY" not in out
    key_line = next(line for line in out.splitlines() if line.startswith("Private key:"))
    assert ("present, matches" in key_line) == (name not in ("der_cer", "pem_cer"))


def test_inspect_missing_file_exits_2_with_one_line(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    missing = tmp_path / "nothing.pfx"
    code, out, err = run(parser, ["cert", "inspect", str(missing)], tmp_path)
    assert (code, out) == (2, "")
    assert_one_line_error(err, "cbacheck: cannot read certificate", str(missing), "argument FILE", "does not exist")


def test_inspect_wrong_password_never_shows_it(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    files = write_all_formats(tmp_path)
    code, out, err = run(
        parser,
        ["cert", "inspect", str(files.pfx_with_password)],
        tmp_path,
        env={"CBACHECK_CERT_PASSWORD": WRONG_PASSWORD},
    )
    assert (code, out) == (2, "")
    assert_one_line_error(err, "cannot read certificate", "CBACHECK_CERT_PASSWORD")
    assert WRONG_PASSWORD not in err


def test_inspect_garbage_exits_2(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    garbage = write(tmp_path / "garbage.cer", b"\x00\x01\x02 not a certificate")
    code, _, err = run(parser, ["cert", "inspect", str(garbage)], tmp_path)
    assert code == 2
    assert_one_line_error(err, "cannot read certificate", "not a certificate")


def test_bad_configuration_is_reported_not_raised(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    (tmp_path / "cbacheck.toml").write_text("cloud = 'mars'\n")
    code, out, err = run(parser, ["cert", "inspect", str(tmp_path / "x.cer")], tmp_path)
    assert (code, out) == (2, "")
    assert_one_line_error(err, "cloud = 'mars'")
