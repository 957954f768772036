"""The JSON results file: one document per run with the verdict, the requirements in chain order and the facts."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import cbacheck
from cbacheck import catalogue
from cbacheck.config import Settings
from cbacheck.facts import NOT_CONFIGURED, CertFacts, TenantFacts, Unavailable
from cbacheck.fixers import NO_OPT_INS, OptIns, plan_from_results

SCHEMA_ID = "https://cbacheck.dev/schema/results/1"
OUTCOMES = ("passed", "failed", "error", "skipped", "pending")
NO_CERTIFICATE = "no certificate configured"
# Skips that only mean "this link was not asked for"; any other skip leaves the verdict incomplete.
NOT_CONFIGURED_REASONS = (NOT_CONFIGURED, NO_CERTIFICATE)
TENANT_FACT_FIELDS = (
    "organization",
    "app",
    "app_sp",
    "exchange_sp",
    "app_role_grants",
    "role_assignments",
    "role_eligibilities",
    "token",
    "exchange",
)


@dataclass
class RunState:
    """What the plugin gathers during one session; kept in `config.stash[run_state_key]`."""

    active: bool = False
    settings: Settings | None = None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    html_path: Path | None = None
    json_path: Path | None = None
    junit_path: Path | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # nodeid -> requirement record
    durations: dict[str, float] = field(default_factory=dict)
    collection_errors: list[dict[str, str]] = field(default_factory=list)
    tenant_facts: TenantFacts | None = None
    cert_facts: CertFacts | None = None
    document: dict[str, Any] | None = None


run_state_key = pytest.StashKey[RunState]()
# The writes `cbacheck run`'s command line allowed beyond the default plan (fixers.OptIns).
fix_opt_ins_key = pytest.StashKey[OptIns]()

# `--fix apply` re-evaluates after applying; this object, passed to pytest as a plugin, tells that second
# run what was done. eq=False keeps it hashable, as pluggy needs of a plugin.
@dataclass(frozen=True, eq=False)
class AppliedFixes:
    """The actions an apply made before this evaluation, and the requirements still waiting on propagation."""

    rows: list[dict[str, Any]]
    pending: dict[str, str]  # requirement ID -> what it waits for and how long cbacheck waited


def mark_pending(requirements: Iterable[dict[str, Any]], pending: Mapping[str, str]) -> None:
    """A requirement mended by an action still propagating (or downstream of one) is pending, not broken."""
    for record in requirements:
        if record["outcome"] not in ("failed", "error"):
            continue
        reason = pending.get(record["id"]) or next(
            (pending[upstream] for upstream in catalogue.upstream_closure(record["id"]) if upstream in pending), None
        )
        if reason:
            record["outcome"] = "pending"
            record["message"] = f"pending propagation: {reason}; last seen: {record['message']}"


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def chain_sorted(requirements: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(requirements, key=lambda r: (*catalogue.chain_order(r["id"]), r.get("nodeid", "")))


def nearest_failed_upstream(req_id: str, outcomes: Mapping[str, str]) -> str | None:
    """The closest upstream requirement (catalogue order) that failed, if any."""
    for upstream in catalogue.upstream_closure(req_id):
        if outcomes.get(upstream) == "failed":
            return upstream
    return None


def follows_note(upstream: str) -> str:
    return f"follows from {upstream}, which failed"


def fill_follows_from(requirements: Sequence[dict[str, Any]]) -> None:
    """Name the nearest failed upstream for each failure or error that does not name one yet."""
    outcomes = {r["id"]: r["outcome"] for r in requirements}
    for record in requirements:
        if record["outcome"] not in ("failed", "error") or record.get("follows_from"):
            continue
        upstream = nearest_failed_upstream(record["id"], outcomes)
        if upstream is not None:
            record["follows_from"] = upstream
            if upstream not in record["message"]:
                record["message"] = f"{record['message']} ({follows_note(upstream)})".lstrip()


def verdict(requirements: Sequence[Mapping[str, Any]], collection_errors: Sequence[object] = ()) -> str:
    """fail: something failed. incomplete: nothing failed but something could not be verified, was skipped
    for another reason than "not configured", could not be collected, or nothing passed. pass: the rest."""
    outcomes = [r["outcome"] for r in requirements]
    if "failed" in outcomes:
        return "fail"
    if "error" in outcomes or "pending" in outcomes or collection_errors or "passed" not in outcomes:
        return "incomplete"
    for record in requirements:
        if record["outcome"] == "skipped" and record.get("message") not in NOT_CONFIGURED_REASONS:
            return "incomplete"
    return "pass"


def first_broken(requirements: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The first failure in chain order; the first error when nothing failed."""
    ordered = chain_sorted(dict(r) for r in requirements)
    for wanted in ("failed", "error"):
        for record in ordered:
            if record["outcome"] == wanted:
                return {
                    "id": record["id"],
                    "link": record["link"],
                    "link_name": catalogue.LINKS.get(record["link"], "") if record["link"] else "",
                    "title": record["title"],
                    "outcome": record["outcome"],
                    "message": record["message"],
                }
    return None


