"""The HTML report: verdict and subject first, requirement rows, readable evidence and fix plan, inside pytest-html."""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

import pytest

from cbacheck import catalogue
from cbacheck.config import Settings
from cbacheck.report import readable
from cbacheck.report.document import describe_first_broken, describe_not_evaluated, mark_pending

# Every cbacheck element is styled from here (classes, no style= attributes); the block leads the summary.
# pytest-html's page is re-ordered with CSS only: the body becomes a flex column, the wrappers around
# cbacheck's blocks dissolve (display: contents), and each block gets its place: verdict and subject first,
# the rows next, run details (Python, platform, plugins, every setting) last. Its chrome (run count,
# filters, "expected failures / reruns", the test-id column) is hidden.
STYLESHEET = """
body { display: flex; flex-direction: column; color: #222; }
body > * { min-width: 0; max-width: 100%; }
#results-table, .additional-summary, .additional-summary td { color: #222; }
#results-table { table-layout: fixed; }
#results-table td, .cba-plan td, .cba-evidence-table td { overflow-wrap: anywhere; }
th[data-column-type=result] { width: 8em; }
th[data-column-type=requirement] { width: 10em; }
th[data-column-type=title] { width: 24%; }
th[data-column-type=severity] { width: 6em; }
.cba-plan td:first-child, .cba-plan td:nth-child(2), .col-requirement { white-space: nowrap;
  overflow-wrap: normal; }
.summary, .summary__data { display: contents; }
#title, .summary__data > h2, .run-count, p.filter, .controls, .summary__spacer, .summary__reload,
body > p:first-of-type { display: none; }
.additional-summary.prefix { order: 1; }
.additional-summary.summary { order: 2; }
#results-table { order: 3; }
.additional-summary.postfix { order: 4; }
#environment-header { order: 5; }
#environment { order: 6; }
footer { order: 7; }
.cba-sandbox { background: #6a1b9a; color: #fff; padding: 6px 14px; font-size: 1.1em; font-weight: bold;
  letter-spacing: .08em; }
.cba-overridden { font-weight: bold; color: #b00020; }
.cba-verdict { font-size: 2.2em; margin: .3em 0 .2em 0; }
.cba-verdict-pass { color: #1b7f3b; }
.cba-verdict-fail { color: #b00020; }
.cba-verdict-incomplete { color: #b26a00; }
.cba-subject { border-collapse: collapse; margin: .3em 0 .6em 0; }
.cba-subject th { text-align: left; padding: 1px 14px 1px 0; font-weight: 600; vertical-align: top; }
.cba-subject td { padding: 1px 0; }
.cba-first-broken { font-size: 1.1em; }
.cba-not-evaluated { color: #b26a00; font-size: 1.1em; }
.cba-counts, .cba-plan, .cba-applied, .cba-evidence-table, .cba-settings, .cba-changes, .cba-accepted {
  border-collapse: collapse; margin: .5em 0; }
.cba-counts th, .cba-counts td, .cba-plan th, .cba-applied th, .cba-changes th, .cba-accepted th {
  padding: 2px 10px; text-align: left; }
.cba-counts td { text-align: center; }
.cba-settings th { padding: 1px 10px 1px 0; text-align: left; }
.cba-plan td, .cba-applied td, .cba-changes td, .cba-accepted td { vertical-align: top; padding: 2px 8px;
  border-top: 1px solid #ddd; }
.cba-lines { margin: 0; padding: 0; list-style: none; }
.cba-evidence { padding: 6px 4px; line-height: 1.4; }
.cba-message { white-space: pre-wrap; }
.cba-evidence-table th { text-align: left; vertical-align: top; padding: 2px 12px 2px 0; font-weight: 600; }
.cba-evidence-table td { padding: 2px 0; }
.col-finding { white-space: normal; max-width: 60em; }
.col-result { width: auto; }
@media print {
  .extras-row, .extras-row.hidden, #environment, #environment-header { display: table-row !important; }
  #environment { display: table !important; }
  #environment-header { display: block !important; }
  .logwrapper, .media, .col-result:hover::after { display: none !important; }
  details > * { display: block !important; }
  .collapsible td { cursor: auto; }
}
"""

# Kept for readers of the old name.
EXPLANATIONS = readable.VERDICT_EXPLANATIONS


def _lines(lines: Sequence[str]) -> str:
    if len(lines) == 1:
        return escape(lines[0])
    return '<ul class="cba-lines">' + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"


