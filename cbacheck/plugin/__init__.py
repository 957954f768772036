"""The cbacheck pytest plugin: options, configuration, activation, check order and the end of the session."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cbacheck import catalogue
from cbacheck import config as settings_table
from cbacheck.config import Settings, setting_fields
from cbacheck.errors import ExitCode
from cbacheck.evidence import redacted
from cbacheck.plugin import fixtures, marker, outcome
from cbacheck.plugin.marker import MARKER
from cbacheck.plugin.state import (
    RunState,
    applied_fixes,
    claimed_ids_key,
    fix_opt_ins_key,
    is_worker,
    option_dest,
    option_values,
    requirement_key,
    secrets_of,
    settings_of,
    state_of,
)
from cbacheck.report import compare, console, document, gate
from cbacheck.report.bundle import MANIFEST, PipelineReports
from cbacheck.report.html import HtmlHooks

GROUP = "cbacheck"
# The parts of the plugin that are plugins of their own; registered with this one, so `-p cbacheck.plugin`
# (with PYTEST_DISABLE_PLUGIN_AUTOLOAD) brings the whole plugin and an install needs only one entry point.
PARTS = {"cbacheck.plugin.marker": marker, "cbacheck.plugin.outcome": outcome, "cbacheck.plugin.fixtures": fixtures}

__all__ = ["provenance_line", "settings_of"]
provenance_line = console.provenance_line  # kept at its old path for integrators


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "cbacheck: prove an Exchange Online app-only CBA setup")
    for spec in setting_fields():
        if not spec.metadata["cli"]:
            continue  # secrets (and settings only cbacheck itself sets) never become options
        help_text = spec.metadata["help"]
        if spec.metadata["choices"]:
            help_text += f" (one of: {', '.join(spec.metadata['choices'])})"
        extra: dict[str, Any] = {}
        if spec.metadata["kind"] == "bool":
            # A bare --cba-yes means true; --cba-batching=false switches a default-true setting off.
            extra = {"nargs": "?", "const": "true", "metavar": "BOOL"}
        else:
            extra = {"metavar": spec.name.upper()}
        group.addoption(
            settings_table.plugin_option_name(spec.name),
            dest=option_dest(spec.name),
            default=None,
            help=help_text,
            **extra,
        )
    group.addoption(
        "--cba-config", dest="cba_config", default=None, metavar="PATH", help="trusted TOML config file (any setting)"
    )
    group.addoption(
        "--cba-run",
        dest="cba_run",
        action="store_true",
        default=False,
        help="Evaluate and report even without other --cba-* options (what `cbacheck run` passes)",
    )


def _asked_by_options(config: pytest.Config) -> bool:
    return (
        bool(config.getoption("cba_run"))
        or config.getoption("cba_config") is not None
        or any(value is not None for value in option_values(config).values())
    )


def _choose_report_paths(config: pytest.Config, state: RunState, settings: Settings) -> None:
    """Point pytest-html and JUnit at the report folder unless the user named their own files.

    Raises UsageError naming the setting when a report cannot be written where it would go.
    """
    invocation_dir = config.invocation_params.dir
    stamp = state.started.strftime("%Y%m%dT%H%M%SZ")

    def chosen(name: str, suffix: str) -> tuple[Path, str]:
        explicit: Path | None = getattr(settings, name)
        if explicit is not None:
            return invocation_dir / explicit, _named_by(name, settings)
        return invocation_dir / settings.report_dir / f"cbacheck-{stamp}{suffix}", _named_by("report_dir", settings)

    wanted = {"json": chosen("json", ".json")}
    if config.pluginmanager.hasplugin("html"):
        if getattr(config.option, "htmlpath", None):
            wanted["html"] = (invocation_dir / config.option.htmlpath, "--html")
        else:
            wanted["html"] = chosen("html", ".html")
            config.option.htmlpath = str(wanted["html"][0])
            config.option.self_contained_html = True  # one file to archive or attach, no assets/ folder
    if getattr(config.option, "xmlpath", None):
        wanted["junit"] = (invocation_dir / config.option.xmlpath, "--junitxml")
    else:
        wanted["junit"] = chosen("junit", ".xml")
        config.option.xmlpath = str(wanted["junit"][0])
    for name in ("sarif", "summary", "bundle"):  # written only when asked for
        explicit: Path | None = getattr(settings, name)
        if explicit is not None:
            target = invocation_dir / explicit / MANIFEST if name == "bundle" else invocation_dir / explicit
            wanted[name] = (target, _named_by(name, settings))
    state.json_path = wanted["json"][0]
    state.html_path = wanted["html"][0] if "html" in wanted else None
    state.junit_path = wanted["junit"][0]
    problems = [problem for path, named_by in wanted.values() if (problem := report_path_problem(path, named_by))]
    if problems:
        raise pytest.UsageError(*dict.fromkeys(f"cbacheck: {problem}" for problem in problems))


def _named_by(name: str, settings: Settings) -> str:
    """The setting a report path comes from, as a problem names it: `json (option --json)`."""
    source = settings.source(name)
    return name if source == "default" else f"{name} ({source})"


def report_path_problem(path: Path, named_by: str) -> str | None:
    """Why a report cannot be written at `path` (its folder created if need be); None when it can.

    An existing path must be a regular file: the report replaces it by renaming a new file over it,
    which would replace a device, a symlink or a FIFO just as well.
    """
    for candidate, what in ((path.parent, "report folder"), (path, "report path")):
        try:
            str(candidate).encode("utf-8")
        except UnicodeEncodeError:
            return f"{named_by}: {what} {str(candidate)!r} is not valid UTF-8; name the reports in UTF-8"
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            kind = "a symlink" if path.is_symlink() else "a folder" if path.is_dir() else "not a regular file"
            return f"{named_by}: report path {str(path)!r} is {kind}; name a new file or a regular file to replace"
        if path.parent.exists() and not path.parent.is_dir():
            return f"{named_by}: report folder {str(path.parent)!r} is a file, not a folder"
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"{named_by}: report folder {str(path.parent)!r} cannot be created: {err.strerror or err}"
    return None


def _activate(config: pytest.Config) -> None:
    """Resolve the settings and switch reporting on; raises UsageError listing every settings problem."""
    state = state_of(config)
    if state.active:
        return
    settings = settings_of(config)
    state.active = True
    if not is_worker(config):
        _choose_report_paths(config, state, settings)
        if state.html_path is not None:
            applied = applied_fixes(config)
            hooks = HtmlHooks(settings, applied.pending if applied else None, lambda: state.document)
            config.pluginmanager.register(hooks, "cbacheck-html")
        outputs = PipelineReports(state, config.invocation_params.dir)
        config.pluginmanager.register(outputs, "cbacheck-pipeline-reports")
    _add_metadata(config, settings)


def _start_reports_late(session: pytest.Session, html_wanted: bool, junit_wanted: bool) -> None:
    """Start the HTML and JUnit reporters after collection, for sessions activated by their markers.

    Both reporters normally start in pytest_configure; a plain `pytest my_checks/` only turns out to
    be a cbacheck run once its items are collected, so their configure and sessionstart are run now.
    """
    config = session.config
    html_module = config.pluginmanager.get_plugin("html")
    if html_wanted and html_module is not None:
        before = set(config.pluginmanager.get_plugins())
        html_module.pytest_configure(config)
        for plugin in set(config.pluginmanager.get_plugins()) - before:
            if hasattr(plugin, "pytest_sessionstart"):
                plugin.pytest_sessionstart(session)
    junit_module = config.pluginmanager.get_plugin("junitxml")
    if junit_wanted and junit_module is not None:
        junit_module.pytest_configure(config)
        xml = config.stash.get(junit_module.xml_key, None)
        if xml is not None:
            xml.pytest_sessionstart()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: the report paths must be set before pytest-html and junitxml read them in their configure.
    config.addinivalue_line("markers", MARKER)
    config.stash[claimed_ids_key] = {}
    state_of(config)
    for name, part in PARTS.items():
        if not config.pluginmanager.is_registered(part):
            config.pluginmanager.register(part, name)
    config.pluginmanager.register(SessionHooks(config), "cbacheck-session")
    if _asked_by_options(config):
        _activate(config)


@pytest.hookimpl(optionalhook=True)
def pytest_metadata(metadata: dict[str, Any], config: pytest.Config) -> None:
    if _asked_by_options(config):
        _activate(config)  # pytest-metadata may configure before this plugin does
    state = state_of(config)
    if state.active and state.settings is not None:
        metadata.update(_settings_metadata(state.settings))


def _settings_metadata(settings: Settings) -> dict[str, str]:
    return {f"cbacheck {name}": text for name, text in console.shown_settings(settings)}


def _add_metadata(config: pytest.Config, settings: Settings) -> None:
    from pytest_metadata.plugin import metadata_key  # type: ignore[import-untyped]  # pytest-html requires it

    metadata = config.stash.get(metadata_key, None)
    if metadata is not None:
        metadata.update(_settings_metadata(settings))


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = state_of(config)
    if not state.active or state.settings is None:
        return []
    lines = console.header_lines(state.settings, verbose=config.option.verbose > 0)
    if state.settings.sandbox:
        lines.insert(0, "cbacheck: SANDBOX run: the tenant is cbacheck's local sandbox, not a real tenant")
    return lines


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # trylast: -k and -m deselection have run, so only the checks that will run decide activation.
    state = state_of(config)
    marked = [item for item in items if requirement_key in item.stash]
    if not marked and not state.active:
        return
    if not state.active:
        html_free = not getattr(config.option, "htmlpath", None)
        junit_free = not getattr(config.option, "xmlpath", None)
        _activate(config)
        if not is_worker(config):
            _start_reports_late(session, html_free, junit_free)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and state.settings is not None:
            for line in console.header_lines(state.settings, verbose=config.option.verbose > 0):
                reporter.write_line(line)

    _mark_not_selected(marked, state)

    def chain_position(item: pytest.Item) -> tuple[int, str]:
        mark = item.stash.get(requirement_key, None)
        return catalogue.chain_order(mark.id) if mark else (100, "")

    # Running in chain order lets a downstream result name the upstream failure that already happened.
    items.sort(key=chain_position)


def _mark_not_selected(marked: list[pytest.Item], state: RunState) -> None:
    """Checks --select / --skip leave out are skipped as 'not selected' (kept in every report); the rest are planned."""
    for item in marked:
        mark = item.stash[requirement_key]
        state.planned[mark.id] = None
        reason = gate.not_selected_reason(mark.id, state.settings) if state.settings is not None else None
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


# --- end of the session: results file and summaries ---------------------------------------------


def _session_override(exitstatus: int | pytest.ExitCode, state: RunState) -> int | None:
    """cbacheck's exit code when pytest's session did not run to its end; None when the gate decides."""
    status = int(exitstatus)
    if status == pytest.ExitCode.INTERRUPTED and not state.collection_errors:
        return ExitCode.INTERRUPTED  # Ctrl-C or pytest's own stop
    if status == pytest.ExitCode.INTERNAL_ERROR:
        return ExitCode.INTERNAL
    if status == pytest.ExitCode.USAGE_ERROR:
        return ExitCode.USAGE
    if state.other_failures:
        return ExitCode.FAILED  # a test of the same session that proves no requirement failed: never exit 0
    return None


def _comparison(state: RunState) -> Callable[[list[dict[str, Any]]], dict[str, Any]] | None:
    previous = state.previous
    if previous is None:
        return None
    return lambda requirements: compare.mark_changes(requirements, previous)


def plan_fixes(config: pytest.Config, state: RunState) -> list[dict[str, Any]]:
    """The fixers' plan for this run's results, with the command line's opt-ins (the report layer only shows it)."""
    from cbacheck import fixers  # the planners load only for a session that reports

    if state.settings is None:
        return []
    requirements = document.chain_sorted(state.records.values())
    opt_ins = config.stash.get(fix_opt_ins_key, fixers.NO_OPT_INS)
    plan: list[dict[str, Any]] = fixers.plan_from_results(
        requirements, state.settings, state.tenant_facts, state.cert_facts, opt_ins
    )
    return plan


