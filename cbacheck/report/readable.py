"""What every reader-facing rendering (HTML, Markdown, SARIF, JUnit) reads from a results document, in one place.

The document grows fields over time (new outcomes, `change`, exceptions, profiles); these readers take what
is there and treat a missing field as absent, so older and newer documents render alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cbacheck import catalogue
from cbacheck.profiles import PROFILE_DEPENDENT

DEFAULT_PROFILE = "exchange-online"
# Outcomes that are findings: the requirement does not hold (accepted: it does not, and a reviewed exception
# says so); blocked: it could not hold because an upstream requirement failed.
FINDING_OUTCOMES = ("failed", "blocked", "accepted")
BROKEN_OUTCOMES = ("failed", "error", "blocked", "pending", "warning")
NOT_RUN_OUTCOMES = ("skipped", "not selected", "not_selected", "deselected")
VERDICT_EXPLANATIONS = {
    "pass": "every requirement that was configured passed",
    "fail": "at least one requirement failed",
    "incomplete": "nothing failed, but not everything could be verified or was evaluated",
}


def text(value: Any) -> str:
    """A value as one plain string ('' for None)."""
    return "" if value is None else str(value)


def one_line(value: Any) -> str:
    """A JSON value in the console's one-line form: `key=value, key=value`; lists joined by '; '."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={one_line(item)}" for key, item in value.items()) or "(empty)"
    if isinstance(value, Sequence):
        return "; ".join(one_line(item) for item in value) or "(none)"
    return json.dumps(value, default=str)


def lines_of(value: Any) -> list[str]:
    """A value as lines a reader scans: one line per list item (each in one-line form)."""
    if isinstance(value, Sequence) and not isinstance(value, str) and value:
        return [one_line(item) for item in value]
    return [one_line(value)]


