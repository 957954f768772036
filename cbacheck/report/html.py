"""The HTML report: cbacheck's summary, fix plan and evidence blocks inside pytest-html, with one stylesheet."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from html import escape
from typing import Any

import pytest

from cbacheck import catalogue
from cbacheck.config import Settings
from cbacheck.report.console import shown_settings
from cbacheck.report.document import OUTCOMES, describe_first_broken, describe_not_evaluated, mark_pending

# Every cbacheck element is styled from here (classes, no style= attributes); the block leads the summary.
STYLESHEET = """
.cba-sandbox { background: #6a1b9a; color: #fff; padding: 10px 14px; font-size: 1.4em; font-weight: bold;
  letter-spacing: .08em; }
.cba-overridden { font-weight: bold; color: #b00020; }
.cba-verdict { font-size: 1.5em; margin: .4em 0; }
.cba-verdict-pass { color: #1b7f3b; }
.cba-verdict-fail { color: #b00020; }
.cba-verdict-incomplete { color: #b26a00; }
.cba-first-broken { font-size: 1.1em; }
.cba-not-evaluated { color: #b26a00; font-size: 1.1em; }
.cba-counts, .cba-plan, .cba-applied, .cba-evidence-table { border-collapse: collapse; margin: .5em 0; }
.cba-counts th, .cba-counts td, .cba-plan th, .cba-applied th { padding: 2px 10px; }
.cba-counts td { text-align: center; }
.cba-counts th, .cba-plan th, .cba-applied th, .cba-settings th { text-align: left; }
.cba-settings th { padding: 1px 10px 1px 0; }
.cba-plan td, .cba-applied td { vertical-align: top; padding: 2px 8px; }
.cba-pre { margin: 0; white-space: pre-wrap; }
.cba-evidence { padding: 6px 4px; line-height: 1.4; }
.cba-message { white-space: pre-wrap; }
.cba-evidence-table th { text-align: left; vertical-align: top; padding: 2px 12px 2px 0; font-weight: 600; }
.cba-evidence-table td { padding: 2px 0; }
"""

EXPLANATIONS = {
    "pass": "every requirement that was configured passed",
    "fail": "at least one requirement failed",
    "incomplete": "nothing failed, but not everything could be verified or was evaluated",
}


def _pre(value: Any, indent: int = 1) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=indent, sort_keys=True, default=str)
    return f'<pre class="cba-pre">{escape(text)}</pre>'


def render_evidence(record: Mapping[str, Any]) -> str:
    """The evidence block shown in a report row; every value is escaped."""
    evidence = record.get("evidence") or {}
    outcome = str(record.get("outcome", ""))
    parts = ['<div class="cba-evidence">']
    parts.append(
        f"<p><strong>{escape(str(record.get('id', '')))}</strong> {escape(str(record.get('title', '')))} "
        f"&mdash; <strong>{escape(outcome)}</strong></p>"
    )
    if record.get("message"):
        parts.append(f'<p class="cba-message">{escape(str(record["message"]))}</p>')
    if record.get("follows_from"):
        parts.append(f"<p>Follows from <strong>{escape(str(record['follows_from']))}</strong>.</p>")
    rows: list[tuple[str, Any]] = []
    rows += [(f"Observed: {label}", value) for label, value in evidence.get("observed", {}).items()]
    rows += [("Expected", text) for text in evidence.get("expected", [])]
    rows += [(label, value) for label, value in evidence.get("details", {}).items()]
    rows += [("Source", f"{s['method']} {s['url']} -> {s['status']}") for s in evidence.get("sources", [])]
    if rows:
        parts.append('<table class="cba-evidence-table">')
        for label, value in rows:
            cell = escape(value) if isinstance(value, str) else _pre(value, indent=2)
            parts.append(f"<tr><th>{escape(label)}</th><td>{cell}</td></tr>")
        parts.append("</table>")
    if record.get("remediation") and outcome in ("failed", "error"):
        parts.append(f"<p><strong>What to do:</strong> {escape(str(record['remediation']))}</p>")
    if record.get("reference"):
        ref = escape(str(record["reference"]), quote=True)
        parts.append(f'<p><strong>Reference:</strong> <a href="{ref}" target="_blank" rel="noopener">{ref}</a></p>')
    parts.append("</div>")
    return "".join(parts)


def _counts_table(summary: Mapping[str, Any]) -> str:
    outcomes = [name for name in OUTCOMES if any(row[name] for row in summary["by_severity"].values())]
    outcomes = outcomes or ["passed", "failed", "error", "skipped"]
    header = "".join(f"<th>{escape(name)}</th>" for name in outcomes)
    rows = []
    for severity, row in summary["by_severity"].items():
        if any(row.values()):
            cells = "".join(f"<td>{row[name] or ''}</td>" for name in outcomes)
            rows.append(f"<tr><th>{escape(severity)}</th>{cells}</tr>")
    total = "".join(f"<td><strong>{summary['counts'][name]}</strong></td>" for name in outcomes)
    rows.append(f"<tr><th>all</th>{total}</tr>")
    return f'<table class="cba-counts"><tr><th></th>{header}</tr>{"".join(rows)}</table>'


def summary_html(document: Mapping[str, Any], settings: Settings) -> list[str]:
    """The report's opening: banner, verdict, first broken link, counts, fixes, settings. All escaped."""
    run = document["run"]
    summary = document["summary"]
    verdict = run["verdict"]
    parts = [f"<style>{STYLESHEET}</style>"]
    if run["sandbox"]:
        parts.append(
            '<div class="cba-sandbox">SANDBOX &mdash; this run checked cbacheck\'s local sandbox tenant, '
            "not a real tenant</div>"
        )
    if settings.endpoint_overrides():
        parts.append(f'<p class="cba-overridden">{escape(settings.endpoint_overrides() or "")}</p>')
    parts.append(
        f'<p class="cba-verdict"><strong class="cba-verdict-{escape(verdict)}">{escape(verdict.upper())}</strong>'
        f" &mdash; {escape(EXPLANATIONS.get(verdict, ''))}</p>"
    )
    not_evaluated = describe_not_evaluated(run)
    if not_evaluated:
        parts.append(f'<p class="cba-not-evaluated"><strong>{escape(not_evaluated)}</strong></p>')
    parts.append(
        '<p class="cba-first-broken"><strong>First broken link:</strong> '
        f"{escape(describe_first_broken(summary['first_broken']))}</p>"
    )
    parts.append(_counts_table(summary))
    planned = len(document["fixes"]["plan"])
    parts.append(f"<p><strong>Fix actions planned:</strong> {planned} (fix mode: {escape(settings.fix)})</p>")
    parts.extend(fixes_html(document["fixes"]))
    setting_rows = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(text)}</td></tr>" for name, text in shown_settings(settings)
    )
    parts.append(
        "<details><summary>Settings and where they came from</summary>"
        f'<table class="cba-settings">{setting_rows}</table></details>'
    )
    return parts


def _table(css_class: str, headings: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{_pre(value)}</td>" for value in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}">{head}{body}</table>'


def fixes_html(fixes: Mapping[str, Any]) -> list[str]:
    """The plan (every run) and, after an apply, each action's before, request, response and after. Escaped."""
    parts: list[str] = []
    if fixes["plan"]:
        rows: list[tuple[Any, ...]] = [
            (
                action["id"],
                ", ".join(action.get("mends", [])),
                action.get("reason", ""),
                action.get("request", {}),
                action.get("permission", ""),
            )
            for action in fixes["plan"]
        ]
        table = _table("cba-plan", ("action", "mends", "why", "request", "needs"), rows)
        parts.append(
            f"<details><summary><strong>Fix plan</strong> ({len(fixes['plan'])} actions; key bytes and secrets "
            f"elided)</summary>{table}</details>"
        )
    if fixes.get("applied"):
        rows = [
            (
                row.get("action_id", ""),
                row.get("status", ""),
                row.get("verdict", ""),
                str(row.get("response_status", "")),
                row.get("request_id", ""),
                row.get("before"),
                row.get("after"),
            )
            for row in fixes["applied"]
        ]
        headings = ("action", "status", "verdict", "response", "request-id", "before", "after")
        parts.append(
            "<details open><summary><strong>Fixes applied before this evaluation</strong> "
            f"({len(fixes['applied'])} actions)</summary>{_table('cba-applied', headings, rows)}</details>"
        )
    return parts


def _link_text(link: int | None) -> str:
    return f"{link} {catalogue.LINKS[link]}" if link in catalogue.LINKS else "custom"


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
        cells.insert(1, '<th class="sortable" data-column-type="requirement">Requirement</th>')
        cells.insert(2, '<th class="sortable" data-column-type="severity">Severity</th>')
        cells.insert(3, '<th class="sortable" data-column-type="chainlink">Chain link</th>')
        cells.insert(4, '<th class="sortable" data-column-type="verdict">Verdict</th>')

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        record = getattr(report, "cba", None) or {}
        severity = str(record.get("severity", ""))
        # A hidden rank makes the Severity column sort critical..info instead of alphabetically.
        rank = catalogue.SEVERITIES.index(severity) + 1 if severity in catalogue.SEVERITIES else 9
        cells.insert(1, f'<td class="col-requirement">{escape(str(record.get("id", "")))}</td>')
        cells.insert(2, f'<td class="col-severity"><span hidden>{rank}</span>{escape(severity)}</td>')
        link = _link_text(record.get("link")) if record else ""
        cells.insert(3, f'<td class="col-chainlink">{escape(link)}</td>')
        # cbacheck's own outcome: pytest-html's Result column knows neither "error" for a check that crashed
        # (could not verify) nor "pending" for a fix still propagating.
        outcome = str(record.get("outcome", ""))
        if record and self.pending is not None:
            marked = [dict(record)]
            mark_pending(marked, self.pending)
            outcome = str(marked[0]["outcome"])
        cells.insert(4, f'<td class="col-verdict">{escape(outcome)}</td>')

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str]) -> None:
        document = self.document()
        if document is not None:
            prefix[:0] = summary_html(document, self.settings)