def pytest_sessionfinish(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
    # Runs before pytest-html's trylast sessionfinish, so its summary hook can use the document.
    config = session.config
    state = state_of(config)
    if not state.active or is_worker(config):
        return
    evaluated = {record["id"] for record in state.records.values()}
    # Deselected by pytest (-k, -m, --deselect) or never reached (-x, --maxfail): not evaluated, never a pass.
    not_evaluated = sorted({*state.deselected, *state.planned} - evaluated, key=catalogue.chain_order)
    applied = applied_fixes(config)
    built = document.build_document(
        state.settings or Settings(),
        started=state.started,
        finished=datetime.now(UTC),
        exit_code=_session_override(exitstatus, state),
        records=state.records,
        durations=state.durations,
        collection_errors=state.collection_errors,
        not_evaluated=not_evaluated,
        tenant_facts=state.tenant_facts,
        plan=plan_fixes(session.config, state),
        applied=applied.rows if applied else None,
        pending=applied.pending if applied else None,
        run_id=applied.run_id if applied else None,
        related_runs={"before": applied.before_run_id} if applied and applied.before_run_id else None,
        exceptions=state.exceptions.as_dict() if state.exceptions else None,
        comparison=_comparison(state),
    )
    built = document.redacted_document(built, secrets_of(config))
    state.document = built
    # cbacheck's decision, not pytest's status: plain pytest and `cbacheck run` exit alike (docs/reports.md).
    session.exitstatus = built["run"]["exit_code"]
    if state.json_path is not None:
        try:
            document.write_atomic(state.json_path, built)
        except OSError as err:
            # A full disk or a path swapped since the start: one line naming the setting, and a usage error.
            state.write_error = (
                f"cbacheck: the JSON results {str(state.json_path)!r} cannot be written: {err.strerror or err}"
            )
            session.exitstatus = ExitCode.USAGE


def report_paths(state: RunState) -> dict[str, Path | None]:
    """The reports written, for the closing summary (not the JSON results when they could not be written)."""
    written = {"HTML": state.html_path, "JSON": None if state.write_error else state.json_path}
    return {**written, "JUnit": state.junit_path, **state.extra_reports}


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = state_of(config)
    if state.document is None or config.getoption("cba_run"):
        return  # `cbacheck run` prints the same summary itself, after pytest has finished
    if state.write_error:
        terminalreporter.write_line(state.write_error, red=True)
    terminalreporter.write_sep("-", "cbacheck")
    # No provenance line: pytest's header already shows it.
    for line in console.summary_lines(state.document, None, report_paths(state)):
        terminalreporter.write_line(line)


class SessionHooks:
    """Hooks whose arguments carry no config: one instance per session config, registered in pytest_configure."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            message = redacted(str(report.longrepr), secrets_of(self.config))
            state_of(self.config).collection_errors.append({"nodeid": report.nodeid, "message": message})

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        # A requirement dropped from the run must not turn a FAIL into a PASS by its absence.
        state = state_of(self.config)
        for item in items:
            mark = item.stash.get(requirement_key, None)
            if mark is not None:
                state.deselected[mark.id] = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        state = state_of(self.config)
        if not state.active:
            return
        state.durations[report.nodeid] = state.durations.get(report.nodeid, 0.0) + report.duration
        record = getattr(report, "cba", None)
        if isinstance(record, dict):
            state.records[report.nodeid] = record
        elif report.failed:
            state.other_failures.append(report.nodeid)
