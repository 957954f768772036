"""How a check's run becomes cbacheck's outcome: setup and call wrappers, the outcome rules, the report record."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

import pytest
from pytest_html import extras

from cbacheck.chain import UpstreamFailure
from cbacheck.errors import CbaCheckError
from cbacheck.evidence import SECRET_MARK, Evidence
from cbacheck.facts import CertFacts
from cbacheck.plugin.fixtures import profile_of_item
from cbacheck.plugin.marker import RequirementMark
from cbacheck.plugin.state import (
    deferred_failure_key,
    evidence_of,
    requirement_key,
    secrets_of,
    state_of,
)
from cbacheck.report import gate
from cbacheck.report.console import console_safe
from cbacheck.report.document import (
    NOT_CONFIGURED_REASONS,
    follows_note,
    nearest_failed_upstream,
    outcomes_seen_by,
    redacted_record,
)
from cbacheck.report.gate import NOT_SELECTED
from cbacheck.report.html import render_evidence


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    mark = item.stash.get(requirement_key, None)
    if mark is None:
        return (yield)
    evidence_of(item)
    for prop in (("requirement", mark.id), ("severity", mark.severity)):
        if prop not in item.user_properties:
            item.user_properties.append(prop)
    try:
        yield
    except UpstreamFailure as failure:
        # A fixture found the chain broken upstream (e.g. an unreadable certificate). That is a failed
        # check, not an error, so the failure is raised again in the call phase, where pytest, JUnit
        # and pytest-html all report it as failed.
        item.stash[deferred_failure_key] = failure
        return None
    cert = item.funcargs.get("local_cert_facts") if hasattr(item, "funcargs") else None
    if isinstance(cert, CertFacts):
        evidence_of(item).add("certificate file", {"path": str(cert.path), "from": cert.source})
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    failure = item.stash.get(deferred_failure_key, None)
    if failure is not None:
        __tracebackhide__ = True
        mark = item.stash.get(requirement_key, None)
        if mark is not None and mark.id == failure.upstream:
            raise AssertionError(failure.reason)  # the check that owns the failure states it plainly
        raise failure
    return (yield)


def _assertion_message(error: BaseException) -> str:
    text = str(error).strip()
    if not text:
        return "the check's assertion failed without a message"
    head, separator, _ = text.partition("\nassert ")
    if separator and head.strip():
        return head.strip()  # drop pytest's rewritten 'assert ...' explanation; the sentence is the finding
    return text.splitlines()[0]


def _skip_reason(report: pytest.TestReport, call: pytest.CallInfo[None]) -> str:
    value = call.excinfo.value if call.excinfo is not None else None
    reason = getattr(value, "msg", None)
    if reason is None and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(reason or "skipped")


def _error_message(error: BaseException | None, report: pytest.TestReport) -> str:
    if isinstance(error, CbaCheckError):
        return str(error)
    if error is None:
        return report.longreprtext.strip().splitlines()[-1] if report.longreprtext.strip() else "unknown error"
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"could not verify: {type(error).__name__}: {first_line}".rstrip(": ")


def _outcome(report: pytest.TestReport, call: pytest.CallInfo[None]) -> tuple[str, str, str | None]:
    """(outcome, message, follows_from) in cbacheck's terms: only an assertion is non-compliance."""
    if report.passed:
        return "passed", "", None
    if report.skipped:
        reason = _skip_reason(report, call)
        return (NOT_SELECTED if reason.startswith(NOT_SELECTED) else "skipped"), reason, None
    error = call.excinfo.value if call.excinfo is not None else None
    if report.when == "call" and isinstance(error, UpstreamFailure):
        # Not evaluated: the check cannot hold because an upstream requirement failed, which it names.
        return "blocked", _assertion_message(error), error.upstream
    if report.when == "call" and isinstance(error, AssertionError):
        return "failed", _assertion_message(error), None
    message = _error_message(error, report)
    if report.when == "teardown":
        message = f"teardown failed: {message}"
    return "error", message, None


def _unless_not_configured(
    records: Iterable[dict[str, Any]], upstream: str, outcome: str, message: str
) -> tuple[str, str]:
    """Blocked by an upstream that was only skipped as not configured: this link was not asked for either.

    A tenant-only audit without the app's certificate skips CBA-CERT-001; the key checks that need the
    certificate are then skipped for the same reason, not blocked (nothing failed upstream).
    """
    skipped = next((r for r in records if r["id"] == upstream and r["outcome"] == "skipped"), None)
    if skipped is not None and skipped["message"] in NOT_CONFIGURED_REASONS:
        return "skipped", str(skipped["message"])
    return outcome, message