def render_evidence(record: Mapping[str, Any]) -> str:
    """The evidence block shown in a report row, as a readable table; every value is escaped."""
    outcome = readable.outcome_of(record)
    parts = ['<div class="cba-evidence">']
    parts.append(
        f"<p><strong>{escape(readable.text(record.get('id')))}</strong> {escape(readable.text(record.get('title')))} "
        f"&mdash; <strong>{escape(outcome)}</strong></p>"
    )
    if record.get("message"):
        parts.append(f'<p class="cba-message">{escape(readable.text(record["message"]))}</p>')
    if record.get("follows_from"):
        parts.append(f"<p>Follows from <strong>{escape(readable.text(record['follows_from']))}</strong>.</p>")
    exception = readable.exception_of(record)
    if exception is not None:
        parts.append(f"<p><strong>Accepted risk:</strong> {escape(readable.one_line(exception))}</p>")
    rows = readable.evidence_rows(record)
    if rows:
        parts.append('<table class="cba-evidence-table">')
        parts += [f"<tr><th>{escape(label)}</th><td>{_lines(lines)}</td></tr>" for label, lines in rows]
        parts.append("</table>")
    if record.get("remediation") and outcome in ("failed", "blocked", "warning"):
        parts.append(f"<p><strong>What to do:</strong> {escape(readable.text(record['remediation']))}</p>")
    if record.get("reference"):
        ref = escape(readable.text(record["reference"]), quote=True)
        parts.append(f'<p><strong>Reference:</strong> <a href="{ref}" target="_blank" rel="noopener">{ref}</a></p>')
    parts.append("</div>")
    return "".join(parts)


def _counts_table(document: Mapping[str, Any]) -> str:
    columns, rows = readable.severity_rows(document)
    if not columns:
        return ""
    header = "".join(f"<th>{escape(name)}</th>" for name in columns)
    body = [
        f"<tr><th>{escape(severity)}</th>" + "".join(f"<td>{n or ''}</td>" for n in counts) + "</tr>"
        for severity, counts in rows
    ]
    totals = [sum(counts[i] for _, counts in rows) for i in range(len(columns))]
    body.append("<tr><th>all</th>" + "".join(f"<td><strong>{n}</strong></td>" for n in totals) + "</tr>")
    return f'<table class="cba-counts"><tr><th></th>{header}</tr>{"".join(body)}</table>'


def _named(name: str, ident: str) -> str:
    if name and ident:
        return f"{name} ({ident})"
    return name or ident or "(not configured)"


def _profile_row(document: Mapping[str, Any]) -> tuple[str, str]:
    """One profile: a discreet "Profile" row; several: "Profiles checked" (each result then names its own)."""
    checked = readable.profiles(document)
    return ("Profiles checked" if len(checked) > 1 else "Profile", ", ".join(checked))


