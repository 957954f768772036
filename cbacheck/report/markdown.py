"""The Markdown summary for a CI job page or a pull-request comment: verdict, causes, severities, risks, changes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from cbacheck.report import readable
from cbacheck.report.console import console_safe

# Characters that Markdown (GitHub's flavour included) gives a meaning: emphasis, links, tables, headings,
# HTML, mentions. A backslash makes each literal; <, > and & become entities so no tag or entity survives.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]#|~])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "@": "&#64;"}


def md(value: Any) -> str:
    """Text from outside cbacheck (tenant names, messages, reasons) made inert in Markdown, on one line."""
    plain = console_safe(readable.text(value))  # no line break, control or bidi character survives
    plain = _MARKDOWN_SPECIAL.sub(r"\\\1", plain)
    return "".join(_ENTITIES.get(char, char) for char in plain)  # after the backslashes: entities stay whole


def _table(headings: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _subject_line(document: Mapping[str, Any]) -> str:
    who = readable.subject(document)
    run = document.get("run") or {}
    tenant = who["tenant_name"] or who["initial_domain"] or who["tenant_id"] or "(no tenant)"
    tenant_ids = ", ".join(md(part) for part in (who["initial_domain"], who["tenant_id"]) if part and part != tenant)
    app = who["app_name"] or who["app_id"] or "(no app)"
    parts = [
        f"**Tenant** {md(tenant)}" + (f" ({tenant_ids})" if tenant_ids else ""),
        f"**App** {md(app)}" + (f" ({md(who['app_id'])})" if who["app_name"] and who["app_id"] else ""),
        _profile_part(document),
        f"**Run** `{md(run.get('run_id'))}`",
        f"{md(run.get('started'))}",
        f"cbacheck {md((document.get('tool') or {}).get('version'))}",
    ]
    return " · ".join(parts)


def _profile_part(document: Mapping[str, Any]) -> str:
    """One profile: a discreet "Profile x"; several: "Profiles checked x, y" (each result then names its own)."""
    checked = readable.profiles(document)
    return f"**{'Profiles checked' if len(checked) > 1 else 'Profile'}** {md(', '.join(checked))}"


def _causes(requirements: Sequence[Mapping[str, Any]]) -> list[str]:
    causes = readable.root_causes(requirements)
    if not causes:
        return []
    several = readable.several_profiles(requirements)
    lines = ["", "### Root causes", ""]
    for root, followers in causes:
        lines.append(
            f"- **{md(readable.requirement_label(root, several))}** ({md(root.get('severity'))}) "
            f"{md(readable.outcome_of(root))}: "
            f"{md(root.get('message'))}"
        )
        if followers:
            lines.append(f"  - following from it: {md(', '.join(followers))}")
    return lines


def _severity(document: Mapping[str, Any]) -> list[str]:
    columns, rows = readable.severity_rows(document)
    if not rows:
        return []
    body = [[md(severity), *(str(n) if n else "" for n in counts)] for severity, counts in rows]
    return ["", "### Results by severity", "", *_table(["severity", *map(md, columns)], body)]


def _accepted(requirements: Sequence[Mapping[str, Any]]) -> list[str]:
    accepted = readable.accepted(requirements)
    if not accepted:
        return []
    several = readable.several_profiles(requirements)
    rows = []
    for record in accepted:
        exception = readable.exception_of(record) or {}
        rows.append(
            [md(readable.requirement_label(record, several)), md(record.get("title"))]
            + [md(exception.get(n)) for n in ("reason", "approver", "expires")]
        )
    return ["", "### Accepted risks", "", *_table(["requirement", "title", "reason", "approver", "expires"], rows)]


def _changes(requirements: Sequence[Mapping[str, Any]]) -> list[str]:
    changed = readable.changes(requirements)
    if not changed:
        return []
    several = readable.several_profiles(requirements)
    rows = [
        [md(readable.requirement_label(r, several)), md(r.get("title")), md(readable.change_text(r))]
        + [md(readable.outcome_of(r))]
        for r in changed
    ]
    return ["", "### Changes since the compared run", "", *_table(["requirement", "title", "change", "now"], rows)]


def summary_markdown(document: Mapping[str, Any], reports: Mapping[str, str] | None = None) -> str:
    """The summary; `reports` maps a label (HTML, JSON, ...) to the path or URL a reader can open."""
    run = document.get("run") or {}
    requirements = document.get("requirements") or []
    verdict = readable.text(run.get("verdict"))
    lines = [
        f"## cbacheck: {md(verdict.upper())} — {md(readable.VERDICT_EXPLANATIONS.get(verdict, ''))}",
        "",
        _subject_line(document),
    ]
    if run.get("sandbox"):
        lines += ["", "**SANDBOX**: this run checked cbacheck's local sandbox tenant, not a real tenant."]
    ran, not_ran = readable.links_run(document)
    lines += [
        "",
        f"Links run: {md(', '.join(ran) or 'none')}" + (f"; not run: {md(', '.join(not_ran))}" if not_ran else ""),
    ]
    lines += _causes(requirements) + _severity(document) + _accepted(requirements) + _changes(requirements)
    if reports:
        lines += ["", "### Reports", ""]
        lines += [f"- {md(label)}: `{readable.text(path).replace('`', '')}`" for label, path in reports.items()]
    return "\n".join(lines) + "\n"
