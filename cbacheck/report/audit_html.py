"""The tenant audit rendered for readers: the overview table and a drill-down per app (HTML), CSV and Markdown."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from html import escape
from typing import Any

from cbacheck.report.markdown import md

CSV_COLUMNS = ("displayName", "appId", "type", "permissions", "roles", "credentials", "owners", "lastSignIn", "verdict")
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1b1b}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f2f2}
.failed{color:#a4000f;font-weight:600}.accepted{color:#555}.error{color:#8a5300;font-weight:600}.passed{color:#0b6a0b}
details{margin:.4rem 0}summary{cursor:pointer}
@media print{details{display:block}}
"""


def _credentials(app: Mapping[str, Any]) -> str:
    parts = [
        f"{c['kind']} {c['daysLeft']}d"
        if c["daysLeft"] is not None
        else (f"federated {c['keyId']}" if c["kind"] == "federated" else f"{c['kind']} no end")
        for c in app["credentials"]
    ]
    return ", ".join(parts) or "none"


def columns(document: Mapping[str, Any]) -> tuple[str, ...]:
    """The overview's columns; a merged audit (several tenants) leads with the tenant."""
    return ("tenant", *CSV_COLUMNS) if document.get("tenants") is not None else CSV_COLUMNS


def _anchor(app: Mapping[str, Any]) -> str:
    # One app (a multi-tenant one) can hold Exchange access in several tenants of a merged audit.
    return f"app-{app['tenant']}-{app['appId']}" if "tenant" in app else f"app-{app['appId']}"


def _cells(app: Mapping[str, Any]) -> dict[str, str]:
    return {
        **({"tenant": str(app["tenant"])} if "tenant" in app else {}),
        "displayName": app["displayName"],
        "appId": app["appId"],
        "type": app["type"],
        "permissions": ", ".join(app["permissions"]),
        "roles": ", ".join([*app["roles"], *(f"Exchange RBAC {r}" for r in app.get("exchangeRbac") or ())]) or "none",
        "credentials": _credentials(app),
        "owners": "not read" if app["owners"] is None else ", ".join(app["owners"]),
        "lastSignIn": "not read" if app["lastSignIn"] is None else str(app["lastSignIn"]),
        "verdict": app["verdict"],
    }


def _scope(document: Mapping[str, Any]) -> str:
    """Which tenants the document covers and when they were read."""
    tenants = document.get("tenants")
    if tenants is None:
        return f"Tenant {document['tenant']}, read {document['collected_at']}"
    read = sorted(str(t["collected_at"]) for t in tenants)
    when = f", read {read[0]} to {read[-1]}" if read else ""
    return f"{len(tenants)} tenants ({', '.join(str(t['tenant']) for t in tenants)}){when}"


def audit_csv(document: Mapping[str, Any]) -> str:
    """One row per principal, the overview table's columns."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns(document), lineterminator="\n")
    writer.writeheader()
    for app in document["apps"]:
        # A leading =, +, - or @ would run as a formula in a spreadsheet.
        writer.writerow({k: ("'" + v if v[:1] in "=+-@" else v) for k, v in _cells(app).items()})
    return out.getvalue()


def _drill_down(app: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{escape(r['id'])}</td><td>{escape(r['title'])}</td><td>{escape(r['severity'])}</td>"
        f'<td class="{escape(r["outcome"])}">{escape(r["outcome"])}</td><td>{escape(r["message"])}</td></tr>'
        for r in app["requirements"]
    )
    return (
        f'<details id="{escape(_anchor(app))}"><summary>{escape(app["displayName"])} ({escape(app["appId"])}) '
        f'<span class="{escape(app["verdict"])}">{escape(app["verdict"])}</span></summary>'
        "<table><tr><th>requirement</th><th>title</th><th>severity</th><th>outcome</th><th>evidence</th></tr>"
        f"{rows}</table></details>"
    )


def audit_html(document: Mapping[str, Any], compared: Mapping[str, list[str]] | None = None) -> str:
    """A standalone page: verdict, the overview table, what was not read, the changes, one drill-down per app."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns(document))
    body = ""
    for app in document["apps"]:
        cells = _cells(app)
        body += (
            "<tr>"
            + "".join(
                f'<td class="{escape(v)}">{escape(v)}</td>'
                if k == "verdict"
                else f'<td><a href="#{escape(_anchor(app))}">{escape(v)}</a></td>'
                if k == "displayName"
                else f"<td>{escape(v)}</td>"
                for k, v in cells.items()
            )
            + "</tr>"
        )
    not_read = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in document["not_read"].items())
    policy = document.get("app_management_policy")
    if policy is not None:
        not_read += f"<li>read: app management policy {escape(str(policy))}</li>"
    changes = ""
    if compared is not None:
        changes = (
            "<h2>Since the earlier audit</h2><ul>"
            + "".join(
                f"<li>{escape(kind)}: {escape(', '.join(names) or 'none')}</li>" for kind, names in compared.items()
            )
            + "</ul>"
        )
    counts = document["counts"]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>cbacheck audit</title>'
        f"<style>{_STYLE}</style></head><body>"
        f'<h1>Exchange app-only principals: <span class="{escape(document["verdict"])}">'
        f"{escape(document['verdict'])}</span></h1>"
        f"<p>{escape(_scope(document))}: {counts['apps']} principals "
        f"hold Exchange app-only permissions ({counts['failed']} failed, {counts['error']} not verified) among "
        f"{counts['applications_seen']} applications.</p>"
        f"<table><tr>{head}</tr>{body}</table>{_tenants_html(document)}{changes}<h2>Not read</h2><ul>{not_read}</ul>"
        "<h2>Per principal</h2>" + "".join(_drill_down(app) for app in document["apps"]) + "</body></html>"
    )


