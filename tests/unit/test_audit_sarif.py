"""SARIF of a tenant audit: one result per failed or accepted (app, requirement), the app as logical location."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from cbacheck.report import sarif

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "sarif-schema-2.1.0.json").read_text("utf-8"))


def _requirement(req_id: str, outcome: str, severity: str = "high") -> dict[str, Any]:
    return {"id": req_id, "title": f"title of {req_id}", "severity": severity, "outcome": outcome, "message": "why"}


def audit_document(tenant: str = "contoso.onmicrosoft.com") -> dict[str, Any]:
    return {
        "schema": "cbacheck-audit",
        "schema_version": 1,
        "tenant": tenant,
        "verdict": "failed",
        "not_read": {"last sign-in": "not read: 403 (needs AuditLog.Read.All)"},
        "apps": [
            {
                "appId": "11111111-1111-1111-1111-111111111111",
                "displayName": "payroll sync",
                "requirements": [
                    _requirement("CBA-AUD-001", "passed"),
                    _requirement("CBA-AUD-003", "failed"),
                    _requirement("CBA-AUD-013", "error", "medium"),
                ],
            },
            {
                "appId": "22222222-2222-2222-2222-222222222222",
                "displayName": "mail archiver",
                "requirements": [
                    _requirement("CBA-AUD-003", "accepted"),
                    _requirement("CBA-AUD-012", "failed", "medium"),
                ],
            },
        ],
    }


def validate(log: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(log)


def test_one_result_per_failed_or_accepted_app_and_requirement() -> None:
    log = sarif.audit_sarif_log(audit_document())
    validate(log)
    (run,) = log["runs"]
    found = [(r["properties"]["app"][:2], r["ruleId"], "suppressions" in r) for r in run["results"]]
    assert found == [("11", "CBA-AUD-003", False), ("22", "CBA-AUD-003", True), ("22", "CBA-AUD-012", False)]
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert rules == ["CBA-AUD-001", "CBA-AUD-003", "CBA-AUD-013", "CBA-AUD-012"]
    assert all(r["ruleIndex"] == rules.index(r["ruleId"]) for r in run["results"])
    assert run["tool"]["driver"]["rules"][1]["help"]["text"].startswith("Remove the client secrets")


def test_the_app_is_the_logical_location_under_a_stable_path_per_tenant() -> None:
    (run,) = sarif.audit_sarif_log(audit_document())["runs"]
    location = run["results"][0]["locations"][0]
    assert location["logicalLocations"] == [
        {
            "name": "payroll sync",
            "fullyQualifiedName": "contoso.onmicrosoft.com/11111111-1111-1111-1111-111111111111",
            "kind": "resource",
        }
    ]
    uri = location["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "cbacheck/tenants/contoso.onmicrosoft.com/apps/11111111-1111-1111-1111-111111111111"


def test_fingerprints_are_stable_and_differ_per_tenant() -> None:
    def prints(document: dict[str, Any]) -> list[str]:
        return [
            r["partialFingerprints"][sarif.FINGERPRINT] for r in sarif.audit_sarif_log(document)["runs"][0]["results"]
        ]

    later = audit_document()
    later["apps"][0]["requirements"][1]["message"] = "another wording"
    assert prints(audit_document()) == prints(later)
    assert len(set(prints(audit_document()))) == 3
    assert not set(prints(audit_document())) & set(prints(audit_document("fabrikam.onmicrosoft.com")))


def test_what_was_not_read_is_a_notification_and_an_error_verdict_is_not_a_successful_execution() -> None:
    document = audit_document()
    document["verdict"] = "error"
    (invocation,) = sarif.audit_sarif_log(document)["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    (note,) = invocation["toolExecutionNotifications"]
    assert "needs AuditLog.Read.All" in note["message"]["text"] and "contoso" in note["message"]["text"]


def test_a_merged_document_places_each_app_in_its_own_tenant() -> None:
    merged = audit_document()
    merged["schema"] = "cbacheck-audit-merged"
    merged["apps"][1]["tenant"] = "fabrikam.onmicrosoft.com"
    log = sarif.audit_sarif_log(merged)
    validate(log)
    tenants = [r["properties"]["tenant"] for r in log["runs"][0]["results"]]
    assert tenants == ["contoso.onmicrosoft.com", "fabrikam.onmicrosoft.com", "fabrikam.onmicrosoft.com"]
