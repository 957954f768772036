"""The gate: selection, accepted and warning outcomes, root causes, and the exit code decided from the verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fnmatch import fnmatchcase
from typing import Any

from cbacheck import catalogue
from cbacheck.config import Settings, env_name, option_name
from cbacheck.errors import ExitCode
from cbacheck.facts import NOT_CONFIGURED
from cbacheck.report.exceptions import PROFILE, ExceptionsFile, exception_note

__all__ = ["PROFILE", "Decision", "decide", "judged", "not_selected_reason", "root_causes", "selection_problems"]

NO_CERTIFICATE = "no certificate configured"
NOT_SELECTED = "not selected"
SKIPS = (NO_CERTIFICATE, NOT_CONFIGURED)  # the skips that only say a link was not configured
# Every outcome a result can have (docs/reports.md, "Outcomes").
OUTCOMES = ("passed", "failed", "blocked", "error", "accepted", "warning", "skipped", "not selected", "pending")
# Outcomes of a requirement that was not proven; which of them fail the gate depends on the settings.
BROKEN = ("failed", "blocked", "error", "pending")
SEVERITY_RANK = {severity: rank for rank, severity in enumerate(catalogue.SEVERITIES)}
# Which broken outcome names the cause first: a failure before what could not be verified.
CAUSE_RANK = {"failed": 0, "error": 1, "pending": 2, "blocked": 3}


def result_key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """(app, profile, requirement ID): what identifies a result in JSON, JUnit, comparisons and exceptions."""
    return (str(record.get("app_id") or ""), str(record.get("profile") or PROFILE), str(record["id"]))


# --- selection ------------------------------------------------------------------------------------


def _matches(req_id: str, patterns: Sequence[str]) -> str | None:
    return next((pattern for pattern in patterns if fnmatchcase(req_id.upper(), pattern.upper())), None)


def not_selected_reason(req_id: str, settings: Settings) -> str | None:
    """Why --select / --skip leave this requirement out, or None when it is in scope."""
    if settings.select and _matches(req_id, settings.select) is None:
        return f"{NOT_SELECTED}: not matched by {option_name('select')} {','.join(settings.select)}"
    skipped_by = _matches(req_id, settings.skip)
    if skipped_by is not None:
        return f"{NOT_SELECTED}: left out by {option_name('skip')} {skipped_by}"
    return None


def selection_problems(settings: Settings) -> list[str]:
    """A pattern that matches no requirement of the catalogue is a typo that would narrow the run silently."""
    problems = []
    for name in ("select", "skip"):
        for pattern in getattr(settings, name):
            if not any(fnmatchcase(req_id, pattern.upper()) for req_id in catalogue.CATALOGUE):
                problems.append(
                    f"{name} pattern {pattern!r} ({settings.source(name)}) matches no requirement ID "
                    "(IDs look like CBA-KEY-001; * and ? match any text)"
                )
    return problems


# --- outcomes the settings decide ----------------------------------------------------------------


def at_or_above(severity: str, fail_on: str) -> bool:
    """The severity is at or above the --fail-on level (an unknown severity counts as critical)."""
    return SEVERITY_RANK.get(severity, 0) <= SEVERITY_RANK[fail_on]


def judged(
    record: dict[str, Any], settings: Settings, exceptions: ExceptionsFile | None, today: date
) -> dict[str, Any]:
    """The record with the outcome the gate gives it: a covered failure is accepted, one below --fail-on a warning.

    An expired exception leaves the failure failed and says so. Remediation texts that speak of a
    reviewed exception point to the exceptions file.
    """
    profile = str(record.get("profile") or PROFILE)
    out = {**record, "app_id": settings.app_id, "profile": profile, "exception": None}
    entry = exceptions.matching(out["id"], settings.app_id, profile) if exceptions else None
    if exceptions is not None and entry is not None and out["outcome"] == "failed":
        note = exception_note(entry, exceptions, today)
        out["exception"] = {**entry.as_dict(), "state": "expired" if entry.expired(today) else "current"}
        if entry.expired(today):
            out["message"] = f"{out['message']} ({note})"
        else:
            out["outcome"] = "accepted"
            out["remediation"] = f"Accepted risk: {note}. Until then: {out['remediation']}".rstrip(": ")
    elif "exception" in str(out.get("remediation", "")).lower():
        where = (
            f"the exceptions file {exceptions.path}"
            if exceptions
            else f"an exceptions file ({option_name('exceptions')})"
        )
        out["remediation"] = (
            f"{out['remediation']} A reviewed exception is recorded as an [[exception]] entry for {out['id']} "
            f"in {where}, with reason, approver and expires."
        )
    if out["outcome"] == "failed" and not at_or_above(out["severity"], settings.fail_on):
        out["outcome"] = "warning"
    return out


def gating(record: Mapping[str, Any], settings: Settings) -> bool:
    """This result fails the run (docs/reports.md, "Exit codes")."""
    outcome = record["outcome"]
    if outcome in ("failed", "blocked"):
        return at_or_above(str(record["severity"]), settings.fail_on)  # a blocked one at its own severity
    if outcome == "error":
        return not settings.allow_unverified
    if outcome == "skipped":
        return not skip_allowed(str(record.get("message", "")), settings.require)
    return bool(outcome == "pending")


def skip_allowed(reason: str, require: str) -> bool:
    """A skip leaves the gate open only when its link was not configured and --require does not ask for it."""
    if reason == NO_CERTIFICATE:
        return require not in ("cert", "all")
    if reason == NOT_CONFIGURED:
        return require not in ("tenant", "all")
    return False


# --- root causes and the decision ----------------------------------------------------------------


def root_causes(requirements: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Broken results that follow from no other: failures first, then the most severe, then chain order."""
    roots = [dict(r) for r in requirements if r["outcome"] in BROKEN and not r.get("follows_from")]
    return sorted(
        roots,
        key=lambda r: (CAUSE_RANK[r["outcome"]], SEVERITY_RANK.get(r["severity"], 0), *catalogue.chain_order(r["id"])),
    )


