"""Outputs that must not lie or break: secret redaction, report paths, console escaping, deselected checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from reportreader import by_id

from cbacheck import results
from cbacheck.evidence import SECRET_MARK, redacted

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

