"""SARIF 2.1.0 from a results or audit document: one rule per requirement, one result per finding."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cbacheck import __version__
from cbacheck.catalogue import AUDIT_CATALOGUE
from cbacheck.report import readable

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://github.com/cbacheck/cbacheck"
# GitHub code scanning reads `security-severity` (0.0-10.0) into its own bands: 9.0+ critical, 7.0-8.9 high,
# 4.0-6.9 medium, 0.1-3.9 low.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
FINGERPRINT = "cbacheckResult/v1"
AUDIT_FINDINGS = ("failed", "accepted")  # as the run's: a failure, or one an exception accepts (suppressed)


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


def _log(rules: dict[str, dict[str, Any]], results: list[dict[str, Any]], version: str, **run: Any) -> dict[str, Any]:
    """The SARIF envelope of one run: the tool with its rules, the results, and the run's own fields."""
    driver = {"name": "cbacheck", "version": version, "informationUri": INFORMATION_URI, "rules": list(rules.values())}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "results": results, **run}],
    }


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
    return _log(rules, results, readable.text((document.get("tool") or {}).get("version")), **run)


# --- the tenant audit (`cbacheck audit`, `cbacheck merge`): one result per failed or accepted (app, requirement) --


def _audit_rule(record: Mapping[str, Any]) -> dict[str, Any]:
    entry = AUDIT_CATALOGUE.get(readable.text(record.get("id")))
    if entry is None:  # an ID this version does not know (an input of a later cbacheck): its record alone
        return _rule(record)
    return _rule({**record, "link": entry.link, "remediation": entry.remediation, "reference": entry.reference})


def audit_location(tenant: str, app: Mapping[str, Any]) -> dict[str, Any]:
    """A stable virtual path per tenant and app (code scanning needs a physical location) and the app as the
    logical location."""
    app_id = readable.text(app.get("appId")) or "no-app"
    path = f"cbacheck/tenants/{quote(tenant or 'no-tenant', safe='._-')}/apps/{quote(app_id, safe='._-')}"
    return {
        "physicalLocation": {"artifactLocation": {"uri": path}, "region": {"startLine": 1}},
        "logicalLocations": [
            {
                "name": readable.text(app.get("displayName")) or app_id,
                "fullyQualifiedName": f"{tenant}/{app_id}",
                "kind": "resource",
            }
        ],
    }


def _audit_result(record: Mapping[str, Any], index: int, tenant: str, app: Mapping[str, Any]) -> dict[str, Any]:
    outcome = readable.text(record.get("outcome"))
    rule_id = readable.text(record.get("id"))
    app_id = readable.text(app.get("appId"))
    name = readable.text(app.get("displayName"))
    result: dict[str, Any] = {
        "ruleId": rule_id,
        "ruleIndex": index,
        "level": LEVELS.get(readable.text(record.get("severity")), "warning"),
        "message": {"text": f"{rule_id} {outcome}: {name} ({app_id}): {readable.text(record.get('message'))}"},
        "locations": [audit_location(tenant, app)],
        "partialFingerprints": {
            FINGERPRINT: hashlib.sha256(
                "|".join((tenant.lower(), app_id.lower(), "audit", rule_id)).encode()
            ).hexdigest()
        },
        "properties": {"outcome": outcome, "app": app_id, "tenant": tenant},
    }
    if outcome == "accepted":
        # The exception's reason, approver and expiry are already in the message (report/audit.py::accepted).
        result["suppressions"] = [{"kind": "external", "status": "accepted"}]
    return result


def audit_sarif_log(document: Mapping[str, Any]) -> dict[str, Any]:
    """The SARIF log of an audit or a merged audit: one run; each app's tenant is its own, else the document's."""
    rules: dict[str, dict[str, Any]] = {}
    findings = []
    for app in document.get("apps") or []:
        tenant = readable.text(app.get("tenant") or document.get("tenant"))
        for record in app.get("requirements") or []:
            rules.setdefault(readable.text(record.get("id")), _audit_rule(record))
            if record.get("outcome") in AUDIT_FINDINGS:
                findings.append((record, tenant, app))
    index = {rule_id: position for position, rule_id in enumerate(rules)}
    results = [_audit_result(r, index[readable.text(r.get("id"))], tenant, app) for r, tenant, app in findings]
    not_read = [
        {"level": "warning", "message": {"text": f"{tenant}: {what} {why}"}}
        for tenant, what, why in _not_read(document)
    ]
    invocation: dict[str, Any] = {"executionSuccessful": document.get("verdict") in ("passed", "failed")}
    if not_read:
        invocation["toolExecutionNotifications"] = not_read
    properties = {"verdict": readable.text(document.get("verdict")), "schema": readable.text(document.get("schema"))}
    return _log(rules, results, __version__, invocations=[invocation], properties=properties)


def _not_read(document: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(tenant, what, why) for everything an audit, or each tenant of a merged audit, could not read."""
    parts = document.get("tenants") or [document]
    return [
        (readable.text(part.get("tenant")), readable.text(what), readable.text(why))
        for part in parts
        for what, why in (part.get("not_read") or {}).items()
    ]
