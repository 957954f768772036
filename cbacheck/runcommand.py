"""`cbacheck run`: run every check (and custom check folders) through pytest with the cbacheck plugin."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import pytest

from cbacheck import results
from cbacheck.config import option_name, pytest_option_name, setting_fields
from cbacheck.errors import ExitCode
from cbacheck.plugin import provenance_line
from cbacheck.results import RunState, run_state_key

# pytest's exit statuses in cbacheck's terms (errors.ExitCode); 2 with collection errors is handled apart.
PYTEST_EXIT_CODES = {
    pytest.ExitCode.OK: ExitCode.OK,
    pytest.ExitCode.TESTS_FAILED: ExitCode.FAILED,
    pytest.ExitCode.INTERRUPTED: ExitCode.INTERRUPTED,
    pytest.ExitCode.INTERNAL_ERROR: ExitCode.INTERNAL,
    pytest.ExitCode.USAGE_ERROR: ExitCode.USAGE,
    pytest.ExitCode.NO_TESTS_COLLECTED: ExitCode.USAGE,
}


def _dest(name: str) -> str:
    return "setting_" + name


def add_run_parser(subparsers: Any) -> None:
    """Register `cbacheck run`; every option comes from the settings table (secrets have none)."""
    parser = subparsers.add_parser(
        "run",
        help="check the CBA chain and write HTML, JSON and JUnit reports",
        description=(
            "Run every requirement check and write the reports. Each option can also come from the "
            "environment (CBACHECK_NAME) or a config file (cbacheck.toml or [tool.cbacheck] in "
            "pyproject.toml); secrets such as the PFX password come only from the environment or a file. "
            "Arguments after a bare -- go to pytest unchanged."
        ),
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for spec in setting_fields():
        if not spec.metadata["cli"]:
            continue
        group_name = spec.metadata["group"]
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(f"{group_name} settings")
        help_text = spec.metadata["help"]
        if spec.metadata["choices"]:
            help_text += f" (one of: {', '.join(spec.metadata['choices'])})"
        if spec.metadata["kind"] == "bool":
            groups[group_name].add_argument(
                option_name(spec.name), dest=_dest(spec.name), action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            groups[group_name].add_argument(
                option_name(spec.name), dest=_dest(spec.name), metavar=spec.name.upper(), help=help_text
            )
    parser.add_argument("--config", type=Path, metavar="PATH", help="config file (TOML) to read settings from")
    parser.add_argument(
        "--checks",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of custom checks to run as well (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    """Handle `cbacheck run`."""
    options = {spec.name: getattr(args, _dest(spec.name), None) for spec in setting_fields() if spec.metadata["cli"]}
    return run_checks(
        options,
        list(getattr(args, "extra_pytest_args", [])),
        list(args.checks),
        config_file=args.config,
    )


class RunObserver:
    """Watches the in-process pytest run so the closing summary can read its results."""

    def __init__(self) -> None:
        self.state: RunState | None = None
        self.collection_errors = 0

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors += 1

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.state = session.config.stash.get(run_state_key, None)


def _option_args(settings_options: Mapping[str, Any]) -> list[str]:
    """`--cba-NAME=value` for every option given; bools as true/false."""
    cli_settings = {spec.name for spec in setting_fields() if spec.metadata["cli"]}
    unknown = sorted(set(settings_options) - cli_settings)
    if unknown:
        raise ValueError(f"not settings that can be given as options: {', '.join(unknown)}")
    args = []
    for name, value in settings_options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        args.append(f"{pytest_option_name(name)}={value}")
    return args


def run_checks(
    settings_options: Mapping[str, Any],
    extra_args: list[str],
    check_dirs: list[Path],
    *,
    config_file: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the shipped checks plus `check_dirs` with these settings options; print the closing summary.

    Returns an errors.ExitCode value. The settings are resolved (and reported when wrong) by the plugin,
    so `cbacheck run` and plain `pytest --cba-...` behave the same.
    """
    out = out or sys.stdout
    for folder in check_dirs:
        if not folder.is_dir():
            print(
                f"cbacheck: --checks {str(folder)!r} is not a folder; give a folder of test_*.py check files",
                file=sys.stderr,
            )
            return ExitCode.USAGE
    observer = RunObserver()
    with resources.as_file(resources.files("cbacheck.checks")) as checks_root:
        args = [
            str(checks_root),
            *(str(folder.resolve()) for folder in check_dirs),
            "--cba-run",
            *_option_args(settings_options),
            *([f"--cba-config={config_file}"] if config_file else []),
            # The run must not depend on the folder it is started from: no ini file, rootdir or
            # cache of the user's project, and no conftest.py above the shipped checks.
            "-c",
            os.devnull,
            f"--rootdir={checks_root}",
            f"--confcutdir={checks_root}",
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            # Concise: the closing summary below lists each failure with its message; `-- --tb=short`
            # or `-- -v` bring pytest's detail back.
            "-q",
            "-rN",
            "--tb=no",
            *extra_args,
        ]
        status = pytest.main(args, plugins=[observer])
    return _close(status, observer, out)


def _close(status: int | pytest.ExitCode, observer: RunObserver, out: TextIO) -> int:
    if status == pytest.ExitCode.INTERRUPTED and observer.collection_errors:
        print(
            f"cbacheck: {observer.collection_errors} check file(s) could not be collected (see the errors above); "
            "nothing was evaluated from them",
            file=sys.stderr,
        )
        code = ExitCode.USAGE
    elif status == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("cbacheck: no checks were found to run; check --checks and any -k/-m given after --", file=sys.stderr)
        code = ExitCode.USAGE
    else:
        code = PYTEST_EXIT_CODES.get(pytest.ExitCode(int(status)), ExitCode.INTERNAL)
    state = observer.state
    if state is not None and state.document is not None:
        print_summary(state, out)
    return code


def print_summary(state: RunState, out: TextIO) -> None:
    """Verdict, first broken link, what failed, and where the reports are."""
    document = state.document
    assert document is not None
    run = document["run"]
    counts = ", ".join(f"{n} {outcome}" for outcome, n in document["summary"]["counts"].items() if n)
    print("", file=out)
    if run["sandbox"]:
        print("SANDBOX run: the tenant is cbacheck's local sandbox, not a real tenant", file=out)
    if state.settings is not None:
        print(provenance_line(state.settings), file=out)
    print(f"cbacheck verdict: {run['verdict'].upper()} ({counts or 'no requirements ran'})", file=out)
    if document["summary"]["first_broken"] is not None:
        print(f"first broken: {results.describe_first_broken(document['summary']['first_broken'])}", file=out)
    broken = [r for r in document["requirements"] if r["outcome"] in ("failed", "error")]
    if broken:
        print("failed or not verified:", file=out)
        for record in broken:
            follows = f" [follows from {record['follows_from']}]" if record["follows_from"] else ""
            print(
                f"  {record['id']} ({record['severity']}) {record['outcome']}: {record['message']}{follows}", file=out
            )
    skipped: dict[str, int] = {}
    for record in document["requirements"]:
        if record["outcome"] == "skipped":
            skipped[record["message"]] = skipped.get(record["message"], 0) + 1
    for reason, number in skipped.items():
        print(f"skipped: {number} ({reason})", file=out)
    planned = len(document["fixes"]["plan"])
    if planned:
        print(f"fix actions planned: {planned} (fix mode: {document['fixes']['mode']})", file=out)
    print("reports:", file=out)
    for label, path in (("HTML", state.html_path), ("JSON", state.json_path), ("JUnit", state.junit_path)):
        if path is not None:
            print(f"  {label:<5} {path}", file=out)
