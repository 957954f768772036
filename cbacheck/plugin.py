"""The cbacheck pytest plugin: options, the requirement marker, fact fixtures, outcomes, evidence and reports."""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cbacheck import catalogue, certs, results
from cbacheck import config as settings_table
from cbacheck.chain import UpstreamFailure
from cbacheck.collect.exchange import require_read_only_cmdlet
from cbacheck.config import Settings, resolve, setting_fields
from cbacheck.errors import CbaCheckError, CertificateError, ConfigError
from cbacheck.evidence import Evidence, redacted, render_html
from cbacheck.facts import (
    NOT_CONFIGURED,
    AppRegistration,
    AppRoleAssignment,
    CertFacts,
    DirectoryRoleAssignment,
    ExchangeProbe,
    FactUnavailable,
    Organization,
    ServicePrincipal,
    Source,
    TenantFacts,
    TokenAttempt,
    Unavailable,
)
from cbacheck.results import NO_CERTIFICATE, RunState, run_state_key

MARKER = "requirement(id, *, severity, fix='manual'): the cbacheck requirement this check proves"
MARKER_SIGNATURE = "requirement(id, *, severity, fix='manual')"
# Always shown in the provenance line; every other setting only when it is not the default.
HEADLINE_SETTINGS = ("tenant", "app_id", "cert", "cloud", "fix")
GROUP = "cbacheck"


@dataclass(frozen=True)
class RequirementMark:
    """A check's validated marker joined with its catalogue entry (or its docstring, for custom checks)."""

    id: str
    title: str
    severity: str
    fix: str
    link: int | None
    remediation: str
    reference: str


class MarkerError(Exception):
    """A requirement marker that cannot be accepted; its text becomes a collection error."""


requirement_key = pytest.StashKey[RequirementMark]()
evidence_key = pytest.StashKey[Evidence]()
deferred_failure_key = pytest.StashKey[UpstreamFailure]()
claimed_ids_key = pytest.StashKey[dict[str, str]]()


def requirement(req_id: str, *, severity: str, fix: str = "manual") -> tuple[str, str, str]:
    """The marker's signature: its arguments are bound through this function, so a wrong call is a TypeError."""
    return req_id, severity, fix


# --- options and settings -----------------------------------------------------------------------


def _dest(name: str) -> str:
    return "cba_" + name


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
            settings_table.plugin_option_name(spec.name), dest=_dest(spec.name), default=None, help=help_text, **extra
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


def _option_values(config: pytest.Config) -> dict[str, Any]:
    return {spec.name: config.getoption(_dest(spec.name)) for spec in setting_fields() if spec.metadata["cli"]}


def _asked_by_options(config: pytest.Config) -> bool:
    return (
        bool(config.getoption("cba_run"))
        or config.getoption("cba_config") is not None
        or any(value is not None for value in _option_values(config).values())
    )


def _state(config: pytest.Config) -> RunState:
    if run_state_key not in config.stash:
        config.stash[run_state_key] = RunState()
    return config.stash[run_state_key]


def _resolve(config: pytest.Config) -> Settings:
    config_file = config.getoption("cba_config")
    invocation_dir = config.invocation_params.dir
    try:
        settings = resolve(
            _option_values(config),
            None,
            invocation_dir,
            config_file=invocation_dir / config_file if config_file else None,
        )
        certs.preflight(settings)
        require_read_only_cmdlet(settings)
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


def settings_of(config: pytest.Config) -> Settings:
    """The session's settings, resolved on first use."""
    state = _state(config)
    if state.settings is None:
        state.settings = _resolve(config)
    return state.settings


def _secrets(config: pytest.Config) -> list[str]:
    settings = _state(config).settings
    if settings is None:
        return []
    values = (getattr(settings, spec.name) for spec in setting_fields() if spec.metadata["kind"] == "secret")
    return [value for value in values if value]


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")  # an xdist worker: the controller writes the reports


