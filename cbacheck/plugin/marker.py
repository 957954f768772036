"""The requirement marker: its signature, its validation against the catalogue, and the collection hook."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import pytest

from cbacheck import catalogue
from cbacheck.plugin.state import claimed_ids_key, requirement_key

MARKER = "requirement(id, *, severity, fix='manual'): the cbacheck requirement this check proves"
MARKER_SIGNATURE = "requirement(id, *, severity, fix='manual')"


@dataclass(frozen=True)
class RequirementMark:
    """A check's validated marker joined with its catalogue entry (or its docstring, for custom checks)."""

    id: str
    title: str
    severity: str
    fix: str
    link: int | None
    remediation: str
    reference: str


class MarkerError(Exception):
    """A requirement marker that cannot be accepted; its text becomes a collection error."""


def requirement(req_id: str, *, severity: str, fix: str = "manual") -> tuple[str, str, str]:
    """The marker's signature: its arguments are bound through this function, so a wrong call is a TypeError."""
    return req_id, severity, fix


def _docstring_title(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "obj", None), "__doc__", None) or ""
    lines = doc.strip().splitlines()
    return lines[0].strip() if lines else ""


def _same_title(docstring_title: str, catalogue_title: str) -> bool:
    return docstring_title.rstrip(".").strip() == catalogue_title.rstrip(".").strip()


def requirement_of(item: pytest.Item, claimed: dict[str, str]) -> RequirementMark:
    """Validate an item's requirement marker against the signature and the catalogue; MarkerError if wrong."""
    marker = item.get_closest_marker("requirement")
    assert marker is not None
    where = item.nodeid
    try:
        req_id, severity, fix = requirement(*marker.args, **marker.kwargs)
    except TypeError as err:
        raise MarkerError(f"{where}: the requirement marker must be {MARKER_SIGNATURE}: {err}") from None
    problems: list[str] = []
    if not isinstance(req_id, str) or not req_id.strip():
        raise MarkerError(f"{where}: requirement ID {req_id!r} must be a non-empty string like 'CBA-KEY-001'")
    if severity not in catalogue.SEVERITIES:
        problems.append(f"severity {severity!r} is not one of: {', '.join(catalogue.SEVERITIES)}")
    if fix not in catalogue.FIXES:
        problems.append(f"fix {fix!r} is not a known planner; known: {', '.join(catalogue.FIXES)}")
    title = _docstring_title(item)
    entry = catalogue.CATALOGUE.get(req_id)
    if entry is not None:
        if severity in catalogue.SEVERITIES and severity != entry.severity:
            problems.append(f"severity {severity!r} disagrees with the catalogue's {entry.severity!r} for {req_id}")
        if fix in catalogue.FIXES and fix != entry.fix:
            problems.append(f"fix {fix!r} disagrees with the catalogue's {entry.fix!r} for {req_id}")
        if not _same_title(title, entry.title):
            problems.append(
                f"docstring title {title!r} disagrees with the catalogue's {entry.title!r} for {req_id} "
                "(the first docstring line is the title shown in the report)"
            )
    elif not title:
        problems.append("the check has no docstring; its first line is the requirement's title in the report")
    # Parametrised instances of one check share its ID; two different checks may not.
    owner = item.nodeid.split("[", 1)[0]
    if claimed.get(req_id, owner) != owner:
        problems.append(f"requirement ID {req_id} is already used by {claimed[req_id]}; each ID belongs to one check")
    if problems:
        raise MarkerError(f"{where}: requirement({req_id!r}): " + "; ".join(problems))
    claimed[req_id] = owner
    return RequirementMark(
        id=req_id,
        title=entry.title if entry else title,
        severity=severity,
        fix=fix,
        link=entry.link if entry else None,
        remediation=entry.remediation if entry else "",
        reference=entry.reference if entry else "",
    )


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if not report.passed or not report.result:
        return report
    claimed = collector.config.stash.get(claimed_ids_key, {})
    problems: list[str] = []
    for node in report.result:
        if isinstance(node, pytest.Item) and node.get_closest_marker("requirement") is not None:
            try:
                node.stash[requirement_key] = requirement_of(node, claimed)
            except MarkerError as err:
                problems.append(str(err))
    if problems:
        # A collection error for the whole file: a check with a wrong marker must not run under a wrong ID.
        report.outcome = "failed"
        report.longrepr = "\n".join(problems)
        report.result = []
    return report
