"""The gate as a pipeline meets it: unconfigured, gated, accepted, expired, --fail-on, -- -k, and --compare."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cbacheck import cli, results
from cbacheck.commands import demo as democommand
from cbacheck.errors import ExitCode
from cbacheck.sandbox import Sandbox


def as_cli_options(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def run(args: list[str], results_file: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    cut = args.index("--") if "--" in args else len(args)  # what follows a bare -- goes to pytest
    code = cli.main(["run", *args[:cut], "--json", str(results_file), *args[cut:]])
    printed = capsys.readouterr()
    document = json.loads(results_file.read_text(encoding="utf-8"))
    results.validate(document)
    return code, document, printed.out + printed.err


def outcomes(document: dict[str, Any]) -> dict[str, str]:
    return {record["id"]: record["outcome"] for record in document["requirements"]}


def exceptions_file(path: Path, expires: str) -> Path:
    entries = [
        ("CBA-PERM-004", "full_access_as_app feeds the journaling connector; ticket SEC-1234"),
        ("CBA-PERM-005", "same review as CBA-PERM-004"),
    ]
    path.write_text(
        "".join(
            f'[[exception]]\nid = "{req}"\nprofile = "exchange-online"\nreason = "{reason}"\n'
            f'approver = "ciso@contoso.example"\nexpires = {expires}\n\n'
            for req, reason in entries
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder and no CBACHECK_* variables: what a pipeline without its secrets runs in."""
    for name in list(os.environ):
        if name.startswith("CBACHECK_") or name == "PYTEST_ADDOPTS":
            monkeypatch.delenv(name)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


def test_an_unconfigured_run_exits_2_naming_the_settings(
    clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document, printed = run([], clean_environment / "r.json", capsys)
    assert code == ExitCode.USAGE
    assert document["run"]["exit_code"] == ExitCode.USAGE
    assert document["run"]["exit_reason"].startswith("nothing was evaluated: set cert (--cert or CBACHECK_CERT)")
    assert "tenant and app_id" in document["run"]["exit_reason"]
    assert "cbacheck verdict: NOTHING EVALUATED" in printed and "exit code 2" in printed


def test_a_pipeline_gates_accepts_a_risk_sees_it_expire_and_what_changed(
    clean_environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    today = datetime.now(UTC).date()
    with Sandbox("full-access-as-app", workdir=tmp_path / "sandbox") as sb:
        options = as_cli_options(democommand.sandbox_settings(sb, tmp_path / "reports"))

        # The gate: full_access_as_app fails the run.
        code, gated, printed = run(options, tmp_path / "gated.json", capsys)
        assert code == ExitCode.FAILED
        assert gated["run"]["verdict"] == "fail" and gated["run"]["exit_code"] == ExitCode.FAILED
        assert gated["summary"]["root_causes"] == ["CBA-PERM-004", "CBA-PERM-005"]

        # A reviewed exception: the run passes, and the risk stays visible with its reason and expiry.
        current = exceptions_file(tmp_path / "accepted.toml", (today + timedelta(days=30)).isoformat())
        code, accepted, printed = run([*options, "--exceptions", str(current)], tmp_path / "accepted.json", capsys)
        assert code == ExitCode.OK, printed
        assert outcomes(accepted)["CBA-PERM-004"] == "accepted"
        record = next(r for r in accepted["requirements"] if r["id"] == "CBA-PERM-004")
        assert record["exception"]["state"] == "current" and record["exception"]["approver"] == "ciso@contoso.example"
        assert record["remediation"].startswith("Accepted risk: accepted until")
        assert accepted["run"]["exceptions"]["sha256"] == hashlib.sha256(current.read_bytes()).hexdigest()
        assert accepted["run"]["headline"] == "PASS: 2 accepted risks"
        assert not any("CBA-PERM-004" in action.get("mends", []) for action in accepted["fixes"]["plan"])
        assert "CBA-PERM-004 (high) accepted until" in printed or "CBA-PERM-004 (critical) accepted until" in printed
        assert str(current) in printed and "no fix planned for accepted risks: CBA-PERM-004, CBA-PERM-005" in printed

        # The same exception past its date: the requirement fails again and says so; compared with the
        # accepted run, the change is named.
        expired = exceptions_file(tmp_path / "expired.toml", (today - timedelta(days=1)).isoformat())
        code, again, printed = run(
            [*options, "--exceptions", str(expired), "--compare", str(tmp_path / "accepted.json")],
            tmp_path / "again.json",
            capsys,
        )
        assert code == ExitCode.FAILED
        record = next(r for r in again["requirements"] if r["id"] == "CBA-PERM-004")
        assert record["outcome"] == "failed" and record["exception"]["state"] == "expired"
        assert "expired on" in record["message"] and "fails again" in record["message"]
        assert record["change"] == "broken" and record["previous_outcome"] == "accepted"
        assert again["comparison"]["counts"]["broken"] == 2
        first_line = next(line for line in printed.splitlines() if line.startswith("changes since"))
        assert str(tmp_path / "accepted.json") in first_line
        assert "broken: CBA-PERM-004 (accepted -> failed), CBA-PERM-005 (accepted -> failed)" in printed
        # What changed comes before the verdict.
        assert printed.index("changes since") < printed.index("cbacheck verdict:")


def test_fail_on_high_passes_a_low_finding_as_a_warning_and_k_is_incomplete(
    clean_environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Sandbox("expired-leftover-key", workdir=tmp_path / "sandbox") as sb:
        options = as_cli_options(democommand.sandbox_settings(sb, tmp_path / "reports"))

        code, document, printed = run([*options, "--fail-on", "high"], tmp_path / "warn.json", capsys)
        assert code == ExitCode.OK, printed
        assert outcomes(document)["CBA-APP-005"] == "warning"
        assert document["run"]["headline"] == "PASS: 1 warning"
        assert "warnings (below --fail-on high):" in printed and "CBA-APP-005 (low)" in printed

        # Narrowed by pytest itself: the requirement ID is a keyword, the rest were not evaluated.
        code, narrowed, printed = run([*options, "--", "-k", "CBA-APP-005"], tmp_path / "k.json", capsys)
        assert code == ExitCode.FAILED
        assert [r["id"] for r in narrowed["requirements"]] == ["CBA-APP-005"]
        assert "CBA-CERT-001" in narrowed["run"]["not_evaluated"] and "CBA-KEY-001" in narrowed["run"]["not_evaluated"]
        line = next(line for line in printed.splitlines() if "requirements not evaluated:" in line)
        assert "CBA-KEY-001" in line and "-k" in line

        # Narrowed on record: --skip leaves it out as "not selected", and the run passes.
        code, skipped, printed = run([*options, "--skip", "CBA-APP-005"], tmp_path / "skip.json", capsys)
        assert code == ExitCode.OK, printed
        assert outcomes(skipped)["CBA-APP-005"] == "not selected"
        assert skipped["run"]["not_evaluated"] == []