def _final_phase(report: pytest.TestReport) -> bool:
    """The phase whose report carries the requirement's outcome."""
    return (
        report.when == "call"
        or (report.when == "setup" and not report.passed)
        or (report.when == "teardown" and report.failed)
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A new-style wrapper, not tryfirst: pytest-html's tryfirst wrapper runs after this one and keeps our extras.
    report = yield
    mark = item.stash.get(requirement_key, None)
    state = state_of(item.config)
    if mark is None or not state.active or not _final_phase(report):
        return report
    outcome, message, follows_from = _outcome(report, call)
    if outcome == "blocked" and follows_from is not None:
        outcome, message = _unless_not_configured(state.records.values(), follows_from, outcome, message)
    profile = profile_of_item(item, state.settings) if state.settings is not None else None
    if follows_from is None and outcome in ("failed", "error"):
        outcomes = outcomes_seen_by(profile, state.records.values())
        follows_from = nearest_failed_upstream(mark.id, outcomes)
        if follows_from is not None and follows_from not in message:
            message = f"{message} ({follows_note(follows_from)})"
    evidence = evidence_of(item)
    secrets = secrets_of(item.config)
    _withhold_secrets(report, secrets)
    _console_safe_failure(report)
    record = _record(mark, outcome, message, follows_from, evidence, secrets)
    if profile is not None:
        record["profile"] = profile
    if state.settings is not None:
        record = gate.judged(record, state.settings, state.exceptions, state.started.date())
    report.cba = record  # type: ignore[attr-defined]  # a plain dict, so it survives xdist serialisation
    # The result's key (app, profile, requirement) and cbacheck's outcome, for JUnit readers.
    properties = {
        "app_id": record.get("app_id") or "",
        "profile": record.get("profile") or "",
        "outcome": record["outcome"],
        **({"follows_from": follows_from} if follows_from is not None else {}),
    }
    for target in (item.user_properties, report.user_properties):
        target[:] = [prop for prop in target if prop[0] not in properties]
        target.extend(properties.items())
    if state.html_path is not None:
        failing = record["outcome"] in ("failed", "blocked", "error", "accepted", "warning")
        report.extras = [  # type: ignore[attr-defined]
            *getattr(report, "extras", []),
            extras.html(render_evidence(record)),
            *evidence.drain_as_extras(
                extras,
                remediation=mark.remediation if failing else "",
                reference=mark.reference,
                secrets=secrets,
            ),
        ]
    return report


def _withheld_lines(text: str, secrets: list[str]) -> str:
    return "\n".join(SECRET_MARK if any(secret in line for secret in secrets) else line for line in text.splitlines())


def _withhold_secrets(report: pytest.TestReport, secrets: list[str]) -> None:
    """pytest's own failure text and captured output, which HTML and JUnit carry, without a line holding a secret."""
    if not secrets:
        return
    if isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        path, line, reason = report.longrepr
        report.longrepr = (path, line, _withheld_lines(reason, secrets))
    elif report.longrepr is not None and any(secret in report.longreprtext for secret in secrets):
        report.longrepr = _withheld_lines(report.longreprtext, secrets)
    report.sections = [(title, _withheld_lines(content, secrets)) for title, content in report.sections]


def _console_safe_failure(report: pytest.TestReport) -> None:
    """pytest prints a failure's message in its own summary (whole, when CI is set): escape what the tenant wrote.

    A check's message quotes tenant text (display names, Graph and Exchange messages); control characters in
    it could forge or erase lines of a pipeline log. Newlines between traceback lines stay; within one
    line, and in the one-line crash message of the short summary, every control character is escaped.
    """
    longrepr = report.longrepr
    chain = getattr(longrepr, "chain", None)
    parts = [(tb, crash) for tb, crash, _ in chain] if chain else [(getattr(longrepr, "reprtraceback", None), None)]
    crashes = [crash for _, crash in parts] + [getattr(longrepr, "reprcrash", None)]
    for crash in crashes:
        if crash is not None and isinstance(getattr(crash, "message", None), str):
            crash.message = console_safe(crash.message)
    for traceback, _ in parts:
        for entry in getattr(traceback, "reprentries", None) or []:
            lines = getattr(entry, "lines", None)
            if isinstance(lines, list):
                entry.lines = [console_safe(line) for line in lines]


def _record(
    mark: RequirementMark,
    outcome: str,
    message: str,
    follows_from: str | None,
    evidence: Evidence,
    secrets: list[str],
) -> dict[str, Any]:
    """The requirement's record as the reports carry it: a plain dict, so it survives xdist serialisation."""
    return redacted_record(
        {
            "id": mark.id,
            "title": mark.title,
            "severity": mark.severity,
            "link": mark.link,
            "fix": mark.fix,
            "outcome": outcome,
            "message": message,
            "evidence": evidence.as_dict(),
            "follows_from": follows_from,
            "remediation": mark.remediation,
            "reference": mark.reference,
        },
        secrets,
    )