def _choose_report_paths(config: pytest.Config, state: RunState, settings: Settings) -> None:
    """Point pytest-html and JUnit at the report folder unless the user named their own files."""
    invocation_dir = config.invocation_params.dir
    stamp = state.started.strftime("%Y%m%dT%H%M%SZ")
    folder = invocation_dir / settings.report_dir

    def chosen(explicit: Path | None, suffix: str) -> Path:
        return invocation_dir / explicit if explicit is not None else folder / f"cbacheck-{stamp}{suffix}"

    state.json_path = chosen(settings.json, ".json")
    if config.pluginmanager.hasplugin("html"):
        if getattr(config.option, "htmlpath", None):
            state.html_path = invocation_dir / config.option.htmlpath
        else:
            state.html_path = chosen(settings.html, ".html")
            config.option.htmlpath = str(state.html_path)
            config.option.self_contained_html = True  # one file to archive or attach, no assets/ folder
    if getattr(config.option, "xmlpath", None):
        state.junit_path = invocation_dir / config.option.xmlpath
    else:
        state.junit_path = chosen(settings.junit, ".xml")
        config.option.xmlpath = str(state.junit_path)
    for path in (state.json_path, state.html_path, state.junit_path):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)


def _activate(config: pytest.Config) -> None:
    """Resolve the settings and switch reporting on; raises UsageError listing every settings problem."""
    state = _state(config)
    if state.active:
        return
    settings = settings_of(config)
    state.active = True
    if not _is_worker(config):
        _choose_report_paths(config, state, settings)
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
    _state(config)
    config.pluginmanager.register(SessionHooks(config), "cbacheck-session")
    if _asked_by_options(config):
        _activate(config)


@pytest.hookimpl(optionalhook=True)
def pytest_metadata(metadata: dict[str, Any], config: pytest.Config) -> None:
    if _asked_by_options(config):
        _activate(config)  # pytest-metadata may configure before this plugin does
    state = _state(config)
    if state.active and state.settings is not None:
        metadata.update(_settings_metadata(state.settings))


def _settings_metadata(settings: Settings) -> dict[str, str]:
    return {f"cbacheck {name}": text for name, text in _shown_settings(settings)}


def _add_metadata(config: pytest.Config, settings: Settings) -> None:
    try:
        from pytest_metadata.plugin import metadata_key  # type: ignore[import-untyped]
    except ImportError:
        return
    metadata = config.stash.get(metadata_key, None)
    if metadata is not None:
        metadata.update(_settings_metadata(settings))


def _shown_settings(settings: Settings) -> list[tuple[str, str]]:
    """(name, 'value (from source)') for the headline settings and every one not at its default; no secrets."""
    described = settings.describe()
    shown = []
    for spec in setting_fields():
        source = settings.source(spec.name)
        if spec.name not in HEADLINE_SETTINGS and source == "default":
            continue
        value = described[spec.name]["value"]
        if value is None or value == []:
            text = "(not set)"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list):
            text = ", ".join(map(str, value))
        else:
            text = str(value)
        shown.append((spec.name, f"{text} ({'default' if source == 'default' else 'from ' + source})"))
    return shown


def provenance_line(settings: Settings) -> str:
    """`cbacheck: tenant=contoso.onmicrosoft.com (from env CBACHECK_TENANT), fix=plan (default)`."""
    return "cbacheck: " + ", ".join(f"{name}={text}" for name, text in _shown_settings(settings))


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = _state(config)
    if not state.active or state.settings is None:
        return []
    lines = [provenance_line(state.settings)]
    if state.settings.endpoint_overrides():
        lines.append(f"cbacheck: {state.settings.endpoint_overrides()}")
    if state.settings.sandbox:
        lines.insert(0, "cbacheck: SANDBOX run: the tenant is cbacheck's local sandbox, not a real tenant")
    return lines


# --- the requirement marker ---------------------------------------------------------------------


def _docstring_title(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "obj", None), "__doc__", None) or ""
    lines = doc.strip().splitlines()
    return lines[0].strip() if lines else ""


def _same_title(docstring_title: str, catalogue_title: str) -> bool:
    return docstring_title.rstrip(".").strip() == catalogue_title.rstrip(".").strip()


