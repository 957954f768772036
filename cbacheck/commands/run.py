"""`cbacheck run`: run every check (and custom check folders) through pytest with the cbacheck plugin."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import sys
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import pytest

from cbacheck import fixers
from cbacheck.commands.run_options import add_parser as add_parser
from cbacheck.commands.run_options import setting_dest as _dest
from cbacheck.config import Settings, plugin_option_name, role_id, setting_fields
from cbacheck.errors import ExitCode, FixError, FixRefused
from cbacheck.plugin import report_paths
from cbacheck.plugin.state import AppliedFixes, RunState, early_facts_key, fix_opt_ins_key, run_state_key
from cbacheck.report import console

# pytest's exit statuses in cbacheck's terms (errors.ExitCode); 2 with collection errors is handled apart.
PYTEST_EXIT_CODES = {
    pytest.ExitCode.OK: ExitCode.OK,
    pytest.ExitCode.TESTS_FAILED: ExitCode.FAILED,
    pytest.ExitCode.INTERRUPTED: ExitCode.INTERRUPTED,
    pytest.ExitCode.INTERNAL_ERROR: ExitCode.INTERNAL,
    pytest.ExitCode.USAGE_ERROR: ExitCode.USAGE,
    pytest.ExitCode.NO_TESTS_COLLECTED: ExitCode.USAGE,
}

# New container objects before the collector's youngest pass, during a session (Python's default is 700).
SESSION_GC_THRESHOLD = 100_000


def run(args: argparse.Namespace) -> int:
    """Handle `cbacheck run`."""
    options = {spec.name: getattr(args, _dest(spec.name), None) for spec in setting_fields() if spec.metadata["cli"]}
    roles = {name: role_id(name) for name in args.allow_role}
    unknown = [name for name, role in roles.items() if role is None]
    if unknown:
        print(
            f"cbacheck: --allow-role {unknown[0]!r} is neither a role template ID nor a known role name",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    opt_ins = fixers.OptIns(
        allow_roles=frozenset(role for role in roles.values() if role),
        enable_service_principal=args.enable_service_principal,
        create_app=args.create_app,
        allow_role_groups=frozenset(name.lower() for name in args.allow_role_group),
    )
    return run_checks(
        options,
        list(getattr(args, "extra_pytest_args", [])),
        list(args.checks),
        config_file=args.config,
        opt_ins=opt_ins,
    )


class RunObserver:
    """Watches the in-process pytest run so the closing summary can read its results."""

    def __init__(self, opt_ins: fixers.OptIns = fixers.NO_OPT_INS, *, collect_early: bool = False) -> None:
        self.state: RunState | None = None
        self.collection_errors = 0
        self.opt_ins = opt_ins
        self.collect_early = collect_early
        self.verbose = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        # tryfirst: right after the cbacheck plugin's (tryfirst, registered later, so called first), before the
        # other plugins' configure (pytest-html compiles its template), so the collection starts sooner.
        # The reports' plan shows what --fix apply will do with the command line's opt-ins.
        config.stash[fix_opt_ins_key] = self.opt_ins
        self.verbose = config.option.verbose > 0  # `cbacheck run ... -- -v` shows every setting
        # The cbacheck plugin (tryfirst) has resolved the settings: the tenant facts start now, beside
        # pytest's collection; the tenant_facts fixture waits for them. Not when pytest arguments may
        # deselect every check that needs the tenant.
        settings = config.stash[run_state_key].settings if run_state_key in config.stash else None
        if self.collect_early and settings is not None and settings.tenant_configured:
            from cbacheck.collect import collect_in_background

            config.stash[early_facts_key] = collect_in_background(settings)

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
        args.append(f"{plugin_option_name(name)}={value}")
    return args


def run_checks(
    settings_options: Mapping[str, Any],
    extra_args: list[str],
    check_dirs: list[Path],
    *,
    config_file: Path | None = None,
    out: TextIO | None = None,
    opt_ins: fixers.OptIns = fixers.NO_OPT_INS,
) -> int:
    """Run the shipped checks plus `check_dirs` with these settings options; print the closing summary.

    With fix = apply, the plan from this evaluation is applied (after confirmation), verified, and the
    checks run a second time for the "after" reports. Returns an errors.ExitCode value. The settings are
    resolved (and reported when wrong) by the plugin, so `cbacheck run` and `pytest --cba-...` agree.
    """
    out = out or sys.stdout
    for folder in check_dirs:
        if not folder.is_dir():
            print(
                f"cbacheck: --checks {str(folder)!r} is not a folder; give a folder of test_*.py check files",
                file=sys.stderr,
            )
            return ExitCode.USAGE
    code, state = _evaluate(settings_options, extra_args, check_dirs, config_file=config_file, out=out, opt_ins=opt_ins)
    settings = state.settings if state is not None else None
    if state is None or settings is None or settings.fix != "apply" or state.document is None:
        return code
    return _apply_then_reevaluate(
        state, settings_options, extra_args, check_dirs, config_file=config_file, out=out, opt_ins=opt_ins
    )


@contextlib.contextmanager
def _collector_spared() -> Iterator[None]:
    """The garbage collector spares a session's long-lived objects, and is as it was after."""
    # What is loaded by now (cbacheck, pytest and their imports) lives as long as the process: frozen, the
    # collector skips it in the session's many collections (about 20 ms of a run); thawed again after.
    # A session makes few reference cycles but some 50,000 container objects, most of them kept to the end
    # (reports, evidence): at the default threshold of 700 the collector ran about 80 young and 6 middle
    # passes over them (25-40 ms of a run) and freed next to nothing. A higher threshold bounds the cycles
    # left waiting to a few megabytes and leaves the collector on for a longer session. Frozen too before
    # the threshold is lowered again, the session's objects join the oldest generation without a young
    # pass over all of them (50 ms).
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(SESSION_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.freeze()
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _evaluate(
    settings_options: Mapping[str, Any],
    extra_args: list[str],
    check_dirs: list[Path],
    *,
    config_file: Path | None,
    out: TextIO,
    applied: AppliedFixes | None = None,
    opt_ins: fixers.OptIns = fixers.NO_OPT_INS,
) -> tuple[int, RunState | None]:
    """One pytest session over the checks; the exit code and what the plugin gathered."""
    observer = RunObserver(opt_ins, collect_early=not extra_args)
    plugins: list[object] = [observer]
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
            # Its end-of-session gc.collect() passes (70-85 ms) look for warnings no check can raise.
            "-p",
            "no:unraisableexception",
            "--import-mode=importlib",
            # cbacheck itself is imported before pytest starts, so its modules cannot be rewritten;
            # the checks' asserts (which matter) still are.
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
            # Concise: the closing summary below lists each failure with its message; `-- --tb=short`
            # or `-- -v` bring pytest's detail back.
            "-q",
            "-rN",
            "--tb=no",
            *extra_args,
        ]
        if applied is not None:
            plugins.append(applied)
        with _collector_spared():
            status = pytest.main(args, plugins=plugins)
    return _close(status, observer, out), observer.state


