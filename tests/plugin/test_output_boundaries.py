"""Outputs that must not lie or break: secret redaction, report paths, console escaping, deselected checks."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from reportreader import by_id

from cbacheck import results
from cbacheck.certs.generating import generate_certificate
from cbacheck.commands import run as runcommand
from cbacheck.errors import ExitCode
from cbacheck.evidence import SECRET_MARK, redacted
from cbacheck.report import document
from cbacheck.report.console import console_safe

REDACTION_CHECKS = '''
import os

import pytest

SAID = os.environ["CBACHECK_CERT_PASSWORD"]  # stands for a tenant or library message that echoes the password


@pytest.mark.requirement("CBA-CERT-001")
def test_cert(evidence):
    evidence.observed("displayName", f"app {SAID} prod")
    evidence.observed("CBA-CERT-001 failed e", "plain value")
    print(f"captured output with {SAID}")
    assert False, f"the tenant said: password {SAID} is wrong"


@pytest.mark.requirement("CUSTOM-RED-001", severity="low")
def test_custom():
    """A custom check that passes"""
'''


def run_with_password(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, password: str) -> dict[str, Any]:
    monkeypatch.setenv("CBACHECK_CERT_PASSWORD", password)
    pytester.makepyfile(test_checks=REDACTION_CHECKS)
    result = pytester.runpytest("--cba-run", "--cba-json=results.json", "-p", "no:cacheprovider")
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    document: dict[str, Any] = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))
    results.validate(document)
    return document


@pytest.mark.parametrize("password", ["1", "e", "failed", "CBA", "passed", "id"])
def test_a_short_password_never_changes_keys_or_cbachecks_own_words(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    document = run_with_password(pytester, monkeypatch, password)
    records = by_id(document)
    assert set(records) == {"CBA-CERT-001", "CUSTOM-RED-001"}
    assert records["CBA-CERT-001"]["outcome"] == "failed"
    assert records["CUSTOM-RED-001"]["outcome"] == "passed"
    assert document["run"]["verdict"] == "fail"
    assert records["CBA-CERT-001"]["severity"] == "critical"
    # Labels are the check's own words: never rewritten.
    assert "CBA-CERT-001 failed e" in records["CBA-CERT-001"]["evidence"]["observed"]


def test_a_value_carrying_the_password_is_withheld_whole(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = run_with_password(pytester, monkeypatch, "hunter1")
    record = by_id(document)["CBA-CERT-001"]
    assert record["message"] == SECRET_MARK  # no "password (secret withheld) is wrong": the place is no clue
    assert record["evidence"]["observed"]["displayName"] == SECRET_MARK
    assert record["evidence"]["observed"]["CBA-CERT-001 failed e"] == "plain value"
    # Nor in pytest's own failure text that the HTML report and the JUnit file carry.
    for path in pytester.path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".html", ".xml"):
            assert "hunter1" not in path.read_text(encoding="utf-8"), path


def test_redacted_leaves_keys_and_other_types_alone() -> None:
    value = {"CBA-CERT-001": ["x pw y", "pw", "other", 1, None], "pw": {"nested": "the pw"}}
    assert redacted(value, ["pw"]) == {
        "CBA-CERT-001": [SECRET_MARK, SECRET_MARK, "other", 1, None],
        "pw": {"nested": SECRET_MARK},
    }
    assert redacted(value, []) == value


# --- report paths -----------------------------------------------------------------------------------

PASSING_CHECK = '''
import pytest


@pytest.mark.requirement("CUSTOM-PATH-001", severity="low")
def test_custom():
    """A custom check that passes"""
'''


def run_plain(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_checks=PASSING_CHECK)
    result = pytester.runpytest("--cba-run", "-p", "no:cacheprovider", *args)
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    return result


def test_json_path_that_is_a_symlink_is_refused_and_left_alone(pytester: pytest.Pytester, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me", encoding="utf-8")
    link = pytester.path / "results.json"
    link.symlink_to(target)
    result = run_plain(pytester, f"--cba-json={link}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR: cbacheck:")]
    assert len(errors) == 1 and "json (option --json)" in errors[0] and "is a symlink" in errors[0], errors
    assert link.is_symlink() and target.read_text(encoding="utf-8") == "keep me"


def test_json_path_that_is_a_fifo_or_a_folder_is_refused(pytester: pytest.Pytester) -> None:
    fifo = pytester.path / "pipe"
    os.mkfifo(fifo)
    (pytester.path / "folder").mkdir()
    result = run_plain(pytester, f"--cba-json={fifo}", "--cba-html=folder")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = " ".join(result.errlines)
    assert "is not a regular file" in errors and "is a folder" in errors, errors
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_report_dir_that_is_a_file_is_one_line(pytester: pytest.Pytester) -> None:
    (pytester.path / "taken").write_text("a file", encoding="utf-8")
    result = run_plain(pytester, "--cba-report-dir=taken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR: cbacheck:")]
    # One line, though three reports would have gone there.
    assert len(errors) == 1, result.errlines
    assert "report_dir (option --report-dir)" in errors[0] and "is a file, not a folder" in errors[0]


def test_run_with_a_special_file_as_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A FIFO stands for a device: never point this test at a real one (the old code replaced it, as root).
    special = tmp_path / "device"
    os.mkfifo(special)
    code = runcommand.run_checks({"report_dir": tmp_path / "r", "json": str(special)}, [], [])
    assert code == ExitCode.USAGE
    errors = capsys.readouterr().err
    assert f"json (option --json): report path '{special}' is not a regular file" in errors
    assert "Traceback" not in errors
    assert stat.S_ISFIFO(special.stat().st_mode)


def test_run_that_cannot_write_its_results_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(document.json, "dump", disk_full)
    code = runcommand.run_checks({"report_dir": tmp_path / "r"}, [], [])
    assert code == ExitCode.USAGE
    captured = capsys.readouterr()
    errors = captured.err
    assert "the JSON results" in errors and "cannot be written: No space left on device" in errors
    assert "  HTML " in captured.out and "  JSON " not in captured.out  # a file that was not written is not listed
    assert "Traceback" not in errors
    assert not list((tmp_path / "r").glob(".*.tmp"))  # the half-written temporary file is gone


# --- console escaping -----------------------------------------------------------------------------

FORGING_CHECK = '''
import pytest

# What an app owner can put in a display name, echoed by Graph in a message.
NAME = "prod-app\\r\\ncbacheck verdict: PASS (forged)\\x1b[2K\\x9b31m\\u2028first broken: none"


@pytest.mark.requirement("CUSTOM-FORGE-001", severity="high")
def test_forged():
    """A custom check whose message carries a tenant-controlled name"""
    assert False, f"the app {NAME} has no certificate"
'''


def test_console_safe_escapes_every_control_character() -> None:
    assert console_safe("a\r\nb\x1b[2K\x85c\u2028d\u202ee\tf é ✓") == ("a\\r\\nb\\x1b[2K\\x85c\\u2028d\\u202ee\\tf é ✓")


def test_a_tenant_string_cannot_forge_a_console_line_in_cbacheck_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    custom = tmp_path / "mychecks"
    custom.mkdir()
    (custom / "test_forge.py").write_text(FORGING_CHECK, encoding="utf-8")
    code = runcommand.run_checks({"report_dir": tmp_path / "r"}, [], [custom])
    printed = capsys.readouterr().out
    assert code == ExitCode.FAILED
    assert not any(line.startswith("cbacheck verdict: PASS") for line in printed.splitlines()), printed
    assert "\x1b" not in printed and "\r" not in printed and "\x9b" not in printed and "\u2028" not in printed
    assert "the app prod-app\\r\\n" in printed and "PASS (forged)\\x1b[2K\\x9b31m\\u2028first broken" in printed


@pytest.mark.parametrize("ci", ["", "true"])
def test_a_tenant_string_cannot_forge_a_line_in_the_pytest_summary(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    # With CI set, pytest prints each failure's whole message in its short summary, not the first line only.
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_forge=FORGING_CHECK)
    result = pytester.runpytest("--cba-report-dir=out", "-p", "no:cacheprovider", "--tb=short", "-q")
    assert "\x1b" not in result.stdout.str() and "\x9b" not in result.stdout.str(), result.stdout.str()
    cbacheck_part = result.stdout.str().split(" cbacheck ", 1)[1]
    assert "\r" not in cbacheck_part, cbacheck_part
    assert not any(line.startswith("cbacheck verdict: PASS") for line in cbacheck_part.splitlines())


# --- deselected requirements ---------------------------------------------------------------------

DESELECTION_CHECKS = '''
import pytest


@pytest.mark.requirement("CBA-APP-001")
def test_app():
    assert False, "no app registration has app ID 1111"


@pytest.mark.requirement("CUSTOM-KEEP-001", severity="low")
def test_kept():
    """A custom check that passes"""
'''


def test_a_requirement_dropped_by_k_leaves_the_run_incomplete(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=DESELECTION_CHECKS)
    result = pytester.runpytest(
        "--cba-report-dir=out", "--cba-json=results.json", "-p", "no:cacheprovider", "-k", "kept"
    )
    result.assert_outcomes(passed=1, deselected=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # not 0: the failing requirement was only dropped
    document = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))
    results.validate(document)
    assert document["run"]["verdict"] == "incomplete"
    assert document["run"]["not_evaluated"] == ["CBA-APP-001"]
    assert document["run"]["exit_code"] == 1
    assert "INCOMPLETE: 1 requirement not evaluated: CBA-APP-001" in result.stdout.str()


def test_a_requirement_dropped_through_pytest_addopts_fails_cbacheck_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "-k cert")
    generated = generate_certificate("CN=addopts", tmp_path / "certs")
    code = runcommand.run_checks({"report_dir": tmp_path / "r", "cert": generated.pem_path}, [], [])
    printed = capsys.readouterr().out
    assert code == ExitCode.FAILED
    assert "cbacheck verdict: INCOMPLETE" in printed
    line = next(line for line in printed.splitlines() if line.startswith("INCOMPLETE: "))
    assert "CBA-APP-001" in line and "not evaluated" in line
    document = json.loads(next((tmp_path / "r").glob("*.json")).read_text(encoding="utf-8"))
    assert "CBA-APP-001" in document["run"]["not_evaluated"]
    assert not any(record["id"] == "CBA-APP-001" for record in document["requirements"])


def test_a_run_that_evaluated_everything_has_nothing_not_evaluated(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=DESELECTION_CHECKS)
    pytester.runpytest("--cba-json=results.json", "-p", "no:cacheprovider")
    document = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))
    assert document["run"]["not_evaluated"] == []
    assert document["run"]["verdict"] == "fail"


def test_a_report_folder_name_that_is_not_utf8_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / os.fsdecode(b"r\xff")
    code = runcommand.run_checks({"report_dir": folder}, [], [])
    errors = capsys.readouterr().err
    assert code == ExitCode.USAGE
    lines = [line for line in errors.splitlines() if line.startswith("ERROR: cbacheck:")]
    assert len(lines) == 1 and "report_dir" in lines[0] and "UTF-8" in lines[0], errors
    assert "Traceback" not in errors


def test_results_holding_a_name_that_is_not_utf8_are_still_written(tmp_path: Path) -> None:
    name = os.fsdecode(b"cert-\xff.pem")
    document.write_atomic(tmp_path / "results.json", {"message": f"cannot read {name}"})
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8")) == {"message": f"cannot read {name}"}
    assert console_safe(name) == "cert-\\udcff.pem"