def requirement_of(item: pytest.Item, claimed: dict[str, str]) -> RequirementMark:
    """Validate an item's requirement marker against the signature and the catalogue; MarkerError if wrong."""
    marker = item.get_closest_marker("requirement")
    assert marker is not None
    where = item.nodeid
    try:
        req_id, severity, fix = requirement(*marker.args, **marker.kwargs)
    except TypeError as err:
        raise MarkerError(f"{where}: the requirement marker must be {MARKER_SIGNATURE}: {err}") from None
    problems: list[str] = []
    if not isinstance(req_id, str) or not req_id.strip():
        raise MarkerError(f"{where}: requirement ID {req_id!r} must be a non-empty string like 'CBA-KEY-001'")
    if severity not in catalogue.SEVERITIES:
        problems.append(f"severity {severity!r} is not one of: {', '.join(catalogue.SEVERITIES)}")
    if fix not in catalogue.FIXES:
        problems.append(f"fix {fix!r} is not a known planner; known: {', '.join(catalogue.FIXES)}")
    title = _docstring_title(item)
    entry = catalogue.CATALOGUE.get(req_id)
    if entry is not None:
        if severity in catalogue.SEVERITIES and severity != entry.severity:
            problems.append(f"severity {severity!r} disagrees with the catalogue's {entry.severity!r} for {req_id}")
        if fix in catalogue.FIXES and fix != entry.fix:
            problems.append(f"fix {fix!r} disagrees with the catalogue's {entry.fix!r} for {req_id}")
        if not _same_title(title, entry.title):
            problems.append(
                f"docstring title {title!r} disagrees with the catalogue's {entry.title!r} for {req_id} "
                "(the first docstring line is the title shown in the report)"
            )
    elif not title:
        problems.append("the check has no docstring; its first line is the requirement's title in the report")
    # Parametrised instances of one check share its ID; two different checks may not.
    owner = item.nodeid.split("[", 1)[0]
    if claimed.get(req_id, owner) != owner:
        problems.append(f"requirement ID {req_id} is already used by {claimed[req_id]}; each ID belongs to one check")
    if problems:
        raise MarkerError(f"{where}: requirement({req_id!r}): " + "; ".join(problems))
    claimed[req_id] = owner
    return RequirementMark(
        id=req_id,
        title=entry.title if entry else title,
        severity=severity,
        fix=fix,
        link=entry.link if entry else None,
        remediation=entry.remediation if entry else "",
        reference=entry.reference if entry else "",
    )


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if not report.passed or not report.result:
        return report
    claimed = collector.config.stash.get(claimed_ids_key, {})
    problems: list[str] = []
    for node in report.result:
        if isinstance(node, pytest.Item) and node.get_closest_marker("requirement") is not None:
            try:
                node.stash[requirement_key] = requirement_of(node, claimed)
            except MarkerError as err:
                problems.append(str(err))
    if problems:
        # A collection error for the whole file: a check with a wrong marker must not run under a wrong ID.
        report.outcome = "failed"
        report.longrepr = "\n".join(problems)
        report.result = []
    return report


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # trylast: -k and -m deselection have run, so only the checks that will run decide activation.
    state = _state(config)
    marked = [item for item in items if requirement_key in item.stash]
    if not marked and not state.active:
        return
    if not state.active:
        html_free = not getattr(config.option, "htmlpath", None)
        junit_free = not getattr(config.option, "xmlpath", None)
        _activate(config)
        if not _is_worker(config):
            _start_reports_late(session, html_free, junit_free)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and state.settings is not None:
            reporter.write_line(provenance_line(state.settings))
            if state.settings.endpoint_overrides():
                reporter.write_line(f"cbacheck: {state.settings.endpoint_overrides()}")

    def chain_position(item: pytest.Item) -> tuple[int, str]:
        mark = item.stash.get(requirement_key, None)
        return catalogue.chain_order(mark.id) if mark else (100, "")

    # Running in chain order lets a downstream result name the upstream failure that already happened.
    items.sort(key=chain_position)


# --- running a check ----------------------------------------------------------------------------


