"""The JSON results document: one per run with the verdict, the requirements in chain order and the facts."""

from __future__ import annotations

import dataclasses
import errno
import getpass
import json
import os
import platform
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any

import cbacheck
from cbacheck import catalogue, profiles
from cbacheck.config import Settings
from cbacheck.errors import ExitCode
from cbacheck.evidence import redacted
from cbacheck.facts import FACT_NAMES, NOT_CONFIGURED, TenantFacts, Unavailable
from cbacheck.report import gate
from cbacheck.report.gate import Decision

SCHEMA_ID = "https://cbacheck.dev/schema/results/2"
OUTCOMES = gate.OUTCOMES
NO_CERTIFICATE = gate.NO_CERTIFICATE
# Skips that only mean "this link was not asked for"; any other skip leaves the verdict incomplete.
NOT_CONFIGURED_REASONS = (NOT_CONFIGURED, NO_CERTIFICATE)


def mark_pending(requirements: Iterable[dict[str, Any]], pending: Mapping[str, str]) -> None:
    """A requirement mended by an action still propagating (or downstream of one) is pending, not broken."""
    for record in requirements:
        if record["outcome"] not in ("failed", "blocked", "error"):
            continue
        # The plan names another profile's result ID@profile (profiles.qualified); the default profile's by ID.
        profile = str(record.get("profile") or profiles.DEFAULT)
        keys = [profiles.qualified(req, profile) for req in (record["id"], *catalogue.upstream_closure(record["id"]))]
        reason = next((pending[key] for key in keys if key in pending), None)
        if reason:
            record["outcome"] = "pending"
            record["message"] = f"pending propagation: {reason}; last seen: {record['message']}"


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def chain_sorted(requirements: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(requirements, key=lambda r: (*catalogue.chain_order(r["id"]), r.get("nodeid", "")))


def nearest_failed_upstream(req_id: str, outcomes: Mapping[str, str]) -> str | None:
    """The closest upstream requirement (catalogue order) that did not hold, if any.

    An accepted or warned upstream still failed: what follows from it is no independent cause.
    """
    for upstream in catalogue.upstream_closure(req_id):
        if outcomes.get(upstream) in ("failed", "blocked", "accepted", "warning"):
            return upstream
    return None


def follows_note(upstream: str) -> str:
    return f"follows from {upstream}, which failed"


def outcomes_seen_by(profile: str | None, records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Outcome per requirement ID as a check of that profile sees its upstream: its own profile's results
    and those reported once for every profile (the certificate, the app registration, ...)."""
    return {
        str(r["id"]): str(r["outcome"])
        for r in records
        if profile is None or r.get("profile") in (None, profile) or r["id"] not in profiles.PROFILE_DEPENDENT
    }


def fill_follows_from(requirements: Sequence[dict[str, Any]]) -> None:
    """Name the nearest failed upstream for each failure or error that does not name one yet."""
    for record in requirements:
        if record["outcome"] not in ("failed", "error") or record.get("follows_from"):
            continue
        outcomes = outcomes_seen_by(record.get("profile"), requirements)
        upstream = nearest_failed_upstream(record["id"], outcomes)
        if upstream is not None:
            record["follows_from"] = upstream
            if upstream not in record["message"]:
                record["message"] = f"{record['message']} ({follows_note(upstream)})".lstrip()


def verdict(
    requirements: Sequence[Mapping[str, Any]],
    collection_errors: Sequence[object] = (),
    not_evaluated: Sequence[str] = (),
    settings: Settings | None = None,
) -> str:
    """pass, fail or incomplete, as the gate decides it (gate.decide; docs/reports.md, "Verdict")."""
    return gate.decide(requirements, settings or Settings(), not_evaluated, collection_errors).verdict


def first_broken(requirements: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The headline's cause: the most severe independent failure (then error, pending) before any other."""
    roots = gate.root_causes(requirements) or sorted(
        (dict(r) for r in requirements if r["outcome"] in gate.BROKEN),
        key=lambda r: (gate.CAUSE_RANK[r["outcome"]], *catalogue.chain_order(r["id"])),
    )
    if not roots:
        return None
    record = roots[0]
    return {
        "id": record["id"],
        "link": record["link"],
        "link_name": catalogue.LINKS.get(record["link"], "") if record["link"] else "",
        "title": record["title"],
        "severity": record["severity"],
        "outcome": record["outcome"],
        "message": record["message"],
    }


def describe_first_broken(broken: Mapping[str, Any] | None) -> str:
    """One line: 'Link 3 — Certificate uploaded: CBA-KEY-001 failed: ...'."""
    if broken is None:
        return "No broken link."
    where = f"Link {broken['link']} — {broken['link_name']}: " if broken.get("link") else "Custom check: "
    return f"{where}{broken['id']} {broken['outcome']}: {broken['message']}"


def describe_not_evaluated(run: Mapping[str, Any]) -> str | None:
    """'INCOMPLETE: 2 requirements not evaluated: CBA-KEY-001, CBA-KEY-002', or None when all were."""
    missing = run.get("not_evaluated") or []
    if not missing:
        return None
    lead = "INCOMPLETE: " if run["verdict"] == "incomplete" else ""
    noun = "requirement" if len(missing) == 1 else "requirements"
    return (
        f"{lead}{len(missing)} {noun} not evaluated: {', '.join(missing)} (deselected by pytest's -k, -m or "
        "--deselect, or not reached after -x; use --select / --skip to narrow a run on record)"
    )


def counts(requirements: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(OUTCOMES, 0)
    for record in requirements:
        out[record["outcome"]] = out.get(record["outcome"], 0) + 1
    return out


def root_cause_count(requirements: Sequence[Mapping[str, Any]]) -> int:
    """Independent causes: broken results that follow from no other (what the headline counts)."""
    return len(gate.root_causes(requirements))


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
    organization, app = facts.known("organization"), facts.known("app")
    return {
        "collected_at": utc_iso(facts.collected_at),
        "tenant": facts.tenant,
        "app_id": facts.app_id,
        # The subject by name, as a reviewer knows it (null when it could not be read or does not exist).
        "display_name": organization.display_name if organization else None,
        "initial_domain": organization.initial_domain if organization else None,
        "app_display_name": app.display_name if app else None,
        "auditor": facts.auditor,
        "facts": {name: _fact_state(getattr(facts, name)) for name in FACT_NAMES},
        "stats": dataclasses.asdict(facts.stats),
        "requests": [source.as_dict() for source in facts.requests],
    }


def ci_run_url(environ: Mapping[str, str]) -> str | None:
    """The CI job that ran cbacheck: GitHub Actions, Azure Pipelines or GitLab CI, from their own variables."""
    if environ.get("GITHUB_RUN_ID") and environ.get("GITHUB_REPOSITORY"):
        server = environ.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        return f"{server}/{environ['GITHUB_REPOSITORY']}/actions/runs/{environ['GITHUB_RUN_ID']}"
    if environ.get("SYSTEM_COLLECTIONURI") and environ.get("SYSTEM_TEAMPROJECT") and environ.get("BUILD_BUILDID"):
        collection = environ["SYSTEM_COLLECTIONURI"].rstrip("/")
        return f"{collection}/{environ['SYSTEM_TEAMPROJECT']}/_build/results?buildId={environ['BUILD_BUILDID']}"
    return environ.get("CI_JOB_URL") or None


def operator(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Who ran the check: the OS user and host, and the CI run's URL when a CI system ran it."""
    environ = os.environ if environ is None else environ
    try:
        user: str | None = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        user = None
    return {"user": user, "host": platform.node() or None, "ci_run_url": ci_run_url(environ)}


# Why a session that did not run to its end exits as it does (pytest's status decides then, not the gate).
OVERRIDE_REASONS = {
    ExitCode.FAILED: "a test of this session that proves no requirement failed",
    ExitCode.INTERRUPTED: "interrupted before every check ran",
    ExitCode.INTERNAL: "internal error in cbacheck or pytest",
    ExitCode.USAGE: "pytest refused the command line",
}


def _decision(
    requirements: Sequence[Mapping[str, Any]],
    settings: Settings,
    not_evaluated: Sequence[str],
    collection_errors: Sequence[object],
    exit_code: int | None,
) -> Decision:
    decision = gate.decide(requirements, settings, not_evaluated, collection_errors)
    if exit_code is None or exit_code == decision.exit_code:
        return decision
    verdict = "fail" if decision.verdict == "fail" else "incomplete"
    reason = OVERRIDE_REASONS.get(exit_code, f"pytest ended the session with status {exit_code}")
    return Decision(verdict, exit_code, reason, f"{verdict.upper()}: {reason}")


def _gate_settings(settings: Settings) -> dict[str, Any]:
    return {
        "fail_on": settings.fail_on,
        "require": settings.require,
        "allow_unverified": settings.allow_unverified,
        "select": list(settings.select),
        "skip": list(settings.skip),
    }


def _summary(requirements: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "root_causes": [record["id"] for record in gate.root_causes(requirements)],
        "counts": counts(requirements),
        "by_severity": by_severity(requirements),
        "first_broken": first_broken(requirements),
    }


def _requirements(
    settings: Settings,
    records: Mapping[str, Mapping[str, Any]],
    durations: Mapping[str, float],
    pending: Mapping[str, str],
) -> list[dict[str, Any]]:
    """The records in chain order, each with its key (app, profile, ID), duration and node ID; pending marked."""
    requirements = chain_sorted(
        {
            "app_id": settings.app_id,
            "profile": gate.PROFILE,
            "exception": None,
            **record,
            "duration_s": round(durations.get(nodeid, 0.0), 3),
            "nodeid": nodeid,
        }
        for nodeid, record in records.items()
    )
    mark_pending(requirements, pending)
    fill_follows_from(requirements)
    return requirements


def build_document(
    settings: Settings,
    *,
    started: datetime,
    finished: datetime,
    exit_code: int | None = None,
    records: Mapping[str, Mapping[str, Any]],
    durations: Mapping[str, float],
    collection_errors: Sequence[dict[str, str]] = (),
    not_evaluated: Sequence[str] = (),
    tenant_facts: TenantFacts | None = None,
    plan: list[dict[str, Any]],
    applied: list[dict[str, Any]] | None = None,
    pending: Mapping[str, str] | None = None,
    run_id: str | None = None,
    related_runs: Mapping[str, str] | None = None,
    exceptions: Mapping[str, Any] | None = None,
    comparison: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The results document (see schema/results.schema.json); `records` maps each pytest node ID to its record.

    The gate decides the verdict and exit code; `exit_code` (pytest's view) only replaces it when the
    session did not run to its end (interrupted, internal error). `comparison` marks each result's
    change against an earlier run and returns the comparison block. `related_runs` names the runs this
    one belongs with ({"before": id} after a fix); a run that will apply fixes names the run id its
    re-check will have ({"after": id}), so each report names the other.
    """
    requirements = _requirements(settings, records, durations, pending or {})
    decision = _decision(requirements, settings, not_evaluated, collection_errors, exit_code)
    compared = comparison(requirements) if comparison is not None else None
    return {
        "schema": SCHEMA_ID,
        "tool": {"name": "cbacheck", "version": cbacheck.__version__},
        "run": {
            "run_id": run_id or str(uuid.uuid4()),
            "related": dict(related_runs or ({"after": str(uuid.uuid4())} if settings.fix == "apply" else {})),
            "operator": operator(),
            "started": utc_iso(started),
            "finished": utc_iso(finished),
            "duration_s": round((finished - started).total_seconds(), 3),
            "sandbox": settings.sandbox,
            "verdict": decision.verdict,
            "headline": decision.headline,
            "exit_code": decision.exit_code,
            "exit_reason": decision.reason,
            "gate": _gate_settings(settings),
            "settings": settings.describe(),
            "python": platform.python_version(),
            "pytest": version("pytest"),
            "collection_errors": list(collection_errors),
            "not_evaluated": list(not_evaluated),
            "exceptions": dict(exceptions) if exceptions is not None else None,
        },
        "comparison": compared,
        "summary": _summary(requirements),
        "requirements": requirements,
        "tenant": tenant_summary(tenant_facts),
        "fixes": _fixes(settings, plan, applied, requirements),
    }


def _fixes(
    settings: Settings,
    plan: list[dict[str, Any]],
    applied: list[dict[str, Any]] | None,
    requirements: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    return {
        "mode": settings.fix,
        "plan": plan,
        "applied": applied or [],
        # Accepted risks get no fix; the plan names them so a reader sees why nothing is planned.
        "accepted": [record["id"] for record in requirements if record["outcome"] == "accepted"],
    }


# The fields whose values come from outside cbacheck (the tenant, an exception, a check's evidence) and so
# may carry a secret; everything else in the document is cbacheck's own vocabulary and left as it is.
APPLIED_OWN_FIELDS = ("action_id", "status", "verdict", "response_status")


def redacted_record(record: Mapping[str, Any], secrets: Sequence[str]) -> dict[str, Any]:
    """A requirement record whose message and evidence values are withheld where they contain a secret."""
    return {
        **record,
        "message": redacted(record["message"], secrets),
        "evidence": redacted(record["evidence"], secrets),
    }


def redacted_document(document: Mapping[str, Any], secrets: Sequence[str]) -> dict[str, Any]:
    """The document with every value that can carry a secret (and contains one) withheld; keys never change."""
    out = dict(document)
    out["requirements"] = [redacted_record(record, secrets) for record in document["requirements"]]
    run = dict(document["run"])
    run["collection_errors"] = [
        {**error, "message": redacted(error["message"], secrets)} for error in run["collection_errors"]
    ]
    out["run"] = run
    broken = document["summary"]["first_broken"]
    if broken is not None:
        out["summary"] = {
            **document["summary"],
            "first_broken": {**broken, "message": redacted(broken["message"], secrets)},
        }
    if document["tenant"] is not None:
        tenant = document["tenant"]
        out["tenant"] = {
            **tenant,
            "facts": redacted(tenant["facts"], secrets),
            "requests": redacted(tenant["requests"], secrets),
        }
    fixes = document["fixes"]
    out["fixes"] = {
        **fixes,
        "plan": [
            {**action, **redacted({k: v for k, v in action.items() if k in ("reason", "request")}, secrets)}
            for action in fixes["plan"]
        ],
        "applied": [
            {key: value if key in APPLIED_OWN_FIELDS else redacted(value, secrets) for key, value in row.items()}
            for row in fixes["applied"]
        ],
    }
    return out


def write_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write the JSON so a reader never sees half a file (temporary file in the same folder, then rename).

    Refuses (OSError) to replace anything but a regular file: the rename would replace a device or a symlink.
    """
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OSError(errno.EEXIST, "it exists and is not a regular file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # backslashreplace: a value that is no valid Unicode (a file name in another encoding) is kept as a
        # \\udcXX escape, which JSON reads back, instead of failing the whole write.
        with os.fdopen(handle, "w", encoding="utf-8", errors="backslashreplace") as stream:
            json.dump(document, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@cache
def schema() -> dict[str, Any]:
    text = resources.files("cbacheck.report").joinpath("schema/results.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(document: Mapping[str, Any]) -> None:
    """Raise jsonschema.ValidationError when the document does not match the published schema."""
    import jsonschema  # type: ignore[import-untyped]  # imported here: only validating callers pay for it

    jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker()).validate(document)
