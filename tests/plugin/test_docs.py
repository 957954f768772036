"""The configuration and reports docs stay in step with the settings table and the results schema."""

from __future__ import annotations

from pathlib import Path

from cbacheck.config import env_name, option_name, plugin_option_name, setting_fields
from cbacheck.report import document

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_doc_lists_every_setting_with_its_names() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    for spec in setting_fields():
        row = rows.get(f"`{spec.name}` ({spec.metadata['kind']})")
        assert row is not None, f"docs/configuration.md has no row for {spec.name}"
        assert (f"`{env_name(spec.name)}" in row) == (spec.metadata["trust"] != "command_line")
        assert spec.metadata["help"] in row
        if spec.metadata["cli"]:
            assert f"`{option_name(spec.name)}`" in row and f"`{plugin_option_name(spec.name)}" in row
        else:
            assert option_name(spec.name) not in row


def test_reports_doc_names_every_requirement_field_of_the_schema() -> None:
    text = (DOCS / "reports.md").read_text(encoding="utf-8")
    fields = document.schema()["$defs"]["requirement"]["required"]
    for name in fields:
        assert f'"{name}"' in text, f"docs/reports.md's example lacks requirements[].{name}"