def audit_markdown(document: Mapping[str, Any]) -> str:
    """The CI summary: verdict, counts and one row per principal that did not pass (Markdown-escaped)."""
    counts = document["counts"]
    merged = document.get("tenants") is not None
    lines = [
        f"### cbacheck audit: {md(document['verdict'])}",
        "",
        f"{md(_scope(document))}: {counts['apps']} principals hold Exchange app-only permissions among "
        f"{counts['applications_seen']} applications; {counts['failed']} failed, {counts['error']} not verified.",
        "",
        *_tenant_lines(document),
        ("| tenant " if merged else "") + "| app | appId | verdict | requirements not passed |",
        ("|---" if merged else "") + "|---|---|---|---|",
    ]
    for app in document["apps"]:
        if app["verdict"] == "passed":
            continue
        open_ids = ", ".join(r["id"] for r in app["requirements"] if r["outcome"] != "passed")
        tenant = f"| {md(app['tenant'])} " if merged else ""
        lines.append(
            f"{tenant}| {md(app['displayName'])} | {md(app['appId'])} | {md(app['verdict'])} | {md(open_ids)} |"
        )
    for kind, names in (document.get("compare") or {}).items():
        lines.append(f"\n{md(kind)}: {md(', '.join(names) or 'none')}")
    return "\n".join(lines) + "\n"


def _tenant_lines(document: Mapping[str, Any]) -> list[str]:
    """A merged audit's tenants (verdict, counts, source file) and the inputs a newer one superseded."""
    if document.get("tenants") is None:
        return []
    lines = ["| tenant | target | verdict | principals | failed | not verified | read | from |", "|---" * 8 + "|"]
    for t in document["tenants"]:
        counts = t.get("counts") or {}
        cells = (
            t["tenant"],
            t.get("target") or "",
            t["verdict"],
            *(str(counts.get(k, "")) for k in ("apps", "failed", "error")),
            t["collected_at"],
            t["source"],
        )
        lines.append("| " + " | ".join(md(str(c)) for c in cells) + " |")
    lines += [
        f"- superseded: {md(s['source'])} ({md(s['tenant'])}, read {md(s['collected_at'])}) by {md(s['kept'])}"
        for s in document.get("superseded") or []
    ]
    return [*lines, ""]


def _tenants_html(document: Mapping[str, Any]) -> str:
    """A merged audit's tenants as a table, and what was superseded."""
    if document.get("tenants") is None:
        return ""
    rows = "".join(
        "<tr>"
        + "".join(
            f'<td class="{escape(t["verdict"])}">{escape(str(v))}</td>'
            if k == "verdict"
            else f"<td>{escape(str(v))}</td>"
            for k, v in (
                ("tenant", t["tenant"]),
                ("target", t.get("target") or ""),
                ("verdict", t["verdict"]),
                *((k, (t.get("counts") or {}).get(k, "")) for k in ("apps", "failed", "error")),
                ("read", t["collected_at"]),
                ("from", t["source"]),
            )
        )
        + "</tr>"
        for t in document["tenants"]
    )
    head = "".join(
        f"<th>{h}</th>" for h in ("tenant", "target", "verdict", "principals", "failed", "not verified", "read", "from")
    )
    superseded = "".join(
        f"<li>{escape(s['source'])} ({escape(s['tenant'])}, read {escape(s['collected_at'])}) superseded by "
        f"{escape(s['kept'])}</li>"
        for s in document.get("superseded") or []
    )
    return f"<h2>Tenants</h2><table><tr>{head}</tr>{rows}</table>" + (f"<ul>{superseded}</ul>" if superseded else "")
