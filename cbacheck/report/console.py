"""The console rendering of a run: provenance line, verdict, causes, skips, fix plan and report paths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cbacheck.config import Settings, setting_fields
from cbacheck.report import readable
from cbacheck.report.compare import change_lines
from cbacheck.report.document import describe_first_broken, describe_not_evaluated
from cbacheck.report.gate import root_causes

# Characters that move the cursor, end or rewrite a line, or reorder text in a terminal or a CI log viewer:
# C0 (CR, LF, ESC...), DEL, C1 (NEL, CSI...), the Unicode line and paragraph separators, bidi controls;
# and lone surrogates, which cannot be written to a UTF-8 console at all.
_UNSAFE = {
    *range(0x00, 0x20),
    0x7F,
    *range(0x80, 0xA0),
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    *range(0xD800, 0xE000),  # lone surrogates: bytes of a file name that is not UTF-8
}
_ESCAPES = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_CONSOLE_SAFE = {code: _ESCAPES.get(code, f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _UNSAFE}

# Always shown in the provenance line; every other setting only when it is not the default.
HEADLINE_SETTINGS = ("tenant", "app_id", "cert", "cloud", "fix")
SANDBOX_LINE = "SANDBOX run: the tenant is cbacheck's local sandbox, not a real tenant"


def console_safe(text: str) -> str:
    """The text with every control character shown as an escape, so no value can forge or erase a console line."""
    return text.translate(_CONSOLE_SAFE)


def shown_settings(settings: Settings) -> list[tuple[str, str]]:
    """(name, 'value (from source)') for the headline settings and every one not at its default; no secrets."""
    described = settings.describe()
    shown = []
    for spec in setting_fields():
        source = settings.source(spec.name)
        if spec.name not in HEADLINE_SETTINGS and source == "default":
            continue
        value = described[spec.name]["value"]
        if value is None or value == []:
            text = "(not set)"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list):
            text = ", ".join(map(str, value))
        else:
            text = str(value)
        shown.append((spec.name, f"{text} ({'default' if source == 'default' else 'from ' + source})"))
    return shown


# The settings a reader of a console needs to know which subject was checked and how; the rest with -v.
SHORT_SETTINGS = ("tenant", "app_id", "cert", "auditor_credential", "auditor_app_id", "fix")


def provenance_line(settings: Settings, *, verbose: bool = True) -> str:
    """`cbacheck: tenant=contoso.onmicrosoft.com (from env CBACHECK_TENANT), fix=plan (default)`.

    Not verbose: only the subject, the auditor and the fix mode, and how many more settings the report shows.
    """
    shown = shown_settings(settings)
    kept = shown if verbose else [(name, text) for name, text in shown if name in SHORT_SETTINGS]
    line = "cbacheck: " + ", ".join(f"{name}={text}" for name, text in kept)
    if len(kept) < len(shown):
        line += f" (+{len(shown) - len(kept)} more settings: -v, or Run details in the report)"
    return console_safe(line)


def header_lines(settings: Settings, *, verbose: bool = True) -> list[str]:
    """Where the settings came from, and a loud line when an endpoint or the CA bundle was overridden."""
    lines = [provenance_line(settings, verbose=verbose)]
    overrides = settings.endpoint_overrides()
    if overrides:
        lines.append(console_safe(f"cbacheck: {overrides}"))
    return lines


def summary_lines(
    document: Mapping[str, Any],
    settings: Settings | None,
    reports: Mapping[str, Path | None],
    *,
    verbose: bool = False,
) -> list[str]:
    """The closing summary of `cbacheck run` and of plain pytest alike: causes, skips, plan, reports, verdict.

    With `settings`, the provenance line leads (`cbacheck run` runs pytest quietly, without its header); the
    verdict and the exit code come last, where a pipeline log is read first.
    """
    run = document["run"]
    counts = ", ".join(f"{n} {outcome}" for outcome, n in document["summary"]["counts"].items() if n)
    roots = len(document["summary"]["root_causes"])
    if roots:
        counts = f"{roots} root cause{'s' if roots > 1 else ''}; {counts}"
    lines: list[str] = []
    if run["sandbox"]:
        lines.append(SANDBOX_LINE)
    if settings is not None:
        lines += header_lines(settings, verbose=verbose)
    lines += change_lines(document)  # what changed since the earlier run comes first
    lines += cause_lines(document["requirements"])
    lines += risk_lines(document)
    lines += skip_lines(document["requirements"])
    lines += plan_lines(document["fixes"], document["requirements"])
    shown = [(label, path) for label, path in reports.items() if path is not None]
    if shown:
        lines.append("reports:")
        lines += [f"  {label:<5} {path}" for label, path in shown]
    not_evaluated = describe_not_evaluated(run)
    if not_evaluated:
        lines.append(not_evaluated)
    if document["summary"]["first_broken"] is not None:
        lines.append(f"first broken: {describe_first_broken(document['summary']['first_broken'])}")
    lines.append(f"cbacheck verdict: {run['headline']} ({counts or 'no requirements ran'})")
    lines.append(f"exit code {run['exit_code']}: {run['exit_reason']}")
    # Messages, names and reasons come from the tenant and from exceptions: escaped, one value cannot make two lines.
    return [console_safe(line) for line in lines]


def by_profile_label(records: Sequence[Mapping[str, Any]], first_profile: str) -> list[dict[str, Any]]:
    """Copies whose "id" names another profile's result "ID [profile]", and whose follows_from names the
    upstream of the same profile, so results of several profiles are told apart (one profile: unchanged)."""

    def label(req_id: str, profile: str) -> str:
        return req_id if profile == first_profile else f"{req_id} [{profile}]"

    labels = {label(str(r["id"]), readable.profile_of(r)) for r in records}
    out = []
    for record in records:
        profile = readable.profile_of(record)
        upstream = record.get("follows_from")
        if upstream and label(str(upstream), profile) in labels:
            upstream = label(str(upstream), profile)
        out.append({**record, "id": label(str(record["id"]), profile), "follows_from": upstream})
    return out


def cause_lines(requirements: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per root cause; what follows from it (directly or not) is listed under it by ID.

    A reviewer sees the causes, not one reason repeated (the reports keep every message in full).
    """
    broken = by_profile_label(
        [r for r in requirements if r["outcome"] in ("failed", "blocked", "error", "pending")],
        readable.profile_of(requirements[0]) if requirements else "",
    )
    by_id = {r["id"]: r for r in broken}

    def root_of(record: Mapping[str, Any]) -> str:
        seen: set[str] = set()
        while record["follows_from"] in by_id and record["id"] not in seen:
            seen.add(record["id"])
            record = by_id[record["follows_from"]]
        return str(record["id"])

    # The most severe independent failure first, as in the headline.
    order = {record["id"]: n for n, record in enumerate(root_causes(broken))}
    roots = sorted((r for r in broken if root_of(r) == r["id"]), key=lambda r: order.get(r["id"], len(order)))
    if not roots:
        return []
    lines = ["failed or not verified:"]
    shown: set[str] = set()
    for record in roots:
        if record["id"] in shown:
            continue
        # Checks that could not be verified for one shared reason (say, a missing permission) are one line.
        same = [r for r in roots if r["message"] == record["message"] and r["outcome"] == record["outcome"]]
        shown.update(r["id"] for r in same)
        ids = ", ".join(f"{r['id']} ({r['severity']})" for r in same)
        lines.append(f"  {ids} {record['outcome']}: {record['message']}")
        followers = [r["id"] for r in broken if r["id"] not in shown and root_of(r) in {x["id"] for x in same}]
        if followers:
            lines.append(f"      and, following from it: {', '.join(followers)}")
    return lines


