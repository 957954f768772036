"""Hand-built results documents for the renderers: every outcome, `change`, exceptions and hostile tenant text."""

from __future__ import annotations

from typing import Any

from cbacheck.report import document, gate

HOSTILE = "<img src=x onerror=alert(1)> *bold* [link](http://evil) | @team \x1b[2J"
RUN_ID = "0b6f3a52-8a0e-4f63-9d7c-2f3a1c5e9b10"
TENANT_ID = "3c6f9a2e-51d4-4b8e-9f07-2a1d5c8e4b60"
APP_ID = "5e7d1c2b-8a4f-4c3e-9b1d-6f2a0e4c8d11"


def requirement(req_id: str, outcome: str, severity: str, link: int | None, **extra: Any) -> dict[str, Any]:
    return {
        "id": req_id,
        "title": f"Title of {req_id}",
        "severity": severity,
        "link": link,
        "fix": None,
        "outcome": outcome,
        "message": extra.pop("message", f"{req_id} {outcome}"),
        "evidence": extra.pop("evidence", {}),
        "follows_from": extra.pop("follows_from", None),
        "remediation": f"Fix {req_id}",
        "reference": "https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2",
        "key": {"app": APP_ID, "profile": "exchange-online", "requirement": req_id},
        **extra,
    }


def sample_document(*, config_file: str | None = "cbacheck.toml") -> dict[str, Any]:
    """A failing run with every outcome the gate knows, a compared run and an accepted exception."""
    requirements = [
        requirement(
            "CBA-CERT-001",
            "passed",
            "critical",
            1,
            change="same",
            evidence={"observed": {"subject": "CN=exchange-automation"}, "expected": ["readable"]},
        ),
        requirement(
            "CBA-KEY-001",
            "failed",
            "critical",
            3,
            message=f"app {HOSTILE} has no keyCredential for the local certificate",
            change="broken",
            previous_outcome="passed",
            evidence={
                "observed": {"keyCredentials": [{"displayName": HOSTILE, "keyId": "k1", "endDateTime": "2027-01-01"}]},
                "expected": ["a keyCredential whose SHA-1 thumbprint is E461"],
                "sources": [{"method": "GET", "url": "https://graph.microsoft.com/v1.0/applications", "status": 200}],
            },
        ),
        requirement(
            "CBA-KEY-002",
            "blocked",
            "critical",
            3,
            follows_from="CBA-KEY-001",
            message="follows from CBA-KEY-001, which failed",
            change="added",
        ),
        requirement(
            "CBA-PERM-004",
            "accepted",
            "high",
            4,
            message="full_access_as_app is granted",
            exception={"reason": f"legacy EWS job {HOSTILE}", "approver": "alice@contoso.com", "expires": "2027-03-31"},
            change="same",
        ),
        requirement(
            "CBA-APP-005",
            "warning",
            "low",
            2,
            message="an expired key is left on the app",
            change="fixed",
            previous_outcome="failed",
        ),
        requirement("CBA-ROLE-002", "error", "medium", 5, message="could not verify: 403"),
        requirement("CBA-EXO-001", "not selected", "critical", 6, message="not selected"),
    ]
    return {
        "schema": "https://cbacheck.dev/schema/results/2",
        "tool": {"name": "cbacheck", "version": "0.1.0"},
        "run": {
            "run_id": RUN_ID,
            "related": {"before": "11111111-1111-4111-8111-111111111111"},
            "operator": {
                "user": "ops",
                "host": "build01",
                "ci_run_url": "https://github.com/contoso/infra/actions/runs/42",
            },
            "started": "2026-12-01T10:00:00Z",
            "finished": "2026-12-01T10:00:02Z",
            "duration_s": 2.0,
            "sandbox": False,
            "verdict": "fail",
            "headline": "FAIL: CBA-KEY-001 (critical) failed",
            "exit_code": 1,
            "exit_reason": "CBA-KEY-001 (critical) failed",
            "gate": {"fail_on": "info", "require": "configured", "allow_unverified": False, "select": [], "skip": []},
            "settings": {
                "tenant": {"value": TENANT_ID, "source": f"file {config_file}" if config_file else "option --tenant"},
                "app_id": {"value": APP_ID, "source": "env CBACHECK_APP_ID"},
                "fix": {"value": "plan", "source": "default"},
            },
            "python": "3.11.2",
            "pytest": "9.2.0",
            "collection_errors": [],
            "not_evaluated": [],
        },
        "summary": {
            "root_causes": [record["id"] for record in gate.root_causes(requirements)],
            "counts": document.counts(requirements),
            "by_severity": document.by_severity(requirements),
            "first_broken": document.first_broken(requirements),
        },
        "requirements": requirements,
        "tenant": {
            "collected_at": "2026-12-01T10:00:01Z",
            "tenant": TENANT_ID,
            "app_id": APP_ID,
            "display_name": f"Contoso {HOSTILE}",
            "initial_domain": "contoso.onmicrosoft.com",
            "app_display_name": "Exchange automation",
            "auditor": "certificate app",
            "facts": {},
            "stats": {},
            "requests": [],
        },
        "fixes": {
            "mode": "plan",
            "plan": [
                {
                    "id": "add-key",
                    "mends": ["CBA-KEY-001"],
                    "reason": f"certificate is not among the app's keys {HOSTILE}",
                    "request": {"method": "PATCH", "path": "/applications/a1", "body": {"keyCredentials": "(elided)"}},
                    "permission": "Application.ReadWrite.OwnedBy",
                    "automated": True,
                }
            ],
            "applied": [],
        },
    }