@dataclass(frozen=True)
class Decision:
    """What the gate decided: the verdict, cbacheck's exit code, why, and the one-line headline."""

    verdict: str
    exit_code: int
    reason: str
    headline: str


def _ids(records: Sequence[Mapping[str, Any]], limit: int = 6) -> str:
    shown = [f"{r['id']} ({r['severity']}, {r['outcome']})" for r in records[:limit]]
    more = f" and {len(records) - limit} more" if len(records) > limit else ""
    return ", ".join(shown) + more


def _nothing_evaluated(
    requirements: Sequence[Mapping[str, Any]], not_evaluated: Sequence[str], collection_errors: Sequence[object]
) -> str:
    if collection_errors:
        return f"nothing was evaluated: {len(collection_errors)} check file(s) could not be collected"
    if requirements and all(r["outcome"] == NOT_SELECTED for r in requirements):
        return f"nothing was evaluated: {option_name('select')} / {option_name('skip')} left out every requirement"
    if not_evaluated and not requirements:
        return "nothing was evaluated: pytest deselected every requirement (-k, -m or --deselect)"
    return (
        f"nothing was evaluated: set cert ({option_name('cert')} or {env_name('cert')}) to check the certificate, "
        f"and tenant and app_id ({option_name('tenant')} and {option_name('app_id')}, or {env_name('tenant')} "
        f"and {env_name('app_id')}) to check the tenant"
    )


def _scope_note(requirements: Sequence[Mapping[str, Any]]) -> str:
    """'certificate only; tenant links not configured' when only some links were asked for, else ''."""
    reasons = {r.get("message") for r in requirements if r["outcome"] == "skipped"}
    if NOT_CONFIGURED in reasons and NO_CERTIFICATE not in reasons:
        return "certificate only; tenant links not configured"
    if NO_CERTIFICATE in reasons and NOT_CONFIGURED not in reasons:
        return "tenant only; certificate links not configured"
    return ""


def _pass_extras(requirements: Sequence[Mapping[str, Any]]) -> list[str]:
    extras = []
    for outcome, noun in (("warning", "warning"), ("accepted", "accepted risk"), ("error", "allowed unverified")):
        number = sum(1 for r in requirements if r["outcome"] == outcome)
        if number:
            extras.append(f"{number} {noun}{'s' if number > 1 and outcome != 'error' else ''}")
    number = sum(1 for r in requirements if r["outcome"] == NOT_SELECTED)
    if number:
        extras.append(f"{number} {NOT_SELECTED}")
    return extras


def decide(
    requirements: Sequence[Mapping[str, Any]],
    settings: Settings,
    not_evaluated: Sequence[str] = (),
    collection_errors: Sequence[object] = (),
) -> Decision:
    """The verdict and exit code of a run whose checks ran to the end (docs/reports.md, "Exit codes")."""
    evaluated = [r for r in requirements if r["outcome"] not in ("skipped", NOT_SELECTED)]
    if not evaluated:
        reason = _nothing_evaluated(requirements, not_evaluated, collection_errors)
        return Decision("incomplete", ExitCode.USAGE, reason, f"NOTHING EVALUATED: {reason.split(': ', 1)[1]}")
    gates = [r for r in requirements if gating(r, settings)]
    failing = [r for r in gates if r["outcome"] in ("failed", "blocked")]
    if failing:
        roots = [r for r in root_causes(gates) if r["outcome"] in ("failed", "blocked")] or failing
        reason = (
            f"{len(failing)} requirement(s) at or above --fail-on {settings.fail_on} not met; "
            f"root cause(s): {_ids(roots)}"
        )
        first = roots[0]
        return Decision(
            "fail", ExitCode.FAILED, reason, f"FAIL: {first['id']} ({first['severity']}) {first['outcome']}"
        )
    if gates and all(r["outcome"] == "skipped" and r["message"] in SKIPS for r in gates):
        unchecked = ", ".join(sorted({str(r["message"]) for r in gates}))
        reason = f"{option_name('require')} {settings.require} asks for links that were not checked: {unchecked}"
        return Decision("incomplete", ExitCode.FAILED, reason, f"INCOMPLETE: {unchecked}")
    if gates:
        reason = f"not proven: {_ids(gates)}"
        if any(r["outcome"] == "error" for r in gates):
            reason += f" (errors fail the run unless {option_name('allow_unverified')})"
        return Decision("incomplete", ExitCode.FAILED, reason, f"INCOMPLETE: {len(gates)} requirement(s) not proven")
    if not_evaluated or collection_errors:
        missing = list(not_evaluated) or [f"{len(collection_errors)} check file(s) not collected"]
        reason = f"incomplete: not evaluated: {', '.join(missing)}"
        return Decision("incomplete", ExitCode.FAILED, reason, f"INCOMPLETE: {len(missing)} not evaluated")
    notes = [note for note in (_scope_note(requirements), *_pass_extras(requirements)) if note]
    headline = "PASS" + (f": {'; '.join(notes)}" if notes else "")
    return Decision(
        "pass", ExitCode.OK, "every requirement in scope passed" + (f" ({'; '.join(notes)})" if notes else ""), headline
    )
