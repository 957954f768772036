"""The built wheel holds every subpackage, check module and data file (the package list is explicit)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Source folders and the package path each one ships under (pyproject.toml's package-dir).
SHIPPED_TREES = {
    "cbacheck": "cbacheck",
    "checks": "cbacheck/checks",
    "fixtures/scenarios": "cbacheck/scenarios",
}
DATA_SUFFIXES = {".json", ".typed"}


def _tracked_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in listing.stdout.splitlines() if (ROOT / line).is_file()]


def _expected_members(files: list[str]) -> set[str]:
    """Every module and data file of the shipped trees, as its path inside the wheel."""
    expected = set()
    for name in files:
        for tree, package_path in SHIPPED_TREES.items():
            if not name.startswith(tree + "/"):
                continue
            relative = name[len(tree) + 1 :]
            if Path(name).suffix == ".py" or Path(name).suffix in DATA_SUFFIXES:
                expected.add(f"{package_path}/{relative}")
    return expected


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built from a copy of the tracked tree, so the checkout gets no build/ or egg-info."""
    source = tmp_path_factory.mktemp("source")
    for name in _tracked_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("cbacheck-*.whl")
    return zipfile.ZipFile(built)


def test_every_module_and_data_file_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    members = set(wheel.namelist())
    missing = sorted(_expected_members(_tracked_files()) - members)
    assert not missing, f"the wheel lacks {missing}: add the subpackage to [tool.setuptools] in pyproject.toml"


def test_the_wheel_registers_the_command_and_the_pytest_plugin(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "cbacheck = cbacheck.cli:main" in text
    assert "[pytest11]" in text and "cbacheck = cbacheck.plugin" in text
