"""SARIF, Markdown summary, JUnit names, bundle manifest and the HTML header over hand-built documents."""

from __future__ import annotations

import copy
import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from reportsamples import APP_ID, HOSTILE, RUN_ID, TENANT_ID, sample_document

from cbacheck.config import Settings
from cbacheck.report import console, junit, sarif
from cbacheck.report.bundle import BUNDLE_NAMES, MANIFEST, PipelineReports, write_bundle
from cbacheck.report.document import ci_run_url, operator
from cbacheck.report.html import render_evidence, summary_html
from cbacheck.report.markdown import summary_markdown

TESTS = Path(__file__).resolve().parents[1]
SARIF_SCHEMA = json.loads((TESTS / "schemas" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
GOLDEN = TESTS / "golden" / "summary.md"


def validate_sarif(log: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(SARIF_SCHEMA, format_checker=jsonschema.FormatChecker()).validate(log)


@pytest.mark.parametrize("config_file", ["cbacheck.toml", None])
def test_sarif_is_valid_2_1_0_with_one_result_per_failed_blocked_or_accepted(config_file: str | None) -> None:
    log = sarif.sarif_log(sample_document(config_file=config_file))
    validate_sarif(log)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == [r["id"] for r in sample_document()["requirements"]]
    assert {rule["id"]: rule["properties"]["security-severity"] for rule in rules}["CBA-KEY-001"] == "9.5"
    results = {result["ruleId"]: result for result in run["results"]}
    assert sorted(results) == ["CBA-KEY-001", "CBA-KEY-002", "CBA-PERM-004"]
    assert results["CBA-PERM-004"]["suppressions"][0]["status"] == "accepted"
    assert "alice@contoso.com" in results["CBA-PERM-004"]["suppressions"][0]["justification"]
    assert "suppressions" not in results["CBA-KEY-001"]
    expected_uri = "cbacheck.toml" if config_file else f"cbacheck/tenants/{TENANT_ID}/apps/{APP_ID}"
    for result in run["results"]:
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == expected_uri
    assert run["automationDetails"]["guid"] == RUN_ID


def test_sarif_fingerprints_are_stable_across_runs_and_distinct_per_requirement() -> None:
    first = sarif.sarif_log(sample_document())
    later = sample_document()
    later["run"]["run_id"] = "22222222-2222-4222-8222-222222222222"
    for record in later["requirements"]:
        record["message"] = "worded differently this time"
    second = sarif.sarif_log(later)

    def prints(log: dict[str, Any]) -> dict[str, str]:
        return {r["ruleId"]: r["partialFingerprints"][sarif.FINGERPRINT] for r in log["runs"][0]["results"]}

    assert prints(first) == prints(second)
    assert len(set(prints(first).values())) == 3


def test_markdown_summary_matches_the_golden_file() -> None:
    reports = {"HTML": "cbacheck.html", "JSON": "cbacheck.json", "SARIF": "cbacheck.sarif"}
    assert summary_markdown(sample_document(), reports) == GOLDEN.read_text(encoding="utf-8")


def test_markdown_makes_tenant_text_inert() -> None:
    text = summary_markdown(sample_document())
    assert "<img" not in text and "[link](" not in text and "\x1b" not in text and "@team" not in text
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" not in text  # parentheses are left readable
    assert "&lt;img src=x onerror=alert(1)&gt; \\*bold\\* \\[link\\](http://evil) \\| &#64;team" in text


def test_html_header_leads_with_verdict_and_names_subject_scope_run_and_operator() -> None:
    html = "".join(summary_html(sample_document(), Settings()))
    body = html[html.index("</style>") :]
    assert body.startswith('</style><h1 class="cba-verdict"><strong class="cba-verdict-fail">FAIL</strong>')
    for shown in (
        "Contoso &lt;img src=x onerror=alert(1)&gt;",
        "contoso.onmicrosoft.com",
        f"Exchange automation ({APP_ID})",
        "exchange-online",
        "1 Certificate, 2 App registration, 3 Certificate uploaded, 4 Permission and consent, 5 Directory role",
        "not run: 6 Token and Exchange Online",
        "2026-12-01T10:00:00Z",
        RUN_ID,
        "https://github.com/contoso/infra/actions/runs/42",
        "11111111-1111-4111-8111-111111111111",
        "Accepted risks",
        "alice@contoso.com",
        "Changed since the compared run",
        "broken (was passed)",
        "PATCH /applications/a1 with keyCredentials=(elided)",
        "FAIL: CBA-KEY-001 (critical) failed",
        "exit code 1: CBA-KEY-001 (critical) failed",
    ):
        assert shown in html, shown
    assert "<img" not in html and '{"' not in html


def test_html_evidence_is_a_readable_escaped_table() -> None:
    record = sample_document()["requirements"][1]
    html = render_evidence(record)
    assert "<img" not in html and "&lt;img" in html
    assert "<li>displayName=" not in html  # one key credential: one line, no list
    assert "keyId=k1, endDateTime=2027-01-01" in html
    assert "GET https://graph.microsoft.com/v1.0/applications -&gt; 200" in html
    assert "What to do:" in html


def test_console_summary_escapes_tenant_text() -> None:
    document = sample_document()
    document["summary"] = {"root_causes": [], "counts": {"failed": 1}, "by_severity": {}, "first_broken": None}
    lines = console.summary_lines(document, None, {})
    assert not any("\x1b" in line for line in lines)
    assert any("\\x1b[2J" in line for line in lines)


def test_junit_cases_named_by_requirement_and_grouped_by_link() -> None:
    root = ET.fromstring(
        '<testsuites><testsuite name="pytest"><testcase classname="test_x" name="test_key">'
        '<properties><property name="requirement" value="CBA-KEY-001"/></properties>'
        '<failure message="AssertionError: app ...">E   assert []</failure></testcase>'
        '<testcase classname="test_x" name="test_other"/></testsuite></testsuites>'
    )
    junit.rename_cases(root, sample_document())
    case, other = root.iter("testcase")
    assert case.get("name") == "CBA-KEY-001 Title of CBA-KEY-001"
    assert case.get("classname") == "Link 3 Certificate uploaded"
    failure = case.find("failure")
    assert failure is not None and failure.get("message", "").startswith("app <img")
    assert "assert []" not in (failure.text or "") and "Observed: keyCredentials" in (failure.text or "")
    assert other.get("name") == "test_other"
    assert [p.get("value") for p in root.iter("property") if p.get("name") == "run_id"] == [RUN_ID]


def test_junit_counts_an_accepted_risk_as_skipped_and_a_warning_as_passed() -> None:
    """The gate passes both; a CI test tab that fails on any <failure> must not overrule it."""
    root = ET.fromstring(
        '<testsuites><testsuite name="pytest" failures="3" errors="0" skipped="0" tests="3">'
        + "".join(
            f'<testcase classname="c" name="{name}"><properties><property name="requirement" value="{req}"/>'
            f'</properties><failure message="AssertionError">E   assert False</failure></testcase>'
            for name, req in (("a", "CBA-PERM-004"), ("w", "CBA-APP-005"), ("k", "CBA-KEY-001"))
        )
        + "</testsuite></testsuites>"
    )
    junit.rename_cases(root, sample_document())
    accepted, warning, failed = root.iter("testcase")
    skipped = accepted.find("skipped")
    assert accepted.find("failure") is None and skipped is not None
    assert (skipped.get("message") or "").startswith("accepted: full_access_as_app is granted")
    assert warning.find("failure") is None and warning.find("skipped") is None
    assert (warning.findtext("system-out") or "").startswith("warning: an expired key is left on the app")
    assert failed.find("failure") is not None
    suite = next(root.iter("testsuite"))
    assert (suite.get("failures"), suite.get("skipped")) == ("1", "1")


def test_bundle_manifest_holds_each_file_digest_and_the_shared_run_id(tmp_path: Path) -> None:
    written = {}
    for label, text in (("HTML", "<html></html>"), ("JSON", "{}"), ("JUnit", "<testsuites/>")):
        written[label] = tmp_path / f"in.{label}"
        written[label].write_text(text, encoding="utf-8")
    manifest_path = write_bundle(tmp_path / "bundle", sample_document(), written)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert manifest_path.name == MANIFEST and manifest["run_id"] == RUN_ID
    assert sorted(entry["kind"] for entry in manifest["files"]) == ["HTML", "JSON", "JUnit", "SARIF", "Summary"]
    for entry in manifest["files"]:
        data = (tmp_path / "bundle" / entry["name"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
    summary = (tmp_path / "bundle" / BUNDLE_NAMES["Summary"]).read_text(encoding="utf-8")
    assert "- HTML: `cbacheck.html`" in summary and "- SARIF: `cbacheck.sarif`" in summary
    validate_sarif(json.loads((tmp_path / "bundle" / BUNDLE_NAMES["SARIF"]).read_text(encoding="utf-8")))


@dataclass
class FakeState:
    settings: Settings | None
    document: dict[str, Any] | None
    html_path: Path | None = None
    json_path: Path | None = None
    junit_path: Path | None = None
    extra_reports: dict[str, Path] = field(default_factory=dict)


def test_summary_is_written_and_appended_to_the_github_step_summary(tmp_path: Path) -> None:
    step_summary = tmp_path / "step.md"
    step_summary.write_text("earlier step\n", encoding="utf-8")
    settings = Settings(summary=Path("out/summary.md"), sarif=Path("out/results.sarif"))
    state = FakeState(settings, copy.deepcopy(sample_document()))
    PipelineReports(state, tmp_path, {"GITHUB_STEP_SUMMARY": str(step_summary)}).write()
    written = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert step_summary.read_text(encoding="utf-8") == "earlier step\n" + written
    assert "- SARIF: `out/results.sarif`" in written
    assert state.extra_reports == {"SARIF": tmp_path / "out/results.sarif", "Summary": tmp_path / "out/summary.md"}


def test_ci_run_url_for_github_azure_and_gitlab() -> None:
    assert (
        ci_run_url({"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "7"})
        == "https://github.com/o/r/actions/runs/7"
    )
    azure = {"SYSTEM_COLLECTIONURI": "https://dev.azure.com/org/", "SYSTEM_TEAMPROJECT": "proj", "BUILD_BUILDID": "9"}
    assert ci_run_url(azure) == "https://dev.azure.com/org/proj/_build/results?buildId=9"
    assert ci_run_url({"CI_JOB_URL": "https://gitlab.com/g/p/-/jobs/3"}) == "https://gitlab.com/g/p/-/jobs/3"
    assert ci_run_url({}) is None
    assert operator({})["ci_run_url"] is None and operator({})["host"]


def test_hostile_markers_reach_the_sample() -> None:
    assert "<img" in HOSTILE  # the escaping tests above would pass vacuously otherwise
