"""Outcomes (passed, failed, error, skipped), follows-from, and the three reports that carry them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from reportreader import by_id, html_rows

from cbacheck import catalogue, results

TenantRun = tuple[pytest.RunResult, dict[str, Any], Path]

TENANT_CONFTEST = """
from types import SimpleNamespace

import pytest

from cbacheck.facts import ServicePrincipal, Source, Unavailable

GRAPH = "https://graph.microsoft.com/v1.0"


@pytest.fixture(scope="session")
def tenant_facts():
    return SimpleNamespace(
        app=Unavailable(
            "the app registration",
            "Graph answered 403 Authorization_RequestDenied",
            missing_permission="Application.Read.All",
            source=Source("GET", GRAPH + "/applications(appId='1111')", 403),
        ),
        exchange_sp=ServicePrincipal(
            "sp-1", "00000002-0000-0ff1-ce00-000000000000", "Office 365 Exchange Online", True, (),
            source=Source("GET", GRAPH + "/servicePrincipals(appId='00000002-0000-0ff1-ce00-000000000000')", 200),
        ),
    )
"""

CHECKS = '''
import pytest

from cbacheck.chain import require


@pytest.mark.requirement("CBA-APP-001", severity="critical", fix="create_app")
def test_app_exists(evidence):
    """The app registration exists"""
    evidence.observed("displayName", "<script>alert(1)</script>")
    evidence.expected("an app registration with app ID 1111")
    assert False, "no app registration has app ID 1111; expected exactly one"


@pytest.mark.requirement("CBA-APP-003", severity="medium", fix="manual")
def test_audience():
    """Sign-in audience is this organization only"""
    assert False, "signInAudience is AzureADMultipleOrgs; expected AzureADMyOrg"


@pytest.mark.requirement("CBA-APP-002", severity="critical", fix="create_service_principal")
def test_service_principal():
    """Its service principal exists and is enabled"""
    require(None, "CBA-APP-001", "there is no app registration to have a service principal")


@pytest.mark.requirement("CBA-APP-004", severity="high", fix="manual")
def test_no_client_secrets(app):
    """The app has no client secrets"""


@pytest.mark.requirement("CBA-PERM-001", severity="critical", fix="manual")
def test_exchange_service_principal(exchange_sp, evidence):
    """The Office 365 Exchange Online service principal exists in the tenant"""
    evidence.observed("appId", exchange_sp.app_id)
    assert exchange_sp is not None


@pytest.mark.requirement("CUSTOM-SKIP-001", severity="info")
def test_not_applicable():
    """A custom check that does not apply"""
    pytest.skip("not applicable here")


@pytest.mark.requirement("CUSTOM-CRASH-001", severity="low")
def test_with_a_bug():
    """A custom check with a bug"""
    {}["missing"]
'''


@pytest.fixture
def tenant_run(pytester: pytest.Pytester) -> TenantRun:
    pytester.makeconftest(TENANT_CONFTEST)
    pytester.makepyfile(test_checks=CHECKS)
    result = pytester.runpytest(
        "--cba-tenant=contoso.onmicrosoft.com",
        "--cba-app-id=11111111-2222-3333-4444-555555555555",
        "--cba-report-dir=out",
        "-p",
        "no:cacheprovider",
    )
    reports = {path.suffix: path for path in (pytester.path / "out").iterdir()}
    document = json.loads(reports[".json"].read_text(encoding="utf-8"))
    return result, document, pytester.path / "out"


def test_pytest_counts_agree_with_the_outcomes(tenant_run: TenantRun) -> None:
    result, document, _ = tenant_run
    result.assert_outcomes(failed=4, errors=1, passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert document["summary"]["counts"] == {
        "passed": 1,
        "failed": 2,
        "blocked": 1,
        "error": 2,
        "accepted": 0,
        "warning": 0,
        "skipped": 1,
        "not selected": 0,
        "pending": 0,
    }
    # Root causes: the independent failure and the crash; the blocked follower and the downstream error are not.
    assert document["summary"]["root_causes"] == ["CBA-APP-001", "CUSTOM-CRASH-001"]


def test_each_requirement_has_its_outcome_and_message(tenant_run: TenantRun) -> None:
    _, document, _ = tenant_run
    records = by_id(document)
    assert records["CBA-APP-001"]["outcome"] == "failed"
    assert records["CBA-APP-001"]["message"] == "no app registration has app ID 1111; expected exactly one"
    assert records["CBA-PERM-001"]["outcome"] == "passed"
    assert records["CUSTOM-SKIP-001"]["outcome"] == "skipped"
    assert records["CUSTOM-SKIP-001"]["message"] == "not applicable here"
    # A bug in a check is "could not verify", never a pass and never a finding.
    assert records["CUSTOM-CRASH-001"]["outcome"] == "error"
    assert records["CUSTOM-CRASH-001"]["message"] == "could not verify: KeyError: 'missing'"
    assert records["CUSTOM-CRASH-001"]["link"] is None


def test_unavailable_fact_is_an_error_with_the_reason_and_its_source(
    tenant_run: TenantRun,
) -> None:
    _, document, _ = tenant_run
    record = by_id(document)["CBA-APP-004"]
    assert record["outcome"] == "error"
    assert record["message"].startswith(
        "could not collect the app registration: Graph answered 403 Authorization_RequestDenied "
        "(the auditor needs Application.Read.All)"
    )
    assert record["evidence"]["sources"][0]["url"].endswith("/applications(appId='1111')")
    assert record["evidence"]["sources"][0]["status"] == 403


def test_fact_fixture_adds_its_source_to_the_evidence(tenant_run: TenantRun) -> None:
    _, document, _ = tenant_run
    record = by_id(document)["CBA-PERM-001"]
    assert [s["status"] for s in record["evidence"]["sources"]] == [200]
    assert record["evidence"]["observed"] == {"appId": "00000002-0000-0ff1-ce00-000000000000"}


def test_downstream_failures_name_the_upstream(tenant_run: TenantRun) -> None:
    _, document, _ = tenant_run
    records = by_id(document)
    # Through require(): the message says so itself.
    # Not evaluated because its upstream failed: blocked, naming the upstream.
    assert records["CBA-APP-002"]["outcome"] == "blocked"
    assert records["CBA-APP-002"]["follows_from"] == "CBA-APP-001"
    assert records["CBA-APP-002"]["message"].startswith("follows from CBA-APP-001: there is no app registration")
    # Through the catalogue: the plugin names the nearest failed upstream and says so in the message.
    assert records["CBA-APP-003"]["follows_from"] == "CBA-APP-001"
    assert "follows from CBA-APP-001, which failed" in records["CBA-APP-003"]["message"]
    assert records["CBA-APP-001"]["follows_from"] is None
    assert records["CBA-PERM-001"]["follows_from"] is None


def test_results_file_matches_the_schema_in_chain_order(tenant_run: TenantRun) -> None:
    _, document, _ = tenant_run
    results.validate(document)
    assert [r["id"] for r in document["requirements"]] == [
        "CBA-APP-001",
        "CBA-APP-002",
        "CBA-APP-003",
        "CBA-APP-004",
        "CBA-PERM-001",
        "CUSTOM-CRASH-001",
        "CUSTOM-SKIP-001",
    ]
    assert document["run"]["verdict"] == "fail"
    assert document["run"]["exit_code"] == 1
    assert document["summary"]["first_broken"]["id"] == "CBA-APP-001"
    assert document["summary"]["by_severity"]["critical"]["failed"] == 1
    assert document["summary"]["by_severity"]["critical"]["blocked"] == 1
    assert document["run"]["exit_reason"].startswith("3 requirement(s) at or above --fail-on info not met")
    assert document["run"]["settings"]["tenant"] == {
        "value": "contoso.onmicrosoft.com",
        "source": "option --cba-tenant",
    }


def test_html_rows_show_requirement_severity_and_outcome(tenant_run: TenantRun) -> None:
    _, _, out = tenant_run
    html_path = next(out.glob("*.html"))
    rows = html_rows(html_path)
    # cbacheck's outcome (pytest-html's Result knows no "error" for a crashed check), ID, severity, title.
    expected = {
        "CBA-APP-001": ("failed", "critical"),
        "CBA-APP-002": ("blocked", "critical"),
        "CBA-APP-003": ("failed", "medium"),
        "CBA-APP-004": ("error", "high"),
        "CBA-PERM-001": ("passed", "critical"),
        "CUSTOM-SKIP-001": ("skipped", "info"),
        "CUSTOM-CRASH-001": ("error", "low"),
    }
    assert {key: (r["result"], r["severity"]) for key, r in rows.items()} == expected
    assert "no app registration has app ID 1111" in rows["CBA-APP-001"]["finding"]
    assert rows["CBA-APP-001"]["title"] and "test_checks.py" not in str(rows["CBA-APP-001"])
    assert not rows["CBA-APP-001"]["log"]  # no assertion traceback
    names = [extra["name"] for extra in rows["CBA-APP-001"]["extras"] if extra["name"]]
    assert names == ["Evidence CBA-APP-001", "Remediation", "Reference"]
    assert "Remediation" not in [extra["name"] for extra in rows["CBA-PERM-001"]["extras"]]


def test_html_report_is_self_contained_and_escapes_evidence(
    tenant_run: TenantRun,
) -> None:
    _, _, out = tenant_run
    html_path = next(out.glob("*.html"))
    text = html_path.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in text
    block = next(e["content"] for e in html_rows(html_path)["CBA-APP-001"]["extras"] if e["format_type"] == "html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in block
    assert "<script" not in block
    assert not (out / "assets").exists()
    assert "First broken link:</strong> Link 2 — App registration: CBA-APP-001 failed" in text


def junit_cases(path: Path) -> dict[str, ET.Element]:
    """Requirement ID -> its test case."""
    return {
        prop.get("value") or "": case
        for case in ET.parse(path).iter("testcase")
        for prop in case.iter("property")
        if prop.get("name") == "requirement"
    }


def test_junit_carries_requirement_properties(tenant_run: TenantRun) -> None:
    _, _, out = tenant_run
    cases = junit_cases(next(out.glob("*.xml")))
    service_principal = cases["CBA-APP-002"]
    properties = {p.get("name"): p.get("value") for p in service_principal.iter("property")}
    assert properties == {
        "requirement": "CBA-APP-002",
        "severity": "critical",
        "app_id": "11111111-2222-3333-4444-555555555555",
        "profile": "exchange-online",
        "outcome": "blocked",
        "follows_from": "CBA-APP-001",
    }
    assert service_principal.find("failure") is not None
    assert cases["CBA-APP-004"].find("error") is not None


def test_junit_cases_are_named_by_requirement_grouped_by_link_with_the_finding(tenant_run: TenantRun) -> None:
    _, document, out = tenant_run
    tree = ET.parse(next(out.glob("*.xml")))
    cases = junit_cases(next(out.glob("*.xml")))
    app = cases["CBA-APP-001"]
    assert app.get("name") == f"CBA-APP-001 {catalogue.requirement('CBA-APP-001').title}"  # type: ignore[union-attr]
    assert app.get("classname") == "Link 2 App registration"
    failure = app.find("failure")
    assert failure is not None
    assert failure.get("message") == "no app registration has app ID 1111; expected exactly one"
    assert "AssertionError" not in (failure.text or "") and "assert " not in (failure.text or "")
    assert cases["CUSTOM-CRASH-001"].get("classname") == "Custom checks"
    suite = next(tree.iter("testsuite"))
    run_ids = [p.get("value") for p in suite.iter("property") if p.get("name") == "run_id"]
    assert suite.get("name") == "cbacheck" and run_ids == [document["run"]["run_id"]]


CERT_CHECKS = '''
import pytest


@pytest.mark.requirement("CBA-CERT-001", severity="critical", fix="new_certificate")
def test_readable(local_cert_facts, evidence, cba_settings):
    """The certificate file can be read"""
    evidence.observed("password seen by the check", cba_settings.cert_password)
    evidence.observed("subject", local_cert_facts.subject)


@pytest.mark.requirement("CBA-CERT-002", severity="critical", fix="new_certificate")
def test_key_matches(local_cert_facts):
    """A private key is available and matches the certificate"""
    assert local_cert_facts.private_key_matches
'''


def test_unreadable_certificate_fails_cert_001_and_the_checks_after_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_cert=CERT_CHECKS)
    (pytester.path / "broken.pfx").write_bytes(b"\x30\x82garbage")
    monkeypatch.setenv("CBACHECK_CERT_PASSWORD", "sekrit-xyz")
    result = pytester.runpytest("--cba-cert=broken.pfx", "--cba-report-dir=out", "-p", "no:cacheprovider")
    # Failed, not error: pytest, JUnit and the HTML report agree.
    result.assert_outcomes(failed=2)
    out = pytester.path / "out"
    document = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))
    records = by_id(document)
    assert records["CBA-CERT-001"]["outcome"] == "failed"
    assert records["CBA-CERT-001"]["message"].startswith("cannot read certificate 'broken.pfx' (option --cba-cert)")
    assert records["CBA-CERT-001"]["follows_from"] is None
    assert records["CBA-CERT-002"]["outcome"] == "blocked"
    assert records["CBA-CERT-002"]["follows_from"] == "CBA-CERT-001"
    assert records["CBA-CERT-002"]["message"].startswith("follows from CBA-CERT-001: cannot read certificate")
    cases = junit_cases(next(out.glob("*.xml")))
    assert cases["CBA-CERT-001"].find("failure") is not None and cases["CBA-CERT-001"].find("error") is None
    rows = html_rows(next(out.glob("*.html")))
    assert rows["CBA-CERT-001"]["result"] == "failed"
    assert rows["CBA-CERT-002"]["result"] == "blocked"
    assert "Traceback" not in result.stdout.str()
    # The PFX password was set, so it must appear in no output and no report.
    assert "sekrit-xyz" not in result.stdout.str() + result.stderr.str()
    for report in out.iterdir():
        assert "sekrit-xyz" not in report.read_text(encoding="utf-8"), report.name


def test_secret_recorded_by_a_check_is_withheld_from_every_report(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cbacheck.certs import generate_certificate

    generate_certificate("CN=plugin-test", tmp_path, password="sekrit-xyz")
    pytester.makepyfile(test_cert=CERT_CHECKS)
    monkeypatch.setenv("CBACHECK_CERT_PASSWORD", "sekrit-xyz")
    result = pytester.runpytest(f"--cba-cert={tmp_path / 'plugin-test.pfx'}", "--cba-report-dir=out")
    result.assert_outcomes(passed=2)
    out = pytester.path / "out"
    document = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))
    assert by_id(document)["CBA-CERT-001"]["evidence"]["observed"]["password seen by the check"] == (
        "(secret withheld)"
    )
    assert document["run"]["settings"]["cert_password"] == {
        "value": "(set)",
        "source": "env CBACHECK_CERT_PASSWORD",
    }
    assert document["run"]["verdict"] == "pass"
    for report in out.iterdir():
        assert "sekrit-xyz" not in report.read_text(encoding="utf-8"), report.name
    assert "sekrit-xyz" not in result.stdout.str() + result.stderr.str()


def test_no_certificate_configured_is_a_skip_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_cert=CERT_CHECKS)
    result = pytester.runpytest("--cba-run", "--cba-json=results.json", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2)
    document = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))
    assert {r["message"] for r in document["requirements"]} == {"no certificate configured"}
    # Nothing was proven, so the verdict is not a pass.
    assert document["run"]["verdict"] == "incomplete"
