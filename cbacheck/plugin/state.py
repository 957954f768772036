"""What the plugin keeps per session: the run state, the applied fixes of a re-run, the stash keys and the settings."""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cbacheck import config as settings_table
from cbacheck.chain import UpstreamFailure
from cbacheck.config import Settings, resolve, setting_fields
from cbacheck.errors import ConfigError
from cbacheck.evidence import Evidence
from cbacheck.facts import CertFacts, TenantFacts
from cbacheck.report.compare import Previous, load_previous
from cbacheck.report.exceptions import ExceptionsFile, load_exceptions
from cbacheck.report.gate import selection_problems

if TYPE_CHECKING:
    from cbacheck.fixers import OptIns
    from cbacheck.plugin.marker import RequirementMark


@dataclass
class RunState:
    """What the plugin gathers during one session; kept in `config.stash[run_state_key]`."""

    active: bool = False
    settings: Settings | None = None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    html_path: Path | None = None
    json_path: Path | None = None
    junit_path: Path | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # nodeid -> requirement record
    durations: dict[str, float] = field(default_factory=dict)
    collection_errors: list[dict[str, str]] = field(default_factory=list)
    deselected: dict[str, None] = field(default_factory=dict)  # requirement IDs dropped by -k, -m, --deselect
    planned: dict[str, None] = field(default_factory=dict)  # requirement IDs of the items pytest will run
    other_failures: list[str] = field(default_factory=list)  # node IDs of failed tests that prove no requirement
    exceptions: ExceptionsFile | None = None  # the accepted risks (--exceptions)
    previous: Previous | None = None  # the earlier results to compare with (--compare)
    tenant_facts: TenantFacts | None = None
    cert_facts: CertFacts | None = None
    document: dict[str, Any] | None = None
    write_error: str | None = None  # why the JSON results could not be written, for the closing line
    extra_reports: dict[str, Path] = field(default_factory=dict)  # SARIF, summary, bundle manifest, once written


# `--fix apply` re-evaluates after applying; this object, passed to pytest as a plugin, tells that second
# run what was done. eq=False keeps it hashable, as pluggy needs of a plugin.
@dataclass(frozen=True, eq=False)
class AppliedFixes:
    """The actions an apply made before this evaluation, and the requirements still waiting on propagation."""

    rows: list[dict[str, Any]]
    pending: dict[str, str]  # requirement ID -> what it waits for and how long cbacheck waited
    before_run_id: str | None = None  # the evaluation whose plan was applied: the reports name each other
    run_id: str | None = None  # the run id that evaluation announced for this re-check


run_state_key = pytest.StashKey[RunState]()
requirement_key: pytest.StashKey[RequirementMark] = pytest.StashKey()
evidence_key = pytest.StashKey[Evidence]()
deferred_failure_key = pytest.StashKey[UpstreamFailure]()
claimed_ids_key = pytest.StashKey[dict[str, str]]()
# The writes `cbacheck run`'s command line allowed beyond the default plan (fixers.OptIns).
fix_opt_ins_key: pytest.StashKey[OptIns] = pytest.StashKey()
# The tenant facts `cbacheck run` started collecting when the settings were resolved (collect_in_background).
early_facts_key: pytest.StashKey[Future[TenantFacts]] = pytest.StashKey()


def state_of(config: pytest.Config) -> RunState:
    """The session's run state, created on first use."""
    if run_state_key not in config.stash:
        config.stash[run_state_key] = RunState()
    return config.stash[run_state_key]


def applied_fixes(config: pytest.Config) -> AppliedFixes | None:
    """What `--fix apply` did before this evaluation, when this is the run after it."""
    return next((plugin for plugin in config.pluginmanager.get_plugins() if isinstance(plugin, AppliedFixes)), None)


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")  # an xdist worker: the controller writes the reports


def evidence_of(node: pytest.Item) -> Evidence:
    """The evidence recorder of one check, created on first use."""
    if evidence_key not in node.stash:
        mark = node.stash.get(requirement_key, None)
        node.stash[evidence_key] = Evidence(mark.id if mark else "")
    return node.stash[evidence_key]


# --- settings -----------------------------------------------------------------------------------


def option_dest(name: str) -> str:
    return "cba_" + name


def option_values(config: pytest.Config) -> dict[str, Any]:
    """The --cba-NAME values given on the command line (None where not given)."""
    return {spec.name: config.getoption(option_dest(spec.name)) for spec in setting_fields() if spec.metadata["cli"]}


def _resolve(config: pytest.Config) -> Settings:
    from cbacheck import certs  # cryptography and requests load only in sessions that resolve settings
    from cbacheck.collect.exchange import require_read_only_cmdlet

    config_file = config.getoption("cba_config")
    invocation_dir = config.invocation_params.dir
    try:
        settings = resolve(
            option_values(config),
            None,
            invocation_dir,
            config_file=invocation_dir / config_file if config_file else None,
        )
        # Input mistakes stop the run before anything is evaluated, so they can never lead to a plan
        # that writes to the tenant (a wrong password is not a reason to rotate a certificate).
        certs.preflight(settings)
        require_read_only_cmdlet(settings)
        _load_gate_inputs(state_of(config), settings)
    except ConfigError as err:
        # One UsageError: pytest prints each problem as its own ERROR: line and exits 4.
        raise pytest.UsageError(*(f"cbacheck: {problem}" for problem in err.problems)) from None
    if config.getoption("cba_run"):
        return settings  # `cbacheck run --NAME` options: the sources already name them right
    # Under plain pytest the user typed --cba-NAME, so the provenance says so.
    renamed = {
        name: source.replace(
            f"option {settings_table.option_name(name)}", f"option {settings_table.plugin_option_name(name)}"
        )
        for name, source in settings.sources.items()
    }
    return dataclasses.replace(settings, sources=renamed)


def _load_gate_inputs(state: RunState, settings: Settings) -> None:
    """The selection checked, the exceptions file and the earlier results read; every problem in one ConfigError."""
    problems = selection_problems(settings)
    try:
        state.exceptions = load_exceptions(settings)
    except ConfigError as err:
        problems += err.problems
    try:
        state.previous = load_previous(settings)
    except ConfigError as err:
        problems += err.problems
    if problems:
        raise ConfigError(problems)


def settings_of(config: pytest.Config) -> Settings:
    """The session's settings, resolved on first use."""
    state = state_of(config)
    if state.settings is None:
        state.settings = _resolve(config)
    return state.settings


@cache
def _secret_setting_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in setting_fields() if spec.metadata["kind"] == "secret")


def secrets_of(config: pytest.Config) -> list[str]:
    """The secret settings' values (the PFX password), to keep out of every output; asked for by every check."""
    settings = state_of(config).settings
    if settings is None:
        return []
    values = (getattr(settings, name) for name in _secret_setting_names())
    return [value for value in values if value]