def subject_rows(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The header rows: who and what was checked, the scope, when, with which version, by whom, which run."""
    run = document.get("run") or {}
    who = readable.subject(document)
    tenant_name = who["tenant_name"] + (f" ({who['initial_domain']})" if who["initial_domain"] else "")
    ran, not_ran = readable.links_run(document)
    scope = ", ".join(ran) or "no link ran"
    if not_ran:
        scope += f"; not run: {', '.join(not_ran)}"
    operator = run.get("operator") or {}
    by = readable.text(operator.get("ci_run_url")) or "@".join(
        part for part in (readable.text(operator.get("user")), readable.text(operator.get("host"))) if part
    )
    related = run.get("related") or {}
    rows = [
        ("Tenant", _named(tenant_name.strip(), who["tenant_id"])),
        ("App", _named(who["app_name"], who["app_id"])),
        _profile_row(document),
        ("Scope", scope),
        ("Time (UTC)", f"{readable.text(run.get('started'))} to {readable.text(run.get('finished'))}"),
        ("cbacheck", readable.text((document.get("tool") or {}).get("version"))),
        ("Run id", readable.text(run.get("run_id"))),
        ("Operator", by or "(unknown)"),
    ]
    if related.get("before"):
        rows.append(("Re-check after the fixes of run", readable.text(related["before"])))
    if related.get("after"):
        rows.append(("Its re-check after fixes (if applied)", readable.text(related["after"])))
    return rows


def summary_html(document: Mapping[str, Any], settings: Settings) -> list[str]:
    """The report's opening: verdict, subject, scope, what changed, counts, accepted risks, fixes. All escaped."""
    run = document["run"]
    verdict = readable.text(run.get("verdict"))
    parts = [f"<style>{STYLESHEET}</style>"]
    parts.append(
        f'<h1 class="cba-verdict"><strong class="cba-verdict-{escape(verdict, quote=True)}">'
        f"{escape(verdict.upper())}</strong> &mdash; {escape(EXPLANATIONS.get(verdict, ''))}</h1>"
    )
    headline, reason = readable.text(run.get("headline")), readable.text(run.get("exit_reason"))
    if headline or reason:
        # The gate's own words: which failure leads, and why the run exits as it does (docs/reports.md).
        exit_text = f"exit code {escape(readable.text(run.get('exit_code')))}: {escape(reason)}" if reason else ""
        parts.append(f'<p class="cba-headline"><strong>{escape(headline)}</strong><br>{exit_text}</p>')
    if run.get("sandbox"):
        parts.append(
            '<div class="cba-sandbox">SANDBOX &mdash; this run checked cbacheck\'s local sandbox tenant, '
            "not a real tenant</div>"
        )
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in subject_rows(document))
    parts.append(f'<table class="cba-subject">{rows}</table>')
    if settings.endpoint_overrides():
        parts.append(f'<p class="cba-overridden">{escape(settings.endpoint_overrides() or "")}</p>')
    not_evaluated = describe_not_evaluated(run)
    if not_evaluated:
        parts.append(f'<p class="cba-not-evaluated"><strong>{escape(not_evaluated)}</strong></p>')
    broken = (document.get("summary") or {}).get("first_broken")
    parts.append(
        f'<p class="cba-first-broken"><strong>First broken link:</strong> {escape(describe_first_broken(broken))}</p>'
    )
    parts.extend(changes_html(document))
    parts.append(_counts_table(document))
    parts.extend(accepted_html(document))
    fixes = document.get("fixes") or {"plan": [], "applied": []}
    parts.append(
        f"<p><strong>Fix actions planned:</strong> {len(fixes.get('plan') or [])} "
        f"(fix mode: {escape(readable.text(fixes.get('mode') or settings.fix))})</p>"
    )
    parts.extend(fixes_html(fixes))
    return parts


def changes_html(document: Mapping[str, Any]) -> list[str]:
    requirements = document.get("requirements") or []
    changed = readable.changes(requirements)
    if not changed:
        return []
    several = readable.several_profiles(requirements)
    rows = [
        (readable.requirement_label(r, several), readable.text(r.get("title")), readable.change_text(r))
        + (readable.outcome_of(r),)
        for r in changed
    ]
    return [
        "<h2>Changed since the compared run</h2>",
        _table("cba-changes", ("requirement", "title", "change", "now"), rows),
    ]


def accepted_html(document: Mapping[str, Any]) -> list[str]:
    requirements = document.get("requirements") or []
    accepted = readable.accepted(requirements)
    if not accepted:
        return []
    several = readable.several_profiles(requirements)
    rows = []
    for record in accepted:
        exception = readable.exception_of(record) or {}
        rows.append(
            (
                readable.requirement_label(record, several),
                readable.text(record.get("title")),
                readable.text(exception.get("reason")),
                readable.text(exception.get("approver")),
                readable.text(exception.get("expires")),
            )
        )
    headings = ("requirement", "title", "reason", "approver", "expires")
    return ["<h2>Accepted risks</h2>", _table("cba-accepted", headings, rows)]


def details_html(document: Mapping[str, Any]) -> list[str]:
    """The end of the report: the run's Python, platform and pytest, and every setting with its source."""
    run = document.get("run") or {}
    rows = [
        ("Python", readable.text(run.get("python"))),
        ("pytest", readable.text(run.get("pytest"))),
        ("Platform", platform.platform()),
        ("Results schema", readable.text(document.get("schema"))),
    ]
    for name, entry in (run.get("settings") or {}).items():
        if isinstance(entry, Mapping):
            value = entry.get("value")
            shown = "(not set)" if value in (None, []) else readable.one_line(value)
            rows.append((f"setting {name}", f"{shown} ({readable.text(entry.get('source'))})"))
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return ["<h2>Run details</h2>", f'<table class="cba-settings">{table}</table>']


def _table(css_class: str, headings: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in headings) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f"<td>{_lines(readable.lines_of(value))}</td>" for value in row) + "</tr>" for row in rows
    )
    return f'<table class="{css_class}">{head}{body}</table>'