def describe_first_broken(broken: Mapping[str, Any] | None) -> str:
    """One line: 'Link 3 — Certificate uploaded: CBA-KEY-001 failed: ...'."""
    if broken is None:
        return "No broken link."
    where = f"Link {broken['link']} — {broken['link_name']}: " if broken.get("link") else "Custom check: "
    return f"{where}{broken['id']} {broken['outcome']}: {broken['message']}"


def counts(requirements: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(OUTCOMES, 0)
    for record in requirements:
        out[record["outcome"]] = out.get(record["outcome"], 0) + 1
    return out


def by_severity(requirements: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    out = {severity: dict.fromkeys(OUTCOMES, 0) for severity in catalogue.SEVERITIES}
    for record in requirements:
        out.setdefault(record["severity"], dict.fromkeys(OUTCOMES, 0))[record["outcome"]] += 1
    return out


def _fact_state(value: object) -> dict[str, str]:
    if isinstance(value, Unavailable):
        return {"state": "unavailable", "reason": str(value)}
    if value is None:
        return {"state": "absent", "reason": ""}
    return {"state": "present", "reason": ""}


def tenant_summary(facts: TenantFacts | None) -> dict[str, Any] | None:
    """What was collected from the tenant, whether each fact came back, and the requests that fetched it."""
    if facts is None:
        return None
    return {
        "collected_at": utc_iso(facts.collected_at),
        "tenant": facts.tenant,
        "app_id": facts.app_id,
        "auditor": facts.auditor,
        "facts": {name: _fact_state(getattr(facts, name)) for name in TENANT_FACT_FIELDS},
        "stats": dataclasses.asdict(facts.stats),
        "requests": [source.as_dict() for source in facts.requests],
    }


def plan_fixes(session: pytest.Session) -> list[dict[str, Any]]:
    """The fixes' plan for this run's results (as plain dicts for the reports)."""
    state = session.config.stash.get(run_state_key, None)
    if state is None or state.settings is None:
        return []
    requirements = chain_sorted(state.records.values())
    opt_ins = session.config.stash.get(fix_opt_ins_key, NO_OPT_INS)
    return plan_from_results(requirements, state.settings, state.tenant_facts, state.cert_facts, opt_ins)


def build_document(
    state: RunState,
    *,
    finished: datetime,
    exit_code: int,
    plan: list[dict[str, Any]],
    applied: list[dict[str, Any]] | None = None,
    pending: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The results document (see schema/results.schema.json)."""
    settings = state.settings or Settings()
    requirements = chain_sorted(
        {**record, "duration_s": round(state.durations.get(nodeid, 0.0), 3), "nodeid": nodeid}
        for nodeid, record in state.records.items()
    )
    mark_pending(requirements, pending or {})
    fill_follows_from(requirements)
    return {
        "schema": SCHEMA_ID,
        "tool": {"name": "cbacheck", "version": cbacheck.__version__},
        "run": {
            "started": utc_iso(state.started),
            "finished": utc_iso(finished),
            "duration_s": round((finished - state.started).total_seconds(), 3),
            "sandbox": settings.sandbox,
            "verdict": verdict(requirements, state.collection_errors),
            "exit_code": exit_code,
            "settings": settings.describe(),
            "python": platform.python_version(),
            "pytest": pytest.__version__,
            "collection_errors": list(state.collection_errors),
        },
        "summary": {
            "counts": counts(requirements),
            "by_severity": by_severity(requirements),
            "first_broken": first_broken(requirements),
        },
        "requirements": requirements,
        "tenant": tenant_summary(state.tenant_facts),
        "fixes": {"mode": settings.fix, "plan": plan, "applied": applied or []},
    }


def write_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write the JSON so a reader never sees half a file (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@cache
def schema() -> dict[str, Any]:
    text = resources.files("cbacheck").joinpath("schema/results.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(document: Mapping[str, Any]) -> None:
    """Raise jsonschema.ValidationError when the document does not match the published schema."""
    import jsonschema  # type: ignore[import-untyped]  # imported here: only validating callers pay for it

    jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker()).validate(document)
