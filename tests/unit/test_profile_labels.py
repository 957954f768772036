"""Profile labels in the HTML and Markdown reports: a two-profile run names each profile-dependent result's profile."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import tenantfactory as tf
from reportsamples import requirement, sample_document

from cbacheck.report.html import HtmlHooks, accepted_html, changes_html, summary_html
from cbacheck.report.markdown import summary_markdown

SC = "security-compliance"
LABELLED = re.compile(r"CBA-[A-Z]+-\d{3} · ")


def in_profile(record: dict[str, Any], profile: str) -> dict[str, Any]:
    return {**record, "profile": profile, "key": {**record["key"], "profile": profile}}


def two_profile_document() -> dict[str, Any]:
    """Both profiles' CBA-PERM-003 failed; the Security & Compliance token follows from its own profile's consent."""
    document = sample_document()
    document["requirements"] += [
        requirement("CBA-PERM-003", "failed", "critical", 4, message="no consent on Office 365 Exchange Online"),
        in_profile(
            requirement("CBA-PERM-003", "failed", "critical", 4, message="no consent on EOP", change="broken"), SC
        ),
        in_profile(
            requirement("CBA-TOKEN-002", "blocked", "critical", 6, follows_from="CBA-PERM-003", message="no role"), SC
        ),
        in_profile(
            requirement(
                "CBA-EXO-001",
                "accepted",
                "critical",
                6,
                exception={"reason": "S&C later", "approver": "alice@contoso.com", "expires": "2027-03-31"},
            ),
            SC,
        ),
    ]
    return document


def test_the_markdown_names_the_profiles_and_each_profile_dependent_result() -> None:
    text = summary_markdown(two_profile_document())
    assert "**Profiles checked** exchange-online, security-compliance" in text
    # Both profiles' consent failures are root causes of their own; the token follows its own profile's.
    assert "- **CBA-PERM-003 · exchange-online** (critical) failed: no consent on Office 365 Exchange Online" in text
    assert "- **CBA-PERM-003 · security-compliance** (critical) failed: no consent on EOP" in text
    assert "  - following from it: CBA-TOKEN-002 · security-compliance" in text
    assert "| CBA-EXO-001 · security-compliance | Title of CBA-EXO-001 | S&amp;C later |" in text
    assert "| CBA-PERM-003 · security-compliance | Title of CBA-PERM-003 | broken |" in text
    # A result reported once keeps its bare ID.
    assert "**CBA-KEY-001** (critical)" in text and "CBA-KEY-001 ·" not in text


def test_a_one_profile_run_reads_as_before_with_a_discreet_profile_line() -> None:
    text = summary_markdown(sample_document())
    assert "**Profile** exchange-online" in text and not LABELLED.search(text)
    html = "".join(summary_html(sample_document(), tf.settings()))
    assert "<th>Profile</th><td>exchange-online</td>" in html and not LABELLED.search(html)


def test_the_html_names_the_profiles_and_labels_rows_tables_of_a_two_profile_run() -> None:
    document = two_profile_document()
    settings = tf.settings(profile=("exchange-online", SC))
    html = "".join(summary_html(document, settings))
    assert "<th>Profiles checked</th><td>exchange-online, security-compliance</td>" in html
    assert "<td>CBA-EXO-001 · security-compliance</td>" in "".join(accepted_html(document))
    assert "<td>CBA-PERM-003 · security-compliance</td>" in "".join(changes_html(document))

    def row(record: dict[str, Any], profiles: tuple[str, ...]) -> str:
        cells = ["<td>x</td>"] * 5
        hooks = HtmlHooks(tf.settings(profile=profiles), None, lambda: None)
        hooks.pytest_html_results_table_row(SimpleNamespace(cba=record), cells)
        return cells[1]

    sc_token = document["requirements"][-2]
    assert (
        row(sc_token, ("exchange-online", SC)) == '<td class="col-requirement">CBA-TOKEN-002 · security-compliance</td>'
    )
    assert row(document["requirements"][0], ("exchange-online", SC)) == '<td class="col-requirement">CBA-CERT-001</td>'
    assert row(in_profile(sc_token, "exchange-online"), ("exchange-online",)) == (
        '<td class="col-requirement">CBA-TOKEN-002</td>'
    )
