"""The layering of docs/architecture.md, pinned: which packages may import which (read with ast, nothing run)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Source folders and the package they ship as (pyproject.toml's package-dir).
TREES = {ROOT / "cbacheck": "cbacheck", ROOT / "checks": "cbacheck.checks"}

# Libraries that reach the network or a credential store.
NETWORK = ("requests", "urllib3", "msal", "azure", "werkzeug", "http.client", "socket", "ssl")

# Packages whose code talks to Entra ID, Graph or Exchange (and so may import NETWORK).
TALKERS = (
    "cbacheck.collect",
    "cbacheck.fixers.handlers",
    "cbacheck.fixers.apply",
    "cbacheck.fixers.verify",
    "cbacheck.sandbox",
)

# Foundation and contract layers import nothing above them.
PURE = (
    "cbacheck.errors",
    "cbacheck.wellknown",
    "cbacheck.profiles",
    "cbacheck.facts",
    "cbacheck.rbacfacts",
    "cbacheck.auditfacts",
    "cbacheck.catalogue",
    "cbacheck.chain",
    "cbacheck.evidence",
    "cbacheck.diagnosis",
    "cbacheck.aadsts",
    "cbacheck.checks",
    "cbacheck.fixers.actions",
    "cbacheck.fixers.planning",
    "cbacheck.fixers.planners",
    "cbacheck.fixers.certificate_planners",
    "cbacheck.fixers.access_planners",
    "cbacheck.fixers.rbac_planners",
    "cbacheck.fixers.profile_planners",
    "cbacheck.report",
)
ABOVE_PURE = (
    "cbacheck.collect",
    "cbacheck.fixers.apply",
    "cbacheck.fixers.handlers",
    "cbacheck.fixers.verify",
    "cbacheck.plugin",
    "cbacheck.commands",
    "cbacheck.cli",
    "cbacheck.sandbox",
)


def _modules() -> Iterator[tuple[str, Path]]:
    for tree, package in TREES.items():
        for path in sorted(tree.rglob("*.py")):
            parts = list(path.relative_to(tree).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([package, *parts]), path


def _imports(name: str, path: Path) -> set[str]:
    """Every module the file imports, function-local imports included, relative ones resolved."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from cbacheck import wellknown` imports cbacheck.wellknown, not all of cbacheck.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


MODULES = dict(_modules())


def test_the_tree_is_where_the_rules_expect_it() -> None:
    assert "cbacheck.facts" in MODULES and "cbacheck.checks" in MODULES
    for prefix in TALKERS + PURE:
        assert any(_within(module, (prefix,)) for module in MODULES), f"{prefix} is named in a rule but does not exist"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _within(m, TALKERS)))
def test_only_the_collectors_fixers_and_sandbox_reach_the_network(module: str) -> None:
    reached = sorted(i for i in _imports(module, MODULES[module]) if _within(i, NETWORK))
    assert not reached, f"{module} imports {reached}; network I/O belongs in {TALKERS}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _within(m, PURE)))
def test_pure_layers_import_no_collector_plugin_or_sandbox(module: str) -> None:
    reached = sorted(i for i in _imports(module, MODULES[module]) if _within(i, ABOVE_PURE))
    assert not reached, f"{module} imports {reached}; checks, facts, planners and reports never reach upwards"


@pytest.mark.parametrize("module", ["cbacheck.facts", "cbacheck.rbacfacts"])
def test_facts_depend_on_nothing_but_errors(module: str) -> None:
    """The fact modules are data: only errors (and each other, for names and annotations)."""
    own = {i.rpartition(".")[0] for i in _imports(module, MODULES[module]) if i.startswith("cbacheck")}
    assert own <= {"cbacheck.errors", "cbacheck.facts", "cbacheck.rbacfacts"}, own


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _within(m, ("cbacheck.sandbox",))))
def test_the_sandbox_imports_only_wellknown_from_the_product(module: str) -> None:
    """The sandbox is the tests' oracle: sharing the product's rules would let both be wrong together."""
    product = {
        i
        for i in _imports(module, MODULES[module])
        if i.startswith("cbacheck") and not _within(i, ("cbacheck.sandbox", "cbacheck.wellknown"))
    }
    assert not product, f"{module} imports {sorted(product)} from the product"


def test_every_test_file_has_a_basename_of_its_own() -> None:
    """The test folders are not packages, so pytest imports each file by its basename: two alike fail collection."""
    tests = Path(__file__).resolve().parents[1]
    seen: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        seen.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}


def test_modules_stay_under_600_lines_and_functions_under_60_with_a_docstring_each() -> None:
    """The size limits the project keeps, so no module or function grows past what one reader holds at once."""
    root = Path(__file__).resolve().parents[2]
    problems: list[str] = []
    for path in sorted([*(root / "cbacheck").rglob("*.py"), *(root / "checks").rglob("*.py")]):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        name = str(path.relative_to(root))
        if source.count("\n") > 600:
            problems.append(f"{name}: {source.count(chr(10))} lines")
        if not ast.get_docstring(tree):
            problems.append(f"{name}: no module docstring")
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in functions:
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > 60:
                problems.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert problems == []
