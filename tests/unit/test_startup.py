"""Start-up: `--version` and each `--help` import no command they do not run; every command keeps its help line."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cbacheck import cli

HEAVY = ("pytest", "_pytest", "cryptography", "requests", "msal", "azure", "werkzeug", "trustme", "jwt")


def modules_after(argv: list[str]) -> set[str]:
    """The top-level packages and cbacheck modules a fresh interpreter holds after `cbacheck ARGV`."""
    program = (
        "import json, sys\n"
        "from cbacheck import cli\n"
        "try:\n"
        f"    cli.main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "names = {m.split('.')[0] for m in sys.modules} | {m for m in sys.modules if m.startswith('cbacheck.')}\n"
        "sys.stderr.write(json.dumps(sorted(names)))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["run", "--help"], ["audit", "--help"]])
def test_printing_help_or_version_imports_nothing_heavy(argv: list[str]) -> None:
    loaded = modules_after(argv)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert not {
        m
        for m in loaded
        if m.startswith(("cbacheck.sandbox", "cbacheck.commands.run", "cbacheck.collect"))
        if m != "cbacheck.commands.run_options"
    }


def test_version_imports_no_command_module() -> None:
    assert not {m for m in modules_after(["--version"]) if m.startswith(("cbacheck.commands", "cbacheck.config"))}


def test_every_command_lists_the_same_help_line_as_its_module_registers() -> None:
    real = cli.build_parser()
    listed = cli.build_parser("")
    assert help_lines(real) == help_lines(listed) == cli.COMMANDS


def test_only_the_chosen_command_gets_its_options() -> None:
    args = cli.build_parser("run").parse_args(["run", "--tenant", "contoso.onmicrosoft.com"])
    assert args.handler is cli.HANDLERS["run"]
    assert cli.chosen_command(["run", "--tenant", "x"]) == "run"
    assert cli.chosen_command(["--version"]) == ""
    assert cli.chosen_command(["nonsense"]) == ""


def help_lines(parser: argparse.ArgumentParser) -> dict[str, str]:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: str(action.help) for action in subparsers._choices_actions}


def test_a_collection_started_early_hands_over_what_collect_would_raise() -> None:
    from cbacheck.collect import collect_in_background
    from cbacheck.config import Settings
    from cbacheck.errors import CredentialError

    future = collect_in_background(Settings())

    with pytest.raises(CredentialError, match="collect needs tenant and app_id"):
        future.result(timeout=10)


def test_run_starts_collecting_early_only_without_pytest_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    from cbacheck.commands import run

    observers: list[run.RunObserver] = []
    monkeypatch.setattr(run.pytest, "main", lambda args, plugins: observers.append(plugins[0]) or 0)

    run._evaluate({}, [], [], config_file=None, out=sys.stdout)
    run._evaluate({}, ["-k", "cert"], [], config_file=None, out=sys.stdout)

    assert [observer.collect_early for observer in observers] == [True, False]


def test_run_starts_collecting_before_the_other_plugins_configure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from concurrent.futures import Future

    import pytest_html.plugin

    import cbacheck.collect
    from cbacheck.commands import run
    from cbacheck.errors import CredentialError

    order: list[str] = []

    def started(settings: object) -> Future[object]:
        order.append("collection started")
        future: Future[object] = Future()
        future.set_exception(CredentialError("not this test's concern"))
        return future

    configure_html = pytest_html.plugin.pytest_configure

    def html_configured(config: pytest.Config) -> None:
        order.append("pytest-html configured")
        configure_html(config)

    monkeypatch.setattr(cbacheck.collect, "collect_in_background", started)
    monkeypatch.setattr(pytest_html.plugin, "pytest_configure", html_configured)
    options = {"tenant": "contoso.onmicrosoft.com", "app_id": "5e7d1c2b-8a4f-4c3e-9b1d-6f2a0e4c8d11"}

    run.run_checks({**options, "report_dir": tmp_path}, [], [], out=io.StringIO())

    # The settings resolved, the tenant's facts are on their way while pytest-html compiles its template.
    assert order == ["collection started", "pytest-html configured"]


def test_a_session_runs_with_a_higher_collector_threshold_that_is_restored_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    from cbacheck.commands import run

    seen: list[tuple[int, ...]] = []
    monkeypatch.setattr(run.pytest, "main", lambda args, plugins: seen.append(gc.get_threshold()) or 0)
    before = gc.get_threshold()

    run._evaluate({}, ["-k", "cert"], [], config_file=None, out=sys.stdout)

    assert seen == [(run.SESSION_GC_THRESHOLD, *before[1:])]
    assert gc.get_threshold() == before


def test_run_as_the_program_freezes_what_it_made_before_the_exit_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    frozen: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append("frozen"))
    monkeypatch.setitem(cli.HANDLERS, "merge", lambda args: 0)

    monkeypatch.setattr(sys, "argv", ["cbacheck", "merge", "out.json", "in.json"])
    assert cli.main() == 0
    assert frozen == ["frozen"]

    assert cli.main(["merge", "out.json", "in.json"]) == 0  # called with arguments (tests, embedding): nothing frozen
    assert frozen == ["frozen"]
