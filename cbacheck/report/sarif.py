"""SARIF 2.1.0 from a results document: one rule per requirement, one result per failed, blocked or accepted one."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cbacheck.report import readable

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://github.com/cbacheck/cbacheck"
# GitHub code scanning reads `security-severity` (0.0-10.0) into its own bands: 9.0+ critical, 7.0-8.9 high,
# 4.0-6.9 medium, 0.1-3.9 low.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
FINGERPRINT = "cbacheckResult/v1"


def virtual_path(document: Mapping[str, Any]) -> str:
    """Where a result is located: the config file when the settings came from one, else a path that names the
    tenant and the app and stays the same from run to run (code scanning needs a physical location)."""
    who = readable.subject(document)
    if who["config_file"]:
        config = Path(who["config_file"])
        if config.is_absolute() and config.is_relative_to(Path.cwd()):
            config = config.relative_to(Path.cwd())  # code scanning locates files relative to the checkout
        return quote(config.as_posix(), safe="/._-~")
    tenant = quote(who["tenant_id"] or "no-tenant", safe="._-")
    app = quote(who["app_id"] or "no-app", safe="._-")
    return f"cbacheck/tenants/{tenant}/apps/{app}"


def fingerprint(record: Mapping[str, Any], document: Mapping[str, Any]) -> str:
    """Stable across runs: the tenant and the result key (app, profile, requirement), never the message."""
    tenant = readable.subject(document)["tenant_id"].lower()
    app, profile, requirement = readable.result_key(record, document)
    return hashlib.sha256("|".join((tenant, app.lower(), profile, requirement)).encode()).hexdigest()


def _rule(record: Mapping[str, Any]) -> dict[str, Any]:
    severity = readable.text(record.get("severity")) or "info"
    rule: dict[str, Any] = {
        "id": readable.text(record.get("id")),
        "name": readable.text(record.get("id")).replace("-", ""),
        "shortDescription": {"text": readable.text(record.get("title")) or readable.text(record.get("id"))},
        "defaultConfiguration": {"level": LEVELS.get(severity, "warning")},
        "properties": {
            "security-severity": SECURITY_SEVERITY.get(severity, "5.0"),
            "severity": severity,
            "tags": ["security", readable.link_name(record.get("link"))],
        },
    }
    if record.get("remediation"):
        rule["help"] = {"text": readable.text(record["remediation"])}
    if record.get("reference"):
        rule["helpUri"] = readable.text(record["reference"])
    return rule


def _result(record: Mapping[str, Any], index: int, document: Mapping[str, Any]) -> dict[str, Any]:
    outcome = readable.outcome_of(record)
    app, profile, _ = readable.result_key(record, document)
    message = readable.text(record.get("message")) or readable.text(record.get("title"))
    result: dict[str, Any] = {
        "ruleId": readable.text(record.get("id")),
        "ruleIndex": index,
        "level": LEVELS.get(readable.text(record.get("severity")), "warning"),
        "message": {"text": f"{record.get('id')} {outcome}: {message}"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": virtual_path(document)},
                    "region": {"startLine": 1},
                },
                "logicalLocations": [{"name": f"{app}/{profile}", "kind": "module"}],
            }
        ],
        "partialFingerprints": {FINGERPRINT: fingerprint(record, document)},
        "properties": {"outcome": outcome, "app": app, "profile": profile},
    }
    if record.get("follows_from"):
        result["properties"]["follows_from"] = readable.text(record["follows_from"])
    if readable.change_text(record):
        result["properties"]["change"] = readable.change_text(record)
    if outcome == "accepted":
        exception = readable.exception_of(record) or {}
        suppression: dict[str, Any] = {"kind": "external", "status": "accepted"}
        justification = "; ".join(
            f"{name}: {readable.text(exception[name])}"
            for name in ("reason", "approver", "expires")
            if exception.get(name)
        )
        if justification:
            suppression["justification"] = justification
        result["suppressions"] = [suppression]
    return result


def sarif_log(document: Mapping[str, Any]) -> dict[str, Any]:
    """The SARIF log of one run (validated against the OASIS schema in the tests)."""
    requirements = document.get("requirements") or []
    rules: dict[str, dict[str, Any]] = {}
    for record in requirements:
        rules.setdefault(readable.text(record.get("id")), _rule(record))
    index = {rule_id: position for position, rule_id in enumerate(rules)}
    results = [
        _result(record, index[readable.text(record.get("id"))], document)
        for record in requirements
        if readable.outcome_of(record) in readable.FINDING_OUTCOMES
    ]
    run_info = document.get("run") or {}
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "cbacheck",
                "version": readable.text((document.get("tool") or {}).get("version")),
                "informationUri": INFORMATION_URI,
                "rules": list(rules.values()),
            }
        },
        "results": results,
        "invocations": [
            {
                "executionSuccessful": run_info.get("verdict") in ("pass", "fail"),
                **({"startTimeUtc": run_info["started"]} if run_info.get("started") else {}),
                **({"endTimeUtc": run_info["finished"]} if run_info.get("finished") else {}),
            }
        ],
        "properties": {
            "run_id": readable.text(run_info.get("run_id")),
            "verdict": readable.text(run_info.get("verdict")),
        },
    }
    if run_info.get("run_id"):
        run["automationDetails"] = {"id": f"cbacheck/{run_info['run_id']}", "guid": run_info["run_id"]}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
