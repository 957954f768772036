"""Readers for the reports the plugin writes: the HTML report's embedded data and the JSON results."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any


class _DataContainer(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.blob: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if dict(attrs).get("id") == "data-container":
            self.blob = dict(attrs).get("data-jsonblob")


def html_data(path: Path) -> dict[str, Any]:
    """The test data pytest-html embeds in #data-container[data-jsonblob]."""
    parser = _DataContainer()
    parser.feed(path.read_text(encoding="utf-8"))
    assert parser.blob is not None, f"{path} has no #data-container"
    data: dict[str, Any] = json.loads(parser.blob)
    return data


def cell_text(html: str) -> str:
    """A table cell's visible text (hidden sort ranks removed)."""
    html = re.sub(r"<span hidden>.*?</span>", "", html)
    return re.sub(r"<[^>]+>", "", html).strip()


def html_rows(path: Path) -> dict[str, dict[str, str]]:
    """Requirement ID -> {result, requirement, title, severity, finding} for every row of the HTML report."""
    rows = {}
    for entries in html_data(path)["tests"].values():
        for entry in entries:
            cells = {}
            for cell in entry["resultsTableRow"]:
                name = re.search(r'class="col-(\w+)"', cell)
                if name:
                    cells[name.group(1)] = cell_text(cell)
            rows[cells["requirement"]] = {**cells, "extras": entry["extras"], "log": entry["log"]}
    return rows


def by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {record["id"]: record for record in document["requirements"]}