def fixes_html(fixes: Mapping[str, Any]) -> list[str]:
    """The plan (every run) and, after an apply, each action's before, request, response and after. Escaped."""
    parts: list[str] = []
    plan = fixes.get("plan") or []
    if plan:
        rows: list[tuple[Any, ...]] = [
            (
                readable.text(action.get("id")),
                ", ".join(action.get("mends", [])),
                readable.plan_request_line(action),
                readable.text(action.get("reason")),
                readable.text(action.get("permission")),
            )
            for action in plan
        ]
        parts.append(
            f'<h2 class="cba-plan-title">Fix plan ({len(plan)} actions; key bytes and secrets elided)</h2>'
            + _table("cba-plan", ("action", "mends", "change", "why", "needs"), rows)
        )
    applied = fixes.get("applied") or []
    if applied:
        rows = [
            (
                row.get("action_id", ""),
                row.get("status", ""),
                row.get("verdict", ""),
                readable.text(row.get("response_status")),
                row.get("request_id", ""),
                readable.text(row.get("finished_at") or row.get("started_at")),
                row.get("before"),
                row.get("after"),
            )
            for row in applied
        ]
        headings = ("action", "status", "verdict", "response", "request-id", "at (UTC)", "before", "after")
        parts.append(
            f"<h2>Fixes applied before this evaluation ({len(applied)} actions)</h2>"
            + _table("cba-applied", headings, rows)
        )
    return parts


class HtmlHooks:
    """pytest-html's hooks for a cbacheck run; the plugin registers one when it writes an HTML report."""

    def __init__(
        self,
        settings: Settings,
        pending: Mapping[str, str] | None,
        document: Callable[[], Mapping[str, Any] | None],
    ) -> None:
        self.settings = settings
        self.pending = pending  # None unless this run follows an apply
        self.document = document  # the results document, once the session has finished

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: Any) -> None:
        settings = self.settings
        subject = settings.tenant or (settings.cert.name if settings.cert else "no tenant configured")
        report.title = f"cbacheck: {subject}" + (" (SANDBOX)" if settings.sandbox else "")

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        # Requirement rows, not pytest items: no node id, duration or links column.
        cells[:] = [
            '<th class="sortable" data-column-type="result">Outcome</th>',
            '<th class="sortable" data-column-type="requirement">Requirement</th>',
            '<th data-column-type="title">Title</th>',
            '<th class="sortable" data-column-type="severity">Severity</th>',
            '<th data-column-type="finding">Finding</th>',
        ]

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        record = getattr(report, "cba", None)
        if not record:
            nodeid = escape(readable.text(getattr(report, "nodeid", "")))
            cells[:] = [cells[0], f'<td class="col-requirement">{nodeid}</td>', "<td></td>", "<td></td>", "<td></td>"]
            return
        severity = readable.text(record.get("severity"))
        # A hidden rank makes the Severity column sort critical..info instead of alphabetically.
        rank = catalogue.SEVERITIES.index(severity) + 1 if severity in catalogue.SEVERITIES else 9
        # cbacheck's own outcome: pytest-html's knows neither "error" for a check that crashed (could not
        # verify) nor "pending" for a fix still propagating; the first cell keeps its class (collapsing).
        outcome = readable.outcome_of(record)
        if self.pending is not None:
            marked = [dict(record)]
            mark_pending(marked, self.pending)
            outcome = readable.outcome_of(marked[0])
        change = readable.change_text(record)
        shown = f"{outcome} ({change})" if change else outcome
        # With several profiles a profile-dependent row names its profile ("CBA-PERM-002 · security-compliance").
        label = readable.requirement_label(record, len(self.settings.profile) > 1)
        cells[:] = [
            f'<td class="col-result">{escape(shown)}</td>',
            f'<td class="col-requirement">{escape(label)}</td>',
            f'<td class="col-title">{escape(readable.text(record.get("title")))}</td>',
            f'<td class="col-severity"><span hidden>{rank}</span>{escape(severity)}</td>',
            f'<td class="col-finding">{escape(readable.text(record.get("message")))}</td>',
        ]

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_html(self, report: Any, data: list[str]) -> None:
        # The finding sentence and the evidence table say it all; pytest's traceback and captured log do not
        # belong in a reviewer's evidence.
        if getattr(report, "cba", None):
            data.clear()

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str]) -> None:
        document = self.document()
        if document is not None:
            prefix[:0] = summary_html(document, self.settings)
            postfix.extend(details_html(document))
