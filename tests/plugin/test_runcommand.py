"""`cbacheck run` end to end: the shipped checks plus a custom folder, from an unrelated working folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cbacheck import results
from cbacheck.commands import run as runcommand
from cbacheck.errors import ExitCode

CUSTOM_CHECK = '''
import pytest


@pytest.mark.requirement("CUSTOM-RUN-001", severity="low")
def test_custom_requirement(cba_settings, evidence):
    """A custom requirement runs beside the shipped ones"""
    evidence.observed("expiry_days", cba_settings.expiry_days)
    assert cba_settings.expiry_days == 21, f"expiry_days is {cba_settings.expiry_days}; expected 21"
'''


@pytest.fixture
def hostile_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder whose pytest configuration would break any run that picked it up."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n", encoding="utf-8")
    (work / "conftest.py").write_text("raise RuntimeError('the user conftest was loaded')\n", encoding="utf-8")
    monkeypatch.chdir(work)
    return work


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    runcommand.add_parser(parser.add_subparsers())
    args = parser.parse_args(["run", *argv])
    args.extra_pytest_args = []
    return args


def test_run_writes_three_reports_and_passes_with_only_unconfigured_links_skipped(
    hostile_cwd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    custom = tmp_path / "mychecks"
    custom.mkdir()
    (custom / "test_custom.py").write_text(CUSTOM_CHECK, encoding="utf-8")
    reports = tmp_path / "reports"
    code = runcommand.run(parse("--expiry-days", "21", "--report-dir", str(reports), "--checks", str(custom)))
    printed = capsys.readouterr().out
    assert code == ExitCode.OK, printed
    assert sorted(path.suffix for path in reports.iterdir()) == [".html", ".json", ".xml"]
    document = json.loads(next(reports.glob("*.json")).read_text(encoding="utf-8"))
    results.validate(document)
    records = {r["id"]: r for r in document["requirements"]}
    assert records["CUSTOM-RUN-001"]["outcome"] == "passed"
    assert records["CBA-CERT-001"]["outcome"] == "skipped"
    assert records["CBA-CERT-001"]["message"] == "no certificate configured"
    assert records["CBA-APP-001"]["message"] == "no tenant configured"
    assert document["run"]["verdict"] == "pass"
    assert document["run"]["settings"]["expiry_days"] == {"value": 21, "source": "option --expiry-days"}
    assert "cbacheck verdict: PASS" in printed
    assert f"JSON  {next(reports.glob('*.json'))}" in printed
    assert not (hostile_cwd / "reports").exists()


def test_run_lists_failures_and_exits_1(hostile_cwd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    custom = tmp_path / "mychecks"
    custom.mkdir()
    (custom / "test_custom.py").write_text(CUSTOM_CHECK, encoding="utf-8")
    code = runcommand.run_checks({"report_dir": tmp_path / "r", "expiry_days": 5}, [], [custom])
    printed = capsys.readouterr().out
    assert code == ExitCode.FAILED
    assert "cbacheck verdict: FAIL" in printed
    assert "CUSTOM-RUN-001 (low) failed: expiry_days is 5; expected 21" in printed


def test_bad_settings_are_a_usage_error(hostile_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = runcommand.run(parse("--cloud", "mars", "--retries", "many"))
    errors = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "ERROR: cbacheck: cloud = 'mars' (option --cloud) is not one of" in errors
    assert "ERROR: cbacheck: retries = 'many' (option --retries) is not a whole number" in errors


def test_custom_check_with_a_bad_marker_is_a_usage_error(
    hostile_cwd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    custom = tmp_path / "badchecks"
    custom.mkdir()
    (custom / "test_bad.py").write_text(
        'import pytest\n\n@pytest.mark.requirement("X-1", severity="urgent")\ndef test_x():\n    """X"""\n',
        encoding="utf-8",
    )
    code = runcommand.run_checks({"report_dir": tmp_path / "r"}, [], [custom])
    captured = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert "1 check file(s) could not be collected" in captured.err


def test_missing_checks_folder_is_named(hostile_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = runcommand.run_checks({}, [], [Path("nowhere")])
    assert code == ExitCode.USAGE
    assert "--checks 'nowhere' is not a folder" in capsys.readouterr().err


def test_secret_settings_have_no_run_option() -> None:
    with pytest.raises(SystemExit):
        parse("--cert-password", "x")
    with pytest.raises(ValueError, match="cert_password"):
        runcommand.run_checks({"cert_password": "x"}, [], [])
