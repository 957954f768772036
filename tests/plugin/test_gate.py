"""The gate under plain pytest and in its parts: exit codes, keywords, selection, exceptions, comparison."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cbacheck import results
from cbacheck.config import Settings, resolve
from cbacheck.errors import ConfigError, ExitCode
from cbacheck.report import gate
from cbacheck.report.compare import load_previous, mark_changes
from cbacheck.report.exceptions import load_exceptions

CHECKS = '''
import pytest
from cbacheck.chain import require


@pytest.mark.requirement("CBA-APP-001")
def test_app():
    assert False, "no app registration has app ID 1111"


@pytest.mark.requirement("CBA-APP-002")
def test_sp():
    require(None, "CBA-APP-001", "there is no app registration to have a service principal")


@pytest.mark.requirement("CBA-APP-005")
def test_leftover():
    assert False, "an expired key is left on the app"


@pytest.mark.requirement("CUSTOM-KEEP-001", severity="low")
def test_kept():
    """A custom check that passes"""
'''


def run_plain(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.makepyfile(test_checks=CHECKS)
    result = pytester.runpytest("--cba-json=results.json", "-p", "no:cacheprovider", *args)
    document: dict[str, Any] = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))
    results.validate(document)
    return result, document


def outcomes(document: dict[str, Any]) -> dict[str, str]:
    return {record["id"]: record["outcome"] for record in document["requirements"]}


def test_plain_pytest_exits_with_cbachecks_decision_and_blocks_the_follower(pytester: pytest.Pytester) -> None:
    result, document = run_plain(pytester)
    assert result.ret == ExitCode.FAILED == document["run"]["exit_code"]
    assert outcomes(document)["CBA-APP-002"] == "blocked"
    # Root causes are counted: APP-005 failed too, but after APP-001 in the chain, so it is not independent.
    assert document["summary"]["root_causes"] == ["CBA-APP-001"]
    assert document["summary"]["first_broken"]["id"] == "CBA-APP-001"
    assert "cbacheck verdict: FAIL: CBA-APP-001 (critical) failed (1 root cause;" in result.stdout.str()


def test_fail_on_critical_makes_the_low_finding_a_warning_but_the_blocked_one_still_fails(
    pytester: pytest.Pytester,
) -> None:
    result, document = run_plain(pytester, "--cba-fail-on=critical")
    assert outcomes(document)["CBA-APP-005"] == "warning"
    assert outcomes(document)["CBA-APP-002"] == "blocked"
    assert result.ret == ExitCode.FAILED  # APP-001 and the blocked APP-002 are critical


def test_a_requirement_id_is_a_pytest_keyword(pytester: pytest.Pytester) -> None:
    result, document = run_plain(pytester, "-k", "CBA-APP-005")
    result.assert_outcomes(failed=1, deselected=3)
    assert document["run"]["not_evaluated"] == ["CBA-APP-001", "CBA-APP-002", "CUSTOM-KEEP-001"]
    assert result.ret == ExitCode.FAILED


def test_select_and_skip_keep_the_left_out_requirements_as_not_selected(pytester: pytest.Pytester) -> None:
    result, document = run_plain(pytester, "--cba-skip=CBA-APP-00*")
    assert outcomes(document) == {
        "CBA-APP-001": "not selected",
        "CBA-APP-002": "not selected",
        "CBA-APP-005": "not selected",
        "CUSTOM-KEEP-001": "passed",
    }
    assert document["run"]["not_evaluated"] == []
    assert document["run"]["gate"]["skip"] == ["CBA-APP-00*"]
    assert result.ret == ExitCode.OK
    message = next(r["message"] for r in document["requirements"] if r["id"] == "CBA-APP-001")
    assert message == "not selected: left out by --skip CBA-APP-00*"


def test_x_stops_early_and_the_unreached_requirements_are_not_evaluated(pytester: pytest.Pytester) -> None:
    result, document = run_plain(pytester, "-x")
    assert "CUSTOM-KEEP-001" in document["run"]["not_evaluated"]
    assert result.ret == ExitCode.FAILED


NO_CERTIFICATE_CHECKS = '''
import pytest
from cbacheck.chain import require


@pytest.mark.requirement("CBA-CERT-001")
def test_cert():
    pytest.skip("no certificate configured")


@pytest.mark.requirement("CBA-KEY-001")
def test_key():
    require(None, "CBA-CERT-001", "no certificate is configured")


@pytest.mark.requirement("CBA-APP-001")
def test_app():
    pass
'''


def test_a_check_needing_an_unconfigured_link_is_skipped_not_blocked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=NO_CERTIFICATE_CHECKS)
    result = pytester.runpytest("--cba-json=results.json", "-p", "no:cacheprovider")
    document = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))
    key = next(r for r in document["requirements"] if r["id"] == "CBA-KEY-001")
    assert (key["outcome"], key["message"]) == ("skipped", "no certificate configured")
    assert result.ret == ExitCode.OK
    assert document["run"]["headline"] == "PASS: tenant only; certificate links not configured"
    assert pytester.runpytest("--cba-json=r2.json", "--cba-require=cert", "-p", "no:cacheprovider").ret == 1


def test_a_failing_test_that_proves_no_requirement_still_fails_the_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_checks=NO_CERTIFICATE_CHECKS, test_other="def test_unrelated():\n    assert False\n"
    )
    result = pytester.runpytest("--cba-json=results.json", "-p", "no:cacheprovider")
    document = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))
    assert result.ret == ExitCode.FAILED == document["run"]["exit_code"]
    assert document["run"]["exit_reason"] == "a test of this session that proves no requirement failed"


def test_a_pattern_matching_no_requirement_is_a_configuration_error() -> None:
    settings = resolve({"select": "CBA-NOPE-*"}, {}, Path("/nonexistent"))
    assert gate.selection_problems(settings) == [
        "select pattern 'CBA-NOPE-*' (option --select) matches no requirement ID "
        "(IDs look like CBA-KEY-001; * and ? match any text)"
    ]


def record(req_id: str, outcome: str, severity: str = "high", message: str = "") -> dict[str, Any]:
    return {"id": req_id, "outcome": outcome, "severity": severity, "message": message, "follows_from": None}


def test_the_decision_table() -> None:
    default = Settings()
    cert_only = [record("CBA-CERT-001", "passed"), record("CBA-APP-001", "skipped", message="no tenant configured")]
    decided = gate.decide(cert_only, default)
    assert (decided.exit_code, decided.headline) == (0, "PASS: certificate only; tenant links not configured")
    required = gate.decide(cert_only, Settings(require="tenant"))
    assert required.exit_code == ExitCode.FAILED
    assert required.reason == "--require tenant asks for links that were not checked: no tenant configured"
    nothing = [record("CBA-CERT-001", "skipped", message="no certificate configured")]
    assert gate.decide(nothing, default).exit_code == ExitCode.USAGE
    with_error = [record("CBA-CERT-001", "passed"), record("CBA-APP-001", "error")]
    assert gate.decide(with_error, default).exit_code == ExitCode.FAILED
    assert gate.decide(with_error, Settings(allow_unverified=True)).exit_code == ExitCode.OK
    blocked_low = [record("CBA-CERT-001", "passed"), record("CBA-APP-005", "blocked", "low")]
    assert gate.decide(blocked_low, Settings(fail_on="high")).exit_code == ExitCode.OK
    assert gate.decide(blocked_low, default).verdict == "fail"


def test_the_headline_names_the_most_severe_independent_failure_first() -> None:
    requirements = [
        record("CBA-APP-005", "failed", "low"),
        record("CBA-KEY-002", "failed", "critical"),
        record("CBA-TOKEN-001", "error", "critical"),
        {**record("CBA-EXO-001", "blocked", "critical"), "follows_from": "CBA-KEY-002"},
    ]
    assert [r["id"] for r in gate.root_causes(requirements)] == ["CBA-KEY-002", "CBA-APP-005", "CBA-TOKEN-001"]


EXCEPTION = """
[[exception]]
id = "CBA-PERM-004"
reason = "reviewed"
approver = "ciso@contoso.example"
expires = {expires}
"""


def test_an_exception_accepts_until_its_day_then_fails_again(tmp_path: Path) -> None:
    path = tmp_path / "exceptions.toml"
    path.write_text(EXCEPTION.format(expires="2026-06-30"), encoding="utf-8")
    settings = resolve({"exceptions": str(path)}, {}, tmp_path)
    exceptions = load_exceptions(settings)
    failing = {**record("CBA-PERM-004", "failed", "critical", "full_access_as_app is granted"), "remediation": "x"}
    assert gate.judged(failing, settings, exceptions, date(2026, 6, 30))["outcome"] == "accepted"
    later = gate.judged(failing, settings, exceptions, date(2026, 7, 1))
    assert later["outcome"] == "failed" and later["exception"]["state"] == "expired"
    assert "expired on 2026-06-30" in later["message"]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('id = "CBA-NOPE-001"\nreason = "r"\napprover = "a"\nexpires = 2027-01-01', "is not a requirement ID"),
        ('id = "CBA-PERM-004"\napprover = "a"\nexpires = 2027-01-01', "reason is missing"),
        ('id = "CBA-PERM-004"\nreason = "r"\napprover = "a"\nexpires = "31/12/2027"', "is not a calendar date"),
        ('id = "CBA-PERM-004"\nreason = "r"\napprover = "a"\nexpires = 2027-01-01T10:00:00', "is not a calendar date"),
        ('id = "CBA-PERM-004"\nreason = "r"\napprover = "a"\nexpires = 2027-01-01\nprofile = "x"', "profile 'x'"),
    ],
)
def test_a_wrong_exception_is_a_configuration_error(tmp_path: Path, entry: str, problem: str) -> None:
    path = tmp_path / "exceptions.toml"
    path.write_text(f"[[exception]]\n{entry}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_exceptions(resolve({"exceptions": str(path)}, {}, tmp_path))
    assert any(problem in line for line in raised.value.problems), raised.value.problems


def test_a_found_config_file_may_not_name_the_exceptions_file(tmp_path: Path) -> None:
    (tmp_path / "cbacheck.toml").write_text('exceptions = "mine.toml"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        resolve({}, {}, tmp_path)
    assert "exceptions is set in" in raised.value.problems[0]


def test_an_exceptions_error_stops_cbacheck_run_with_exit_2(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", exceptions='[[exception]]\nid = "CBA-PERM-004"\n')
    pytester.makepyfile(test_checks=CHECKS)
    result = pytester.runpytest("--cba-exceptions=exceptions.toml", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # pytest stops before cbacheck decides (docs/reports.md)
    assert "reason is missing" in result.stderr.str()


def test_compare_reads_a_version_1_file_and_names_each_change(tmp_path: Path) -> None:
    previous = {
        "schema": "https://cbacheck.dev/schema/results/1",
        "run": {"started": "2026-01-01T00:00:00Z", "settings": {"app_id": {"value": "app", "source": "default"}}},
        "requirements": [
            {"id": "CBA-APP-001", "outcome": "failed"},
            {"id": "CBA-APP-005", "outcome": "passed"},
            {"id": "CBA-KEY-001", "outcome": "error"},
            {"id": "CBA-OLD-001", "outcome": "passed"},
        ],
    }
    path = tmp_path / "previous.json"
    path.write_text(json.dumps(previous), encoding="utf-8")
    loaded = load_previous(Settings(compare=path))
    assert loaded is not None
    now = [
        {"id": "CBA-APP-001", "app_id": "app", "profile": "exchange-online", "outcome": "passed"},
        {"id": "CBA-APP-005", "app_id": "app", "profile": "exchange-online", "outcome": "failed"},
        {"id": "CBA-KEY-001", "app_id": "app", "profile": "exchange-online", "outcome": "blocked"},
        {"id": "CBA-PERM-001", "app_id": "app", "profile": "exchange-online", "outcome": "passed"},
    ]
    comparison = mark_changes(now, loaded)
    assert [(r["change"], r["previous_outcome"]) for r in now] == [
        ("fixed", "failed"),
        ("broken", "passed"),
        ("same", "error"),
        ("added", None),
    ]
    assert comparison["removed"] == [
        {"app_id": "app", "profile": "exchange-online", "id": "CBA-OLD-001", "previous_outcome": "passed"}
    ]


def test_compare_refuses_a_file_that_is_no_results_file(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"schema": "https://example.com/9"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not a cbacheck results file"):
        load_previous(Settings(compare=path))