def evidence_of(node: pytest.Item) -> Evidence:
    if evidence_key not in node.stash:
        mark = node.stash.get(requirement_key, None)
        node.stash[evidence_key] = Evidence(mark.id if mark else "")
    return node.stash[evidence_key]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    mark = item.stash.get(requirement_key, None)
    if mark is None:
        return (yield)
    evidence_of(item)
    for prop in (("requirement", mark.id), ("severity", mark.severity)):
        if prop not in item.user_properties:
            item.user_properties.append(prop)
    try:
        yield
    except UpstreamFailure as failure:
        # A fixture found the chain broken upstream (e.g. an unreadable certificate). That is a failed
        # check, not an error, so the failure is raised again in the call phase, where pytest, JUnit
        # and pytest-html all report it as failed.
        item.stash[deferred_failure_key] = failure
        return None
    cert = item.funcargs.get("local_cert_facts") if hasattr(item, "funcargs") else None
    if isinstance(cert, CertFacts):
        evidence_of(item).add("certificate file", {"path": str(cert.path), "from": cert.source})
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    failure = item.stash.get(deferred_failure_key, None)
    if failure is not None:
        __tracebackhide__ = True
        mark = item.stash.get(requirement_key, None)
        if mark is not None and mark.id == failure.upstream:
            raise AssertionError(failure.reason)  # the check that owns the failure states it plainly
        raise failure
    return (yield)


def _assertion_message(error: BaseException) -> str:
    text = str(error).strip()
    if not text:
        return "the check's assertion failed without a message"
    head, separator, _ = text.partition("\nassert ")
    if separator and head.strip():
        return head.strip()  # drop pytest's rewritten 'assert ...' explanation; the sentence is the finding
    return text.splitlines()[0]


def _skip_reason(report: pytest.TestReport, call: pytest.CallInfo[None]) -> str:
    value = call.excinfo.value if call.excinfo is not None else None
    reason = getattr(value, "msg", None)
    if reason is None and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(reason or "skipped")


def _error_message(error: BaseException | None, report: pytest.TestReport) -> str:
    if isinstance(error, CbaCheckError):
        return str(error)
    if error is None:
        return report.longreprtext.strip().splitlines()[-1] if report.longreprtext.strip() else "unknown error"
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"could not verify: {type(error).__name__}: {first_line}".rstrip(": ")


def _outcome(report: pytest.TestReport, call: pytest.CallInfo[None]) -> tuple[str, str, str | None]:
    """(outcome, message, follows_from) in cbacheck's terms: only an assertion is non-compliance."""
    if report.passed:
        return "passed", "", None
    if report.skipped:
        return "skipped", _skip_reason(report, call), None
    error = call.excinfo.value if call.excinfo is not None else None
    if report.when == "call" and isinstance(error, AssertionError):
        upstream = error.upstream if isinstance(error, UpstreamFailure) else None
        return "failed", _assertion_message(error), upstream
    message = _error_message(error, report)
    if report.when == "teardown":
        message = f"teardown failed: {message}"
    return "error", message, None


def _final_phase(report: pytest.TestReport) -> bool:
    """The phase whose report carries the requirement's outcome."""
    return (
        report.when == "call"
        or (report.when == "setup" and not report.passed)
        or (report.when == "teardown" and report.failed)
    )