def _after_path(path: Path | None) -> str | None:
    return str(path.with_name(f"{path.stem}-after{path.suffix}")) if path is not None else None


def _apply_then_reevaluate(
    before: RunState,
    settings_options: Mapping[str, Any],
    extra_args: list[str],
    check_dirs: list[Path],
    *,
    config_file: Path | None,
    out: TextIO,
    opt_ins: fixers.OptIns,
) -> int:
    """Apply the plan of the first evaluation, wait for it to take effect, then evaluate again."""
    settings = before.settings
    assert settings is not None and before.document is not None
    print("", file=out)
    print("applying fixes (fix mode: apply)", file=out)
    try:
        fix_run = fixers.fix_on_request(
            before.document["requirements"],
            settings,
            before.tenant_facts,
            before.cert_facts,
            interactive=sys.stdin.isatty(),
            ask=input,
            progress=lambda line: print(console.console_safe(line), file=sys.stderr, flush=True),
            opt_ins=opt_ins,
        )
    except FixRefused as err:
        print(console.console_safe(f"cbacheck: {err}"), file=sys.stderr)
        return ExitCode.INTERRUPTED
    except FixError as err:
        print(console.console_safe(f"cbacheck: {err}"), file=sys.stderr)
        return ExitCode.USAGE
    if not fix_run.results:
        print("nothing to apply: no failed requirement has an automated fix", file=out)
        return int(before.document["run"]["exit_code"])
    applied = _report_applied(fix_run, settings, out)
    before_run = before.document["run"]
    applied = dataclasses.replace(
        applied, before_run_id=before_run.get("run_id"), run_id=before_run.get("related", {}).get("after")
    )
    print("", file=out)
    print("checking again after the fixes", file=out)
    after_options = _options_after(before, settings_options, settings, fix_run.settings)
    code, _ = _evaluate(
        after_options, extra_args, check_dirs, config_file=config_file, out=out, applied=applied, opt_ins=opt_ins
    )
    return _not_done_while_switches_remain(fix_run, code, out)


