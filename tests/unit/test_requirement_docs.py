"""The catalogue, the checks in checks/ and docs/requirements.md say the same thing about every requirement."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from cbacheck.catalogue import AUDIT_CATALOGUE, CATALOGUE
from cbacheck.report import audit as auditreport

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ROOT / "checks"
DOCS = ROOT / "docs" / "requirements.md"


@dataclass(frozen=True)
class CheckFunction:
    path: str
    name: str
    requirement: str
    severity: str | None
    fix: str | None
    title: str


def _keyword(call: ast.Call, name: str) -> str | None:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return str(keyword.value.value)
    return None


def _requirement_marker(node: ast.FunctionDef) -> ast.Call | None:
    for decorator in node.decorator_list:
        if (
            isinstance(decorator, ast.Call)
            and isinstance(decorator.func, ast.Attribute)
            and decorator.func.attr == "requirement"
        ):
            return decorator
    return None


def checks_in_folder() -> list[CheckFunction]:
    """Every function in checks/ marked with a requirement, read from source (importing would run nothing more)."""
    found = []
    for path in sorted(CHECKS.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            marker = _requirement_marker(node)
            if marker is None:
                continue
            first = marker.args[0]
            assert isinstance(first, ast.Constant), f"{path.name}::{node.name}: the requirement ID must be a literal"
            docstring = ast.get_docstring(node) or ""
            found.append(
                CheckFunction(
                    path=f"checks/{path.name}",
                    name=node.name,
                    requirement=str(first.value),
                    severity=_keyword(marker, "severity"),
                    fix=_keyword(marker, "fix"),
                    title=docstring.splitlines()[0] if docstring else "",
                )
            )
    return found


CHECK_FUNCTIONS = checks_in_folder()
DOC_TEXT = DOCS.read_text(encoding="utf-8")


def doc_section(req_id: str) -> str:
    """The text under the requirement's heading, up to the next heading."""
    match = re.search(rf"^### {re.escape(req_id)}: .*?(?=^#{{2,3}} |\Z)", DOC_TEXT, flags=re.M | re.S)
    assert match, f"docs/requirements.md has no '### {req_id}: <title>' heading"
    return match.group(0)


@pytest.mark.parametrize("req_id", sorted(CATALOGUE))
def test_requirement_is_documented_with_catalogue_title_severity_and_fix(req_id: str) -> None:
    entry = CATALOGUE[req_id]
    section = doc_section(req_id)
    assert section.splitlines()[0] == f"### {req_id}: {entry.title}"
    assert f"Severity: **{entry.severity}**" in section
    assert f"Fix: `{entry.fix}`" in section


@pytest.mark.parametrize("req_id", sorted(CATALOGUE))
def test_requirement_has_exactly_one_check_agreeing_with_the_catalogue(req_id: str) -> None:
    entry = CATALOGUE[req_id]
    checks = [check for check in CHECK_FUNCTIONS if check.requirement == req_id]
    assert len(checks) == 1, f"{req_id} has {len(checks)} checks in checks/: {checks}"
    check = checks[0]
    # The marker needs only the ID; a severity or fix repeated there must agree with the catalogue.
    assert check.severity in (None, entry.severity), check
    assert check.fix in (None, entry.fix), check
    assert check.title == entry.title, f"{check.path}::{check.name} docstring starts {check.title!r}"
    assert f"Check: `{check.path}::{check.name}`" in doc_section(req_id)


def test_every_check_in_the_folder_is_in_the_catalogue() -> None:
    unknown = [check for check in CHECK_FUNCTIONS if check.requirement not in CATALOGUE]
    assert not unknown


def test_docs_name_no_requirement_the_catalogue_lacks() -> None:
    documented = set(re.findall(r"^### (CBA-[A-Z]+-\d{3}):", DOC_TEXT, flags=re.M))
    assert documented == set(CATALOGUE) | set(AUDIT_CATALOGUE)


@pytest.mark.parametrize("req_id", sorted(AUDIT_CATALOGUE))
def test_audit_requirement_is_documented_and_has_one_rule(req_id: str) -> None:
    entry = AUDIT_CATALOGUE[req_id]
    section = doc_section(req_id)
    assert section.splitlines()[0] == f"### {req_id}: {entry.title}"
    assert f"Severity: **{entry.severity}** · Fix: `{entry.fix}`" in section
    rule = section.split("Audit: `cbacheck/report/audit.py::", 1)[1].split("`", 1)[0]
    assert rule in vars(auditreport), f"{req_id} names a rule report/audit.py lacks: {rule}"
    assert req_id not in CATALOGUE