def _pytest_html_extras() -> ModuleType | None:
    try:
        return importlib.import_module("pytest_html.extras")
    except ImportError:
        return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A new-style wrapper, not tryfirst: pytest-html's tryfirst wrapper runs after this one and keeps our extras.
    report = yield
    mark = item.stash.get(requirement_key, None)
    state = _state(item.config)
    if mark is None or not state.active or not _final_phase(report):
        return report
    outcome, message, follows_from = _outcome(report, call)
    if follows_from is None and outcome in ("failed", "error"):
        outcomes = {record["id"]: record["outcome"] for record in state.records.values()}
        follows_from = results.nearest_failed_upstream(mark.id, outcomes)
        if follows_from is not None and follows_from not in message:
            message = f"{message} ({results.follows_note(follows_from)})"
    evidence = evidence_of(item)
    secrets = _secrets(item.config)
    record: dict[str, Any] = redacted(
        {
            "id": mark.id,
            "title": mark.title,
            "severity": mark.severity,
            "link": mark.link,
            "fix": mark.fix,
            "outcome": outcome,
            "message": message,
            "evidence": evidence.as_dict(),
            "follows_from": follows_from,
            "remediation": mark.remediation,
            "reference": mark.reference,
        },
        secrets,
    )
    report.cba = record  # type: ignore[attr-defined]  # a plain dict, so it survives xdist serialisation
    if follows_from is not None:
        for target in (item.user_properties, report.user_properties):
            target[:] = [prop for prop in target if prop[0] != "follows_from"]
            target.append(("follows_from", follows_from))
    extras = _pytest_html_extras()
    if extras is not None and state.html_path is not None:
        failing = outcome in ("failed", "error")
        report.extras = [  # type: ignore[attr-defined]
            *getattr(report, "extras", []),
            extras.html(render_html(record)),
            *evidence.drain_as_extras(
                extras,
                remediation=mark.remediation if failing else "",
                reference=mark.reference,
                secrets=secrets,
            ),
        ]
    return report


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cba_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved settings (option > env > config file > default), with `sources`."""
    return settings_of(pytestconfig)


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Evidence:
    """The evidence recorder of this check; what it records appears in every report."""
    return evidence_of(request.node)


@pytest.fixture(scope="session")
def local_cert_facts(cba_settings: Settings, pytestconfig: pytest.Config) -> CertFacts:
    """Facts of the local certificate; skips when none is configured, fails the chain when it is unreadable."""
    __tracebackhide__ = True
    if cba_settings.cert is None:
        pytest.skip(NO_CERTIFICATE)
    certs = importlib.import_module("cbacheck.certs")
    try:
        facts: CertFacts = certs.read_certificate(
            cba_settings.cert, cba_settings.cert_password, cba_settings.source("cert")
        )
    except CertificateError as err:
        # CBA-CERT-001 fails with this message; every other check needing the certificate follows from it.
        raise UpstreamFailure("CBA-CERT-001", str(err)) from None
    _state(pytestconfig).cert_facts = facts
    return facts


@pytest.fixture(scope="session")
def tenant_facts(cba_settings: Settings, pytestconfig: pytest.Config) -> TenantFacts:
    """Every tenant fact, collected once; skips when no tenant is configured."""
    __tracebackhide__ = True
    if not cba_settings.tenant_configured:
        pytest.skip(NOT_CONFIGURED)
    try:
        collection = importlib.import_module("cbacheck.collect")
    except ModuleNotFoundError as err:
        if err.name != "cbacheck.collect":
            raise
        raise FactUnavailable(
            Unavailable("tenant facts", "this cbacheck installation has no tenant collection (cbacheck.collect)")
        ) from None
    try:
        facts: TenantFacts = collection.collect(cba_settings)
    except CbaCheckError as err:
        raise FactUnavailable(Unavailable("tenant facts", str(err), error=err)) from None
    _state(pytestconfig).tenant_facts = facts
    return facts


def _tenant_fact(request: pytest.FixtureRequest, facts: TenantFacts, name: str) -> Any:
    """One field of the tenant facts; Unavailable becomes FactUnavailable (error), its source becomes evidence."""
    __tracebackhide__ = True
    value = getattr(facts, name)
    recorder = evidence_of(request.node)
    source = getattr(value, "source", None)
    if isinstance(source, Source):
        recorder.source(source)
    if isinstance(value, Unavailable):
        raise FactUnavailable(value)
    return value


@pytest.fixture
def organization(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> Organization:
    """The tenant's organization (ID, initial and verified domains)."""
    __tracebackhide__ = True
    fact: Organization = _tenant_fact(request, tenant_facts, "organization")
    return fact


