"""Benchmark of start-up: `cbacheck --version`, `cbacheck run --help` and their yardsticks, median wall per command."""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGETS_S = {"cbacheck --version": 0.1, "cbacheck run --help": 0.2}


def _command(name: str) -> list[str]:
    executable = shutil.which("cbacheck")
    cbacheck = [executable] if executable else [sys.executable, "-m", "cbacheck"]
    table = {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "python -c 'import pytest' (import floor)": [sys.executable, "-c", "import pytest"],
        "cbacheck --version": [*cbacheck, "--version"],
        "cbacheck run --help": [*cbacheck, "run", "--help"],
        # pytest loads the plugin (pytest11 entry point) in every session, cbacheck's or not.
        "import cbacheck.plugin (every pytest session)": [sys.executable, "-c", "import cbacheck.plugin"],
    }
    return table[name]


def measure(command: list[str], repeat: int) -> list[float]:
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="runs per command (median reported)")
    args = parser.parse_args()
    names = [
        "python -c pass (floor)",
        "python -c 'import pytest' (import floor)",
        "cbacheck --version",
        "cbacheck run --help",
        "import cbacheck.plugin (every pytest session)",
    ]
    print(f"{'command':46} {'median s':>9} {'min s':>7} {'target s':>9}   (median of {args.repeat})")
    for name in names:
        walls = measure(_command(name), args.repeat)
        target = TARGETS_S.get(name)
        verdict = "" if target is None else ("  met" if statistics.median(walls) < target else "  NOT met")
        target_text = f"{target:.2f}" if target else "-"
        print(f"{name:46} {statistics.median(walls):9.3f} {min(walls):7.3f} {target_text:>9}{verdict}")


if __name__ == "__main__":
    main()
