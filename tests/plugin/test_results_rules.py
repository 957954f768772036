"""Verdict rules, first broken link, and what evidence accepts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cbacheck.config import Settings
from cbacheck.evidence import Evidence, redacted
from cbacheck.report import document
from cbacheck.report.html import STYLESHEET, render_evidence, summary_html


def record(req_id: str, outcome: str, message: str = "") -> dict[str, object]:
    return {"id": req_id, "outcome": outcome, "message": message, "link": 1, "title": req_id, "severity": "high"}


def test_pass_needs_a_pass_and_allows_only_not_configured_skips() -> None:
    assert document.verdict([record("A", "passed"), record("B", "skipped", "no tenant configured")]) == "pass"
    assert document.verdict([record("A", "passed"), record("B", "skipped", "not applicable")]) == "incomplete"
    assert document.verdict([record("B", "skipped", "no tenant configured")]) == "incomplete"
    assert document.verdict([]) == "incomplete"


def test_error_is_never_a_pass_and_failure_wins() -> None:
    assert document.verdict([record("A", "passed"), record("B", "error")]) == "incomplete"
    assert document.verdict([record("A", "failed"), record("B", "error")]) == "fail"
    errors = [{"nodeid": "x", "message": "y"}]
    assert document.verdict([record("A", "passed")], collection_errors=errors) == "incomplete"


def test_first_broken_is_the_earliest_failure_in_chain_order() -> None:
    requirements = [record("CBA-KEY-001", "failed", "not uploaded"), record("CBA-APP-001", "failed", "no app")]
    requirements[0]["link"], requirements[1]["link"] = 3, 2
    broken = document.first_broken(requirements)
    assert broken is not None and broken["id"] == "CBA-APP-001"
    assert document.describe_first_broken(broken) == "Link 2 — App registration: CBA-APP-001 failed: no app"


def test_error_downstream_of_a_failure_names_it() -> None:
    requirements = [record("CBA-APP-001", "failed", "no app"), record("CBA-PERM-003", "error", "403")]
    document.fill_follows_from(requirements)
    assert requirements[1]["follows_from"] == "CBA-APP-001"
    assert requirements[1]["message"] == "403 (follows from CBA-APP-001, which failed)"


def test_evidence_converts_dates_and_paths_and_refuses_bytes() -> None:
    evidence = Evidence("CBA-CERT-003")
    evidence.observed("notAfter", datetime(2030, 1, 2, tzinfo=UTC))
    evidence.add("file", Path("certs/app.pem"))
    evidence.add("usages", ("digitalSignature",))
    assert evidence.as_dict()["observed"] == {"notAfter": "2030-01-02T00:00:00+00:00"}
    assert evidence.as_dict()["details"] == {"file": "certs/app.pem", "usages": ["digitalSignature"]}
    with pytest.raises(TypeError, match="evidence 'key' is a bytes"):
        evidence.add("key", b"\x00")


def test_redaction_reaches_nested_values() -> None:
    assert redacted({"a": ["x pw y"], "pw": 1}, ["pw"]) == {"a": ["(secret withheld)"], "pw": 1}


def test_html_parts_use_the_stylesheet_not_inline_styles() -> None:
    failed = {**record("CBA-APP-001", "failed", "no app"), "evidence": {"observed": {"x": [1]}}, "remediation": "do"}
    now = datetime.now(UTC)
    built = document.build_document(
        Settings(), started=now, finished=now, exit_code=1, records={"n": failed}, durations={}, plan=[]
    )
    html = "".join(summary_html(built, Settings())) + render_evidence(built["requirements"][0])
    assert "style=" not in html
    assert html.startswith(f"<style>{STYLESHEET}</style>")
    assert 'class="cba-verdict-fail"' in html
