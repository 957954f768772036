"""`cbacheck demo`: the main job on the sandbox, marked SANDBOX, and with --fix the whole story."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cbacheck import cli
from cbacheck.errors import ExitCode


def reports(folder: Path, suffix: str) -> list[Path]:
    return sorted(folder.glob(f"cbacheck-*{suffix}"))


def test_demo_reports_the_broken_scenario_marked_sandbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["demo", "--report-dir", str(tmp_path)])
    console = capsys.readouterr()
    assert status == ExitCode.OK
    (results,) = reports(tmp_path, ".json")
    document = json.loads(results.read_text(encoding="utf-8"))
    assert document["run"]["sandbox"] is True
    assert document["run"]["verdict"] == "fail"
    assert document["summary"]["first_broken"]["id"] == "CBA-KEY-001"
    (html,) = reports(tmp_path, ".html")
    assert re.search(r"SANDBOX", html.read_text(encoding="utf-8"))
    assert "first broken: Link 3" in console.out
    assert "SANDBOX" in console.err


def test_demo_fix_goes_from_broken_to_verified_green(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["demo", "--fix", "--propagation-s", "1", "--report-dir", str(tmp_path)])
    console = capsys.readouterr()
    assert status == ExitCode.OK
    ordered = sorted(reports(tmp_path, ".json"), key=lambda path: len(path.name))  # "-after" is the longer name
    before, after = (json.loads(path.read_text(encoding="utf-8")) for path in ordered)
    assert before["run"]["verdict"] == "fail"
    assert before["fixes"]["plan"]
    assert after["run"]["verdict"] == "pass"
    assert {row["verdict"] for row in after["fixes"]["applied"]} == {"verified"}
    assert "waiting for" in console.err  # the propagation wait is shown, not silent
    assert "checking again after the fixes" in console.out
    # The before and after reports name each other by run id, in the JSON and in the HTML header.
    assert before["run"]["related"] == {"after": after["run"]["run_id"]}
    assert after["run"]["related"] == {"before": before["run"]["run_id"]}
    after_html = next(path for path in reports(tmp_path, ".html") if "-after" in path.name)
    assert before["run"]["run_id"] in after_html.read_text(encoding="utf-8")


def test_demo_with_an_unknown_scenario_names_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["demo", "--scenario", "no-such-scenario"])
    console = capsys.readouterr()
    assert status == ExitCode.USAGE
    assert "no-such-scenario" in console.err
    assert "healthy" in console.err
    assert "Traceback" not in console.err


def test_run_never_falls_back_to_the_sandbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(
        [
            "run",
            "--tenant",
            "contoso.onmicrosoft.com",
            "--app-id",
            "11111111-2222-3333-4444-555555555555",
            "--login-url",
            "https://127.0.0.1:9",
            "--graph-url",
            "https://127.0.0.1:9",
            "--exchange-url",
            "https://127.0.0.1:9",
            "--retries",
            "0",
            "--report-dir",
            str(tmp_path),
        ]
    )
    console = capsys.readouterr()
    assert status == ExitCode.FAILED
    (results,) = reports(tmp_path, ".json")
    document = json.loads(results.read_text(encoding="utf-8"))
    assert document["run"]["sandbox"] is False
    assert "SANDBOX" not in console.out + console.err
    assert not any(r["outcome"] == "passed" for r in document["requirements"] if not r["id"].startswith("CBA-CERT"))