def evidence_rows(record: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """(label, lines) for a requirement's evidence: what was observed, what was expected, details, sources."""
    evidence = record.get("evidence") or {}
    rows: list[tuple[str, list[str]]] = []
    rows += [(f"Observed: {label}", lines_of(value)) for label, value in (evidence.get("observed") or {}).items()]
    rows += [("Expected", [text(line)]) for line in evidence.get("expected") or []]
    rows += [(text(label), lines_of(value)) for label, value in (evidence.get("details") or {}).items()]
    rows += [
        ("Source", [f"{s.get('method', '')} {s.get('url', '')} -> {s.get('status', '')}".strip()])
        for s in evidence.get("sources") or []
        if isinstance(s, Mapping)
    ]
    return rows


def outcome_of(record: Mapping[str, Any]) -> str:
    return text(record.get("outcome")).replace("_", " ")


def profile_of(record: Mapping[str, Any]) -> str:
    key = record.get("key")
    if isinstance(key, Mapping) and key.get("profile"):
        return text(key["profile"])
    return text(record.get("profile")) or DEFAULT_PROFILE


def app_of(record: Mapping[str, Any], document: Mapping[str, Any]) -> str:
    key = record.get("key")
    if isinstance(key, Mapping) and key.get("app"):
        return text(key["app"])
    return text(record.get("app")) or subject(document)["app_id"] or "no-app"


def result_key(record: Mapping[str, Any], document: Mapping[str, Any]) -> tuple[str, str, str]:
    """(app, profile, requirement ID): what identifies a result across runs and reports."""
    return app_of(record, document), profile_of(record), text(record.get("id"))


def profiles(document: Mapping[str, Any]) -> list[str]:
    return sorted({profile_of(record) for record in document.get("requirements") or []}) or [DEFAULT_PROFILE]


# Between a requirement ID and its profile in a label: "CBA-PERM-002 · security-compliance".
PROFILE_SEPARATOR = " · "


def several_profiles(requirements: Sequence[Mapping[str, Any]]) -> bool:
    """Did the run check more than one profile (so a profile-dependent result needs its profile named)?"""
    return len({profile_of(record) for record in requirements}) > 1


def requirement_label(record: Mapping[str, Any], several: bool) -> str:
    """The ID, with the profile after it when several profiles were checked and the result depends on one;
    a result reported once (the certificate, the app registration, ...) and a one-profile run show the ID alone."""
    req_id = text(record.get("id"))
    return f"{req_id}{PROFILE_SEPARATOR}{profile_of(record)}" if several and req_id in PROFILE_DEPENDENT else req_id


def _slot(req_id: str, profile: str) -> tuple[str, str]:
    """Where a result sits: a profile-dependent one per profile, the others once."""
    return (profile if req_id in PROFILE_DEPENDENT else "", req_id)


def _setting(document: Mapping[str, Any], name: str) -> Any:
    entry = (document.get("run") or {}).get("settings", {}).get(name)
    return entry.get("value") if isinstance(entry, Mapping) else None


def subject(document: Mapping[str, Any]) -> dict[str, str]:
    """The tenant and app by name and id (names from the tenant facts, ids from them or the settings)."""
    tenant = document.get("tenant") or {}
    return {
        "tenant_name": text(tenant.get("display_name")),
        "initial_domain": text(tenant.get("initial_domain")),
        "tenant_id": text(tenant.get("tenant") or _setting(document, "tenant")),
        "app_name": text(tenant.get("app_display_name")),
        "app_id": text(tenant.get("app_id") or _setting(document, "app_id")),
        "config_file": config_file(document),
    }


def config_file(document: Mapping[str, Any]) -> str:
    """The config file a setting came from ('file PATH' sources), '' when none did."""
    for entry in ((document.get("run") or {}).get("settings") or {}).values():
        source = text(entry.get("source")) if isinstance(entry, Mapping) else ""
        if source.startswith("file ") and not source.startswith("file named by"):
            return source.removeprefix("file ").split(" [")[0]
    return ""


def links_run(document: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(links that ran, links that did not), as '3 Certificate uploaded'; a link ran when one check of it did."""
    ran: set[int] = set()
    present: set[int] = set()
    for record in document.get("requirements") or []:
        link = record.get("link")
        if not isinstance(link, int):
            continue
        present.add(link)
        if outcome_of(record) not in NOT_RUN_OUTCOMES:
            ran.add(link)
    names = catalogue.LINKS
    return (
        [f"{link} {names.get(link, '')}".strip() for link in sorted(ran)],
        [f"{link} {names.get(link, '')}".strip() for link in sorted(set(names) - ran)],
    )


def link_name(link: Any) -> str:
    return f"Link {link} {catalogue.LINKS[link]}" if link in catalogue.LINKS else "Custom checks"


def root_causes(requirements: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], list[str]]]:
    """(root record, labels of the results following from it) for each broken result that follows from no other
    broken one; a profile-dependent result follows an upstream of its own profile or one reported once."""
    broken = [r for r in requirements if outcome_of(r) in BROKEN_OUTCOMES]
    several = several_profiles(requirements)
    by_slot = {_slot(text(r.get("id")), profile_of(r)): r for r in broken}

    def root_of(record: Mapping[str, Any]) -> tuple[str, str]:
        here = _slot(text(record.get("id")), profile_of(record))
        seen: set[tuple[str, str]] = set()
        while here not in seen:
            seen.add(here)
            upstream = _slot(text(record.get("follows_from")), profile_of(record))
            if upstream not in by_slot:
                break
            record, here = by_slot[upstream], upstream
        return here

    roots = [r for r in broken if root_of(r) == _slot(text(r.get("id")), profile_of(r))]
    return [
        (
            root,
            [
                requirement_label(r, several)
                for r in broken
                if r is not root and root_of(r) == _slot(text(root.get("id")), profile_of(root))
            ],
        )
        for root in roots
    ]


def exception_of(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    found = record.get("exception")
    return found if isinstance(found, Mapping) else None


def accepted(requirements: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in requirements if outcome_of(r) == "accepted" or exception_of(r) is not None]


def changes(requirements: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Results whose `change` is anything but `same` (empty when the run compared with nothing)."""
    return [r for r in requirements if r.get("change") and r.get("change") != "same"]


def change_text(record: Mapping[str, Any]) -> str:
    """'broken (was passed)', or '' when the result did not change or nothing was compared."""
    change = text(record.get("change"))
    if not change or change == "same":
        return ""
    previous = record.get("previous_outcome") or record.get("previous")
    return f"{change} (was {previous})" if previous else change


def severity_rows(document: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, list[int]]]]:
    """(outcome columns, [(severity, counts)]) for the outcomes and severities that occur, catalogue order first."""
    requirements = document.get("requirements") or []
    seen = list(dict.fromkeys(outcome_of(r) for r in requirements))
    order = ["failed", "blocked", "error", "pending", "warning", "accepted", "passed", "skipped", "not selected"]
    columns = [o for o in order if o in seen] + [o for o in seen if o not in order]
    severities = list(catalogue.SEVERITIES) + sorted(
        {text(r.get("severity")) for r in requirements} - set(catalogue.SEVERITIES)
    )
    rows = []
    for severity in severities:
        counts = [
            sum(1 for r in requirements if text(r.get("severity")) == severity and outcome_of(r) == column)
            for column in columns
        ]
        if any(counts):
            rows.append((severity, counts))
    return columns, rows


def plan_request_line(action: Mapping[str, Any]) -> str:
    """A planned action's request in the console's form: `PATCH /applications/...` or `manual: step`."""
    request = action.get("request") or {}
    if not isinstance(request, Mapping):
        return one_line(request)
    if request.get("method") == "MANUAL":
        return f"manual: {text(request.get('step'))}"
    line = f"{text(request.get('method'))} {text(request.get('path'))}".strip()
    body = request.get("body")
    return f"{line} with {one_line(body)}" if body else line