def _report_applied(fix_run: fixers.FixRun, settings: Settings, out: TextIO) -> AppliedFixes:
    """Print each applied action's status and verdict; what the re-evaluation needs to know of them."""
    verdicts = fix_run.verdicts()
    for row in fix_run.applied_rows():
        request_id = f" request-id {row['request_id']}" if row.get("request_id") else ""
        line = f"  {row['action_id']}: {row['status']} -> {verdicts.get(row['action_id'], '')}{request_id}"
        print(console.console_safe(line), file=out)
    pending = {
        requirement: f"{action.id} applied; not yet in effect after {settings.propagation_timeout_s} s"
        for action in fix_run.actions
        if verdicts.get(action.id) == fixers.PENDING_PROPAGATION
        for requirement in action.mends
    }
    return AppliedFixes(rows=fix_run.applied_rows(), pending=pending)


def _options_after(
    before: RunState, settings_options: Mapping[str, Any], settings: Settings, fixed: Settings
) -> dict[str, Any]:
    """The second evaluation's options: plan only, the app and certificate the fixes made, "-after" reports."""
    after_options: dict[str, Any] = {**settings_options, "fix": "plan", "yes": None}
    if fixed.app_id != settings.app_id:
        after_options["app_id"] = fixed.app_id
    if fixed.cert != settings.cert and fixed.cert is not None:
        after_options["cert"] = str(fixed.cert)
    after_options.update(
        html=_after_path(before.html_path), json=_after_path(before.json_path), junit=_after_path(before.junit_path)
    )
    # The pipeline reports of the re-check sit beside the first ones instead of replacing them.
    after_options.update(
        {name: _after_path(getattr(settings, name)) for name in ("sarif", "summary") if getattr(settings, name)}
    )
    if settings.bundle is not None:
        after_options["bundle"] = str(settings.bundle.with_name(f"{settings.bundle.name}-after"))
    return after_options


def _not_done_while_switches_remain(fix_run: fixers.FixRun, code: int, out: TextIO) -> int:
    """The re-check proved the new certificate or app, not the setup the automation still uses: never exit 0 then."""
    switches = fix_run.switches_needed()
    if not switches:
        return code
    print("not done: the automation still uses the old setup; manual step(s) to finish the fix:", file=out)
    for line in switches:
        print(console.console_safe(f"  {line}"), file=out)
    return ExitCode.FAILED if code == ExitCode.OK else code


def _close(status: int | pytest.ExitCode, observer: RunObserver, out: TextIO) -> int:
    state = observer.state
    if observer.collection_errors:
        print(
            f"cbacheck: {observer.collection_errors} check file(s) could not be collected (see the errors above); "
            "nothing was evaluated from them",
            file=sys.stderr,
        )
    if state is not None and state.document is not None:
        # The plugin set the session's status to cbacheck's own decision (run.exit_code), with its reason.
        code = int(state.document["run"]["exit_code"])
        print_summary(state, out, verbose=observer.verbose)
        if state.write_error:
            print(state.write_error, file=sys.stderr)
            code = ExitCode.USAGE
        return code
    if status == pytest.ExitCode.INTERRUPTED and observer.collection_errors:
        return ExitCode.USAGE
    if status == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("cbacheck: no checks were found to run; check --checks and any -k/-m given after --", file=sys.stderr)
        return ExitCode.USAGE
    return PYTEST_EXIT_CODES.get(pytest.ExitCode(int(status)), ExitCode.INTERNAL)


def print_summary(state: RunState, out: TextIO, *, verbose: bool = False) -> None:
    """What failed, the fix plan, where the reports are, then the verdict and the exit code."""
    assert state.document is not None
    reports = report_paths(state)
    print("", file=out)
    for line in console.summary_lines(state.document, state.settings, reports, verbose=verbose):
        print(line, file=out)
