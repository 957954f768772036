"""--cba-bundle, --cba-sarif and --cba-summary in a real session: written after pytest's own reports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
from test_outcomes_and_reports import CHECKS, TENANT_CONFTEST

SARIF_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "sarif-schema-2.1.0.json"


def test_bundle_sarif_and_summary_share_the_run_id_and_match_the_reports(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    pytester.makeconftest(TENANT_CONFTEST)
    pytester.makepyfile(test_checks=CHECKS)
    result = pytester.runpytest(
        "--cba-tenant=contoso.onmicrosoft.com",
        "--cba-app-id=11111111-2222-3333-4444-555555555555",
        "--cba-report-dir=out",
        "--cba-bundle=evidence",
        "--cba-sarif=out/results.sarif",
        "--cba-summary=out/summary.md",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    document = json.loads(next((pytester.path / "out").glob("cbacheck-*.json")).read_text(encoding="utf-8"))
    run_id = document["run"]["run_id"]
    manifest = json.loads((pytester.path / "evidence" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["run_id"] == run_id
    for entry in manifest["files"]:
        data = (pytester.path / "evidence" / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    # The bundle holds the very files the run wrote (the JUnit after its cases were renamed).
    for kind, suffix in (("HTML", ".html"), ("JSON", ".json"), ("JUnit", ".xml")):
        name = next(entry["name"] for entry in manifest["files"] if entry["kind"] == kind)
        written = next((pytester.path / "out").glob(f"cbacheck-*{suffix}")).read_bytes()
        assert (pytester.path / "evidence" / name).read_bytes() == written
    assert run_id in (pytester.path / "evidence" / "cbacheck-junit.xml").read_text(encoding="utf-8")
    assert run_id in next((pytester.path / "out").glob("cbacheck-*.html")).read_text(encoding="utf-8")
    sarif = json.loads((pytester.path / "out" / "results.sarif").read_text(encoding="utf-8"))
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))).validate(sarif)
    assert sarif["runs"][0]["automationDetails"]["guid"] == run_id
    assert {r["ruleId"] for r in sarif["runs"][0]["results"]} == {"CBA-APP-001", "CBA-APP-002", "CBA-APP-003"}
    summary = (pytester.path / "out" / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("## cbacheck: FAIL") and run_id in summary
    assert step_summary.read_text(encoding="utf-8").count("## cbacheck: FAIL") == 1  # once, though two were written