def risk_lines(document: Mapping[str, Any]) -> list[str]:
    """Accepted risks (with their exception) and warnings below --fail-on: passed the gate, still shown."""
    lines = []
    exceptions = document["run"].get("exceptions")
    if exceptions:
        lines.append(f"exceptions: {exceptions['path']} (sha256 {exceptions['sha256']}, from {exceptions['source']})")
    for record in document["requirements"]:
        if record["outcome"] == "accepted" and record.get("exception"):
            entry = record["exception"]
            lines.append(
                f"  {record['id']} ({record['severity']}) accepted until {entry['expires']}: {entry['reason']} "
                f"(approved by {entry['approver']}); finding: {record['message']}"
            )
        elif record["outcome"] == "failed" and (record.get("exception") or {}).get("state") == "expired":
            lines.append(
                f"  {record['id']} ({record['severity']}) exception expired on {record['exception']['expires']}"
            )
    warnings = [r for r in document["requirements"] if r["outcome"] == "warning"]
    if warnings:
        fail_on = document["run"]["gate"]["fail_on"]
        lines.append(f"warnings (below --fail-on {fail_on}):")
        lines += [f"  {r['id']} ({r['severity']}): {r['message']}" for r in warnings]
    return lines


def skip_lines(requirements: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per skip reason with how many requirements it skipped (or left out as not selected)."""
    skipped: dict[str, int] = {}
    for record in requirements:
        if record["outcome"] in ("skipped", "not selected"):
            skipped[record["message"]] = skipped.get(record["message"], 0) + 1
    return [f"skipped: {number} ({reason})" for reason, number in skipped.items()]


def plan_lines(fixes: Mapping[str, Any], requirements: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The planned fix actions: what each changes, why, and the permission it needs (shown on every run).

    Accepted requirements get no fix; the plan names them as accepted.
    """
    plan = fixes["plan"]
    accepted = [r["id"] for r in requirements if r["outcome"] == "accepted"]
    lines = [f"no fix planned for accepted risks: {', '.join(accepted)}"] if accepted else []
    if not plan:
        return lines
    automated = sum(1 for action in plan if action.get("automated"))
    lines += [
        f"fix plan: {len(plan)} action(s), {automated} automated (fix mode: {fixes['mode']}; "
        "`--fix apply` applies the automated ones)"
    ]
    for action in plan:
        request = action.get("request") or {}
        if request.get("method") == "MANUAL":
            what = f"manual: {request.get('step', '')}"
        else:
            what = f"{request.get('method', '')} {request.get('path', '')}".strip()
        mends = ", ".join(action.get("mends", []))
        lines.append(f"  {action['id']}: {what} [{mends}]")
        lines.append(f"      why: {action['reason']}")
        if action.get("permission"):
            lines.append(f"      needs: {action['permission']}")
    return lines
