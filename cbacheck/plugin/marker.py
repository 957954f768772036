"""The requirement marker: its signature, its validation against the catalogue, and the collection hook."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import pytest

from cbacheck import catalogue
from cbacheck.plugin.state import claimed_ids_key, requirement_key

MARKER_SIGNATURE = "requirement(id, *, severity, fix='manual')"
MARKER = (
    f"{MARKER_SIGNATURE}: the cbacheck requirement this check proves; a catalogue ID needs no more, "
    "its severity, fix and title come from the catalogue"
)


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


def requirement(
    req_id: str, *, severity: str | None = None, fix: str | None = None
) -> tuple[str, str | None, str | None]:
    """The marker's signature: its arguments are bound through this function, so a wrong call is a TypeError."""
    return req_id, severity, fix


def _docstring_title(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "obj", None), "__doc__", None) or ""
    lines = doc.strip().splitlines()
    return lines[0].strip() if lines else ""


def _same_title(docstring_title: str, catalogue_title: str) -> bool:
    return docstring_title.rstrip(".").strip() == catalogue_title.rstrip(".").strip()


def _catalogue_problems(entry: catalogue.Requirement, severity: str | None, fix: str | None, title: str) -> list[str]:
    """A catalogue check may repeat its severity, fix and title, but only as the catalogue has them."""
    problems: list[str] = []
    if severity is not None and severity != entry.severity:
        problems.append(f"severity {severity!r} disagrees with the catalogue's {entry.severity!r} for {entry.id}")
    if fix is not None and fix != entry.fix:
        problems.append(f"fix {fix!r} disagrees with the catalogue's {entry.fix!r} for {entry.id}")
    if title and not _same_title(title, entry.title):
        problems.append(
            f"docstring title {title!r} disagrees with the catalogue's {entry.title!r} for {entry.id} "
            "(the catalogue's title is the one shown in the report)"
        )
    return problems


def _custom_problems(severity: str | None, fix: str, title: str) -> list[str]:
    """A custom check names its own severity and fix, and its docstring gives the title."""
    problems: list[str] = []
    if severity is None:
        problems.append(
            f"a check outside the catalogue must give severity= (one of: {', '.join(catalogue.SEVERITIES)})"
        )
    elif severity not in catalogue.SEVERITIES:
        problems.append(f"severity {severity!r} is not one of: {', '.join(catalogue.SEVERITIES)}")
    if fix not in catalogue.FIXES:
        problems.append(f"fix {fix!r} is not a known planner; known: {', '.join(catalogue.FIXES)}")
    if not title:
        problems.append("the check has no docstring; its first line is the requirement's title in the report")
    return problems


def requirement_of(item: pytest.Item, claimed: dict[str, str]) -> RequirementMark:
    """Validate an item's requirement marker against the signature and the catalogue; MarkerError if wrong."""
    marker = item.get_closest_marker("requirement")
    assert marker is not None
    where = item.nodeid
    try:
        req_id, severity, fix = requirement(*marker.args, **marker.kwargs)
    except TypeError as err:
        raise MarkerError(f"{where}: the requirement marker must be {MARKER_SIGNATURE}: {err}") from None
    if not isinstance(req_id, str) or not req_id.strip():
        raise MarkerError(f"{where}: requirement ID {req_id!r} must be a non-empty string like 'CBA-KEY-001'")
    title = _docstring_title(item)
    entry = catalogue.CATALOGUE.get(req_id)
    if entry is not None:
        problems = _catalogue_problems(entry, severity, fix, title)
    else:
        problems = _custom_problems(severity, fix or "manual", title)
    # Parametrised instances of one check share its ID; two different checks may not.
    owner = item.nodeid.split("[", 1)[0]
    if claimed.get(req_id, owner) != owner:
        problems.append(f"requirement ID {req_id} is already used by {claimed[req_id]}; each ID belongs to one check")
    if problems:
        raise MarkerError(f"{where}: requirement({req_id!r}): " + "; ".join(problems))
    claimed[req_id] = owner
    if entry is not None:
        return RequirementMark(
            req_id, entry.title, entry.severity, entry.fix, entry.link, entry.remediation, entry.reference
        )
    return RequirementMark(req_id, title, str(severity), fix or "manual", None, "", "")


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
                # The requirement ID is a keyword, so `-k CBA-APP-005` selects the check that proves it.
                node.extra_keyword_matches.add(node.stash[requirement_key].id)
            except MarkerError as err:
                problems.append(str(err))
    if problems:
        # A collection error for the whole file: a check with a wrong marker must not run under a wrong ID.
        report.outcome = "failed"
        report.longrepr = "\n".join(problems)
        report.result = []
    return report