@pytest.fixture
def app(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> AppRegistration | None:
    """The app registration under test; None when it does not exist."""
    __tracebackhide__ = True
    fact: AppRegistration | None = _tenant_fact(request, tenant_facts, "app")
    return fact


@pytest.fixture
def app_sp(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> ServicePrincipal | None:
    """The app's service principal; None when it does not exist."""
    __tracebackhide__ = True
    fact: ServicePrincipal | None = _tenant_fact(request, tenant_facts, "app_sp")
    return fact


@pytest.fixture
def exchange_sp(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> ServicePrincipal | None:
    """The Office 365 Exchange Online service principal; None when the tenant has none."""
    __tracebackhide__ = True
    fact: ServicePrincipal | None = _tenant_fact(request, tenant_facts, "exchange_sp")
    return fact


@pytest.fixture
def app_role_grants(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> tuple[AppRoleAssignment, ...]:
    """App roles granted to the app's service principal (admin consent)."""
    __tracebackhide__ = True
    fact: tuple[AppRoleAssignment, ...] = _tenant_fact(request, tenant_facts, "app_role_grants")
    return fact


@pytest.fixture
def role_assignments(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> tuple[DirectoryRoleAssignment, ...]:
    """Active directory role assignments of the app's service principal."""
    __tracebackhide__ = True
    fact: tuple[DirectoryRoleAssignment, ...] = _tenant_fact(request, tenant_facts, "role_assignments")
    return fact


@pytest.fixture
def role_eligibilities(
    request: pytest.FixtureRequest, tenant_facts: TenantFacts
) -> tuple[DirectoryRoleAssignment, ...]:
    """PIM-eligible (not active) directory role assignments of the app's service principal."""
    __tracebackhide__ = True
    fact: tuple[DirectoryRoleAssignment, ...] = _tenant_fact(request, tenant_facts, "role_eligibilities")
    return fact


@pytest.fixture
def token_attempt(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> TokenAttempt:
    """The app's own attempt to get an Exchange Online token with its certificate."""
    __tracebackhide__ = True
    fact: TokenAttempt = _tenant_fact(request, tenant_facts, "token")
    return fact


@pytest.fixture
def exchange_probe(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> ExchangeProbe | None:
    """The read-only Exchange cmdlet run with the app's token; None when there was no token to try."""
    __tracebackhide__ = True
    fact: ExchangeProbe | None = _tenant_fact(request, tenant_facts, "exchange")
    return fact


# --- end of the session: results file and summaries ---------------------------------------------


def _applied_fixes(config: pytest.Config) -> results.AppliedFixes | None:
    """What `--fix apply` did before this evaluation, when this is the run after it."""
    return next(
        (plugin for plugin in config.pluginmanager.get_plugins() if isinstance(plugin, results.AppliedFixes)), None
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
    # Runs before pytest-html's trylast sessionfinish, so its summary hook can use the document.
    config = session.config
    state = _state(config)
    if not state.active or _is_worker(config):
        return
    plan = results.plan_fixes(session)
    applied = _applied_fixes(config)
    document = results.build_document(
        state,
        finished=datetime.now(UTC),
        exit_code=int(exitstatus),
        plan=plan,
        applied=applied.rows if applied else None,
        pending=applied.pending if applied else None,
    )
    document = redacted(document, _secrets(config))
    if state.json_path is not None:
        results.write_atomic(state.json_path, document)
    state.document = document


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = _state(config)
    document = state.document
    if document is None or config.getoption("cba_run"):
        return  # `cbacheck run` prints its own closing summary
    terminalreporter.write_sep("-", "cbacheck")
    for line in summary_lines(document):
        terminalreporter.write_line(line)
    if state.json_path is not None:
        terminalreporter.write_line(f"JSON results: {state.json_path}")


def summary_lines(document: dict[str, Any]) -> list[str]:
    """The verdict and the first broken link, for terminals."""
    run = document["run"]
    summary = document["summary"]
    counts = ", ".join(f"{n} {outcome}" for outcome, n in summary["counts"].items() if n)
    lines = [f"verdict: {run['verdict'].upper()} ({counts or 'no requirements ran'})"]
    if summary["first_broken"] is not None:
        lines.append("first broken: " + results.describe_first_broken(summary["first_broken"]))
    if run["sandbox"]:
        lines.insert(0, "SANDBOX run: the tenant is cbacheck's local sandbox")
    return lines


# --- pytest-html ---------------------------------------------------------------------------------


def _html_active(config: pytest.Config) -> bool:
    state = _state(config)
    return state.active and state.html_path is not None


@pytest.hookimpl(optionalhook=True)
def pytest_html_report_title(report: Any) -> None:
    config = getattr(report, "config", None)
    if config is None or not _html_active(config):
        return
    settings = settings_of(config)
    subject = settings.tenant or (settings.cert.name if settings.cert else "no tenant configured")
    report.title = f"cbacheck: {subject}" + (" (SANDBOX)" if settings.sandbox else "")


def _link_text(link: int | None) -> str:
    return f"{link} {catalogue.LINKS[link]}" if link in catalogue.LINKS else "custom"


class SessionHooks:
    """Hooks whose arguments carry no config: one instance per session config, registered in pytest_configure."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            message = redacted(str(report.longrepr), _secrets(self.config))
            _state(self.config).collection_errors.append({"nodeid": report.nodeid, "message": message})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        state = _state(self.config)
        if not state.active:
            return
        state.durations[report.nodeid] = state.durations.get(report.nodeid, 0.0) + report.duration
        record = getattr(report, "cba", None)
        if isinstance(record, dict):
            state.records[report.nodeid] = record

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        if not _html_active(self.config):
            return
        cells.insert(1, '<th class="sortable" data-column-type="requirement">Requirement</th>')
        cells.insert(2, '<th class="sortable" data-column-type="severity">Severity</th>')
        cells.insert(3, '<th class="sortable" data-column-type="chainlink">Chain link</th>')
        cells.insert(4, '<th class="sortable" data-column-type="verdict">Verdict</th>')

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        if not _html_active(self.config):
            return
        record = getattr(report, "cba", None) or {}
        severity = str(record.get("severity", ""))
        # A hidden rank makes the Severity column sort critical..info instead of alphabetically.
        rank = catalogue.SEVERITIES.index(severity) + 1 if severity in catalogue.SEVERITIES else 9
        cells.insert(1, f'<td class="col-requirement">{escape(str(record.get("id", "")))}</td>')
        cells.insert(2, f'<td class="col-severity"><span hidden>{rank}</span>{escape(severity)}</td>')
        link = _link_text(record.get("link")) if record else ""
        cells.insert(3, f'<td class="col-chainlink">{escape(link)}</td>')
        # cbacheck's own outcome: pytest-html's Result column knows neither "error" for a check that crashed
        # (could not verify) nor "pending" for a fix still propagating.
        outcome = str(record.get("outcome", ""))
        applied = _applied_fixes(self.config)
        if record and applied is not None:
            marked = [dict(record)]
            results.mark_pending(marked, applied.pending)
            outcome = str(marked[0]["outcome"])
        cells.insert(4, f'<td class="col-verdict">{escape(outcome)}</td>')


VERDICT_COLOURS = {"pass": "#1b7f3b", "fail": "#b00020", "incomplete": "#b26a00"}


def summary_html(document: dict[str, Any], settings: Settings, planned: int) -> list[str]:
    """The report's opening: banner, verdict, first broken link, counts, planned fixes, settings. All escaped."""
    run = document["run"]
    summary = document["summary"]
    verdict = run["verdict"]
    parts: list[str] = []
    if run["sandbox"]:
        parts.append(
            '<div style="background:#6a1b9a;color:#fff;padding:10px 14px;font-size:1.4em;font-weight:bold;'
            "letter-spacing:.08em\">SANDBOX &mdash; this run checked cbacheck's local sandbox tenant, "
            "not a real tenant</div>"
        )
    if settings.endpoint_overrides():
        parts.append(f'<p style="font-weight:bold;color:#b00020">{escape(settings.endpoint_overrides() or "")}</p>')
    explanation = {
        "pass": "every requirement that was configured passed",
        "fail": "at least one requirement failed",
        "incomplete": "nothing failed, but not everything could be verified",
    }[verdict]
    parts.append(
        f'<p style="font-size:1.5em;margin:.4em 0"><strong style="color:{VERDICT_COLOURS[verdict]}">'
        f"{escape(verdict.upper())}</strong> &mdash; {escape(explanation)}</p>"
    )
    parts.append(
        f'<p style="font-size:1.1em"><strong>First broken link:</strong> '
        f"{escape(results.describe_first_broken(summary['first_broken']))}</p>"
    )
    outcomes = [name for name in results.OUTCOMES if any(row[name] for row in summary["by_severity"].values())]
    outcomes = outcomes or ["passed", "failed", "error", "skipped"]
    header = "".join(f'<th style="padding:2px 10px">{escape(name)}</th>' for name in outcomes)
    rows = []
    for severity, row in summary["by_severity"].items():
        if not any(row.values()):
            continue
        cells = "".join(f'<td style="text-align:center">{row[name] or ""}</td>' for name in outcomes)
        rows.append(f'<tr><th style="text-align:left;padding:2px 10px">{escape(severity)}</th>{cells}</tr>')
    total = "".join(f'<td style="text-align:center"><strong>{summary["counts"][n]}</strong></td>' for n in outcomes)
    rows.append(f'<tr><th style="text-align:left;padding:2px 10px">all</th>{total}</tr>')
    parts.append(
        '<table class="cba-counts" style="border-collapse:collapse;margin:.5em 0">'
        f"<tr><th></th>{header}</tr>{''.join(rows)}</table>"
    )
    mode = settings.fix
    parts.append(f"<p><strong>Fix actions planned:</strong> {planned} (fix mode: {escape(mode)})</p>")
    parts.extend(fixes_html(document["fixes"]))
    setting_rows = "".join(
        f'<tr><th style="text-align:left;padding:1px 10px 1px 0">{escape(name)}</th><td>{escape(text)}</td></tr>'
        for name, text in _shown_settings(settings)
    )
    parts.append(
        "<details><summary>Settings and where they came from</summary>"
        f'<table class="cba-settings" style="margin:.3em 0">{setting_rows}</table></details>'
    )
    return parts


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=1, sort_keys=True, default=str)
    pre = f'<pre style="margin:0;white-space:pre-wrap">{escape(text)}</pre>'
    return f'<td style="vertical-align:top;padding:2px 8px">{pre}</td>'


def fixes_html(fixes: dict[str, Any]) -> list[str]:
    """The plan (every run) and, after an apply, each action's before, request, response and after. Escaped."""
    parts: list[str] = []
    head = "".join(
        f'<th style="text-align:left;padding:2px 8px">{escape(h)}</th>'
        for h in ("action", "mends", "why", "request", "needs")
    )
    if fixes["plan"]:
        rows = "".join(
            "<tr>"
            + _cell(action["id"])
            + _cell(", ".join(action.get("mends", [])))
            + _cell(action.get("reason", ""))
            + _cell(action.get("request", {}))
            + _cell(action.get("permission", ""))
            + "</tr>"
            for action in fixes["plan"]
        )
        parts.append(
            f"<details><summary><strong>Fix plan</strong> ({len(fixes['plan'])} actions; key bytes and secrets "
            f'elided)</summary><table class="cba-plan" style="border-collapse:collapse">{head}{rows}</table></details>'
        )
    if fixes.get("applied"):
        head = "".join(
            f'<th style="text-align:left;padding:2px 8px">{escape(h)}</th>'
            for h in ("action", "status", "verdict", "response", "request-id", "before", "after")
        )
        rows = "".join(
            "<tr>"
            + _cell(row.get("action_id", ""))
            + _cell(row.get("status", ""))
            + _cell(row.get("verdict", ""))
            + _cell(str(row.get("response_status", "")))
            + _cell(row.get("request_id", ""))
            + _cell(row.get("before"))
            + _cell(row.get("after"))
            + "</tr>"
            for row in fixes["applied"]
        )
        parts.append(
            f"<details open><summary><strong>Fixes applied before this evaluation</strong> "
            f"({len(fixes['applied'])} actions)</summary>"
            f'<table class="cba-applied" style="border-collapse:collapse">{head}{rows}</table></details>'
        )
    return parts


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list[str], summary: list[str], postfix: list[str], session: Any) -> None:
    config = session.config
    state = _state(config)
    if not _html_active(config) or state.document is None or state.settings is None:
        return
    prefix[:0] = summary_html(state.document, state.settings, len(state.document["fixes"]["plan"]))
