"""JUnit for CI test tabs: each case named `CBA-KEY-001 <title>`, grouped by chain link, the finding as message.

pytest's junitxml writes the file; this rewrites its test cases from the results document afterwards, so
the file stays the one pytest wrote in every other respect (properties, times, system-out).
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cbacheck.report import readable

OUTCOME_ELEMENTS = ("failure", "error", "skipped")
# The gate passes these, so a CI test tab must not count them as failures (a pipeline that fails on any
# JUnit failure would otherwise overrule cbacheck's exit code): an accepted risk shows as skipped with the
# exception named, a warning as a pass whose output says why it is one.
GATE_PASSED = {"accepted": "skipped", "warning": None}


def _record_for(case: ET.Element, by_id: Mapping[str, list[Mapping[str, Any]]]) -> Mapping[str, Any] | None:
    properties = {prop.get("name"): prop.get("value") for prop in case.iter("property")}
    requirement = properties.get("requirement")
    if requirement is None:
        return None
    candidates = by_id.get(requirement, [])
    profile = properties.get("profile")
    for record in candidates:
        if profile is None or readable.profile_of(record) == profile:
            return record
    return candidates[0] if candidates else None


def _finding_text(record: Mapping[str, Any]) -> str:
    lines = [readable.text(record.get("message"))]
    lines += [f"{label}: {' | '.join(values)}" for label, values in readable.evidence_rows(record)]
    return "\n".join(line for line in lines if line)


def rename_cases(root: ET.Element, document: Mapping[str, Any]) -> None:
    """Name, group and message every requirement's test case from its record; other cases stay as they are."""
    requirements = document.get("requirements") or []
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    for record in requirements:
        by_id.setdefault(readable.text(record.get("id")), []).append(record)
    several_profiles = len(readable.profiles(document)) > 1
    for suite in root.iter("testsuite"):
        suite.set("name", "cbacheck")
        for case in suite.iter("testcase"):
            record = _record_for(case, by_id)
            if record is None:
                continue
            name = f"{readable.text(record.get('id'))} {readable.text(record.get('title'))}".strip()
            if several_profiles:
                name += f" [{readable.profile_of(record)}]"
            case.set("name", name)
            case.set("classname", readable.link_name(record.get("link")))
            for element in case:
                if element.tag in OUTCOME_ELEMENTS:
                    element.set("message", readable.text(record.get("message")) or element.get("message", ""))
                    if element.tag != "skipped":
                        element.text = _finding_text(record)
            _as_the_gate_decided(case, record)
        _recount(suite)
        properties = suite.find("properties")
        run_id = readable.text((document.get("run") or {}).get("run_id"))
        if run_id:
            if properties is None:
                properties = ET.Element("properties")
                suite.insert(0, properties)
            ET.SubElement(properties, "property", name="run_id", value=run_id)


def _as_the_gate_decided(case: ET.Element, record: Mapping[str, Any]) -> None:
    """An accepted or warning result: pytest's <failure> becomes what the gate decided (skipped, or passed)."""
    outcome = readable.text(record.get("outcome"))
    if outcome not in GATE_PASSED:
        return
    for element in [child for child in case if child.tag in OUTCOME_ELEMENTS]:
        case.remove(element)
    note = f"{outcome}: {readable.text(record.get('message'))}"
    if GATE_PASSED[outcome] == "skipped":
        ET.SubElement(case, "skipped", type="cbacheck.accepted", message=note)
    else:
        output = case.find("system-out")
        if output is None:
            output = ET.SubElement(case, "system-out")
        output.text = f"{note}\n{output.text or ''}".rstrip("\n")


def _recount(suite: ET.Element) -> None:
    """The suite's totals, counted again from its cases after outcomes were rewritten."""
    cases = list(suite.iter("testcase"))
    for tag, attribute in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        if suite.get(attribute) is not None:
            suite.set(attribute, str(sum(1 for case in cases if case.find(tag) is not None)))


def rewrite(path: Path, document: Mapping[str, Any]) -> None:
    """Rewrite the JUnit file pytest wrote (our own output, read back) in place, atomically."""
    tree = ET.parse(path)  # noqa: S314  # the file pytest just wrote for this run, not outside input
    rename_cases(tree.getroot(), document)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            tree.write(stream, encoding="utf-8", xml_declaration=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
