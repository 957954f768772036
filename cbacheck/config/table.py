"""The settings table: one dataclass field per setting, with the metadata every reader derives from."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cbacheck import profiles, wellknown

Kind = Literal["str", "int", "float", "bool", "path", "list", "choice", "url", "guid", "secret"]
# Who may set a setting (see docs/configuration.md, "Who may set what"):
# - subject: it describes what is checked (tenant, app, certificate, identities, report paths); a
#   config file found in the working folder may set it;
# - steering: it chooses endpoints, trust, writes, confirmation, roles, the sandbox marker or the
#   verdict; only an option, the environment or a config file named explicitly may set it, because a
#   found file can come from any branch a pipeline checks out;
# - command_line: only an option; neither the environment nor any file.
Trust = Literal["subject", "steering", "command_line"]

ENV_PREFIX = "CBACHECK_"
CONFIG_FILE = "cbacheck.toml"
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# A tenant is a GUID or a DNS name (the identity platform accepts either).
TENANT_RE = re.compile(r"^([0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}|[A-Za-z0-9.-]+\.[A-Za-z]{2,})$")

CLOUD_NAMES = tuple(wellknown.CLOUDS)
FIX_MODES = ("off", "plan", "apply")
CREDENTIAL_KINDS = (
    "auto",
    "certificate",
    "default",
    "environment",
    "workload_identity",
    "managed_identity",
    "azure_cli",
    "device_code",
)
ENDPOINT_SETTINGS = ("login_url", "graph_url", "exchange_url", "compliance_url")
# The gate (docs/reports.md, "Exit codes"): which failures fail the run, and which links must have been checked.
FAIL_ON_LEVELS = ("critical", "high", "medium", "low", "info")
REQUIRE_CHOICES = ("configured", "cert", "tenant", "all")
# The longest window any policy setting may name: a hundred years is already far past any certificate.
LONGEST_DAYS = 36_500


def _setting(
    kind: Kind,
    default: Any,
    help: str,
    *,
    trust: Trust = "steering",
    choices: tuple[str, ...] = (),
    cli: bool = True,
    group: str = "tenant",
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    """A dataclass field carrying the metadata the option, env and file readers derive from.

    `trust` defaults to steering, so a new setting is kept out of found config files until it is
    declared to describe the subject.
    """
    meta = {
        "kind": kind,
        "help": help,
        "choices": choices,
        "cli": cli and kind != "secret",
        "group": group,
        "trust": trust,
        "minimum": minimum,
        "maximum": maximum,
    }
    if isinstance(default, list | tuple):
        return field(default=tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Resolved settings; `sources[name]` says where each value came from."""

    # The app under test (link 1 to 6).
    tenant: str | None = _setting("str", None, "Tenant ID (GUID) or a domain of the tenant", trust="subject")
    app_id: str | None = _setting("guid", None, "Application (client) ID of the CBA app under test", trust="subject")
    organization: str | None = _setting(
        "str", None, "The -Organization value scripts use (the initial *.onmicrosoft.com domain)", trust="subject"
    )
    cert: Path | None = _setting(
        "path", None, "Certificate of the app: .cer/.crt, .pem or .pfx/.p12", trust="subject", group="cert"
    )
    cert_password: str | None = _setting(
        "secret",
        None,
        "Password of the PFX or encrypted PEM (environment or file only)",
        trust="subject",
        group="cert",
    )
    cloud: str = _setting("choice", "global", "Microsoft cloud", choices=CLOUD_NAMES, trust="subject")
    # Steering: it chooses which permission a fix writes and which resource a token is asked for.
    profile: tuple[str, ...] = _setting(
        "list",
        (profiles.DEFAULT,),
        "Chains to prove (profiles.md): " + ", ".join(profiles.NAMES) + "; several are each reported",
        choices=profiles.NAMES,
    )
    login_url: str | None = _setting("url", None, "Override of the Entra login endpoint (private endpoints, sandbox)")
    graph_url: str | None = _setting("url", None, "Override of the Microsoft Graph endpoint")
    exchange_url: str | None = _setting("url", None, "Override of the Exchange Online endpoint")
    compliance_url: str | None = _setting(
        "url", None, "Override of the Security & Compliance PowerShell endpoint (profile security-compliance)"
    )
    ca_bundle: Path | None = _setting(
        "path", None, "CA bundle that signs those endpoints (wins over REQUESTS_CA_BUNDLE)"
    )
    allow_custom_endpoints: bool = _setting(
        "bool",
        False,
        "Accept endpoints outside the cloud's Microsoft hosts (command line only)",
        trust="command_line",
    )
    # Policy.
    expiry_days: int = _setting(
        "int",
        30,
        "Rotation window: fail when the certificate expires sooner",
        group="policy",
        minimum=0,
        maximum=LONGEST_DAYS,
    )
    max_lifetime_days: int = _setting(
        "int", 365, "Longest allowed certificate lifetime", group="policy", minimum=0, maximum=LONGEST_DAYS
    )
    # A threshold that decides a verdict (CBA-AUD-013), so steering: a found file may not loosen it.
    unused_days: int = _setting(
        "int",
        90,
        "Audit: an app with Exchange app-only access not signed in for longer is unused (CBA-AUD-013)",
        group="policy",
        minimum=1,
        maximum=LONGEST_DAYS,
    )
    required_role: str = _setting(
        "str",
        wellknown.EXCHANGE_ADMINISTRATOR,
        "Directory role the app needs (template ID or display name)",
        group="policy",
    )
    accepted_roles: tuple[str, ...] = _setting(
        "list", (), "Other directory roles that also satisfy CBA-ROLE-001 (template IDs or names)", group="policy"
    )
    allowed_permissions: tuple[str, ...] = _setting(
        "list", (wellknown.EXCHANGE_MANAGE_AS_APP,), "Application permissions the app may hold", group="policy"
    )
    multi_tenant: bool = _setting("bool", False, "The app is meant to be multi-tenant (CBA-APP-003)", group="policy")
    exchange_cmdlet: str = _setting(
        "str", "Get-OrganizationConfig", "Read-only cmdlet CBA-EXO-001 runs", group="policy"
    )
    exchange_cmdlets: tuple[str, ...] = _setting(
        "list",
        (),
        "Cmdlets the automation runs; CBA-ROLE-003 finds the assigned Exchange role granting each (never runs them)",
        group="policy",
    )
    rbac_role_group: str | None = _setting(
        "str",
        None,
        "Exchange role group the RBAC fix adds the app's service principal pointer to",
        group="policy",
    )
    # The auditor identity that reads Graph.
    auditor_credential: str = _setting(
        "choice",
        "auto",
        "How the auditor signs in to Graph",
        choices=CREDENTIAL_KINDS,
        trust="subject",
        group="auditor",
    )
    auditor_app_id: str | None = _setting(
        "guid", None, "Application ID of the auditor app", trust="subject", group="auditor"
    )
    auditor_cert: Path | None = _setting(
        "path", None, "Certificate (with key) of the auditor app", trust="subject", group="auditor"
    )
    auditor_cert_password: str | None = _setting(
        "secret", None, "Password of the auditor certificate", trust="subject", group="auditor"
    )
    # `cbacheck audit --certificates DIR`: one password for the folder's PFX and encrypted PEM files.
    certificates_password: str | None = _setting(
        "secret",
        None,
        "Password of the PFX/PEM files given to `cbacheck audit --certificates`",
        trust="subject",
        group="auditor",
    )
    # The admin identity that applies fixes.
    admin_credential: str = _setting(
        "choice",
        "auto",
        "How the admin signs in to Graph to apply fixes",
        choices=CREDENTIAL_KINDS,
        trust="subject",
        group="admin",
    )
    admin_app_id: str | None = _setting("guid", None, "Application ID of the admin app", trust="subject", group="admin")
    admin_cert: Path | None = _setting(
        "path", None, "Certificate (with key) of the admin app", trust="subject", group="admin"
    )
    admin_cert_password: str | None = _setting(
        "secret", None, "Password of the admin certificate", trust="subject", group="admin"
    )
    # Fixes.
    fix: str = _setting(
        "choice", "plan", "plan: show fixes; apply: make them; off: neither", choices=FIX_MODES, group="fix"
    )
    yes: bool = _setting("bool", False, "Apply without asking (for pipelines)", group="fix")
    remove_old_key: bool = _setting("bool", False, "After a proven rotation, remove the old key", group="fix")
    remove_expired_keys: bool = _setting("bool", False, "Fix CBA-APP-005 by removing expired keys", group="fix")
    propagation_timeout_s: int = _setting(
        "int",
        300,
        "Longest wait for fixes to take effect before 'pending propagation'",
        group="fix",
        minimum=0,
        maximum=86_400,
    )
    new_cert_dir: Path | None = _setting("path", None, "Folder for certificates a fix creates", group="fix")
    journal: Path | None = _setting(
        "path", None, "Journal of applied fix actions (resume after interruption)", group="fix"
    )
    # Output.
    report_dir: Path = _setting("path", Path("reports"), "Folder for the reports", trust="subject", group="report")
    html: Path | None = _setting(
        "path", None, "HTML report path (default: in report_dir, UTC-stamped)", trust="subject", group="report"
    )
    json: Path | None = _setting("path", None, "JSON results path", trust="subject", group="report")
    junit: Path | None = _setting("path", None, "JUnit XML path", trust="subject", group="report")
    sarif: Path | None = _setting(
        "path", None, "SARIF 2.1.0 file for code scanning (one result per finding)", trust="subject", group="report"
    )
    summary: Path | None = _setting(
        "path",
        None,
        "Markdown summary path (also appended to GITHUB_STEP_SUMMARY when that is set)",
        trust="subject",
        group="report",
    )
    bundle: Path | None = _setting(
        "path",
        None,
        "Folder for an evidence bundle: HTML, JSON, JUnit, SARIF, summary and a SHA-256 manifest",
        trust="subject",
        group="report",
    )
    # The gate: every one steers the verdict or the exit code, so none may come from a found config file.
    fail_on: str = _setting(
        "choice",
        "info",
        "Lowest severity whose failure fails the run; failures below it are warnings",
        choices=FAIL_ON_LEVELS,
        group="gate",
    )
    require: str = _setting(
        "choice",
        "configured",
        "Links that must have been checked: a skip for a missing certificate (cert), tenant (tenant) or either "
        "(all) fails the run",
        choices=REQUIRE_CHOICES,
        group="gate",
    )
    allow_unverified: bool = _setting(
        "bool", False, "A requirement that could not be verified (error) does not fail the run", group="gate"
    )
    select: tuple[str, ...] = _setting(
        "list", (), "Evaluate only these requirement IDs (patterns such as CBA-KEY-*); the rest are 'not selected'",
        group="gate",
    )
    skip: tuple[str, ...] = _setting(
        "list", (), "Leave out these requirement IDs (patterns); they are reported as 'not selected'", group="gate"
    )
    exceptions: Path | None = _setting(
        "path", None, "TOML file of accepted risks ([[exception]] id, reason, approver, expires)", group="gate"
    )
    compare: Path | None = _setting(
        "path", None, "Results JSON of an earlier run: each result says what changed since", group="gate"
    )
    # Network.
    timeout_s: float = _setting(
        "float", 30.0, "Timeout of one HTTP request, seconds", group="network", minimum=0.001, maximum=3_600
    )
    retries: int = _setting(
        "int", 4, "Retries of one request on 429/5xx/connection errors", group="network", minimum=0, maximum=100
    )
    batching: bool = _setting("bool", True, "Use Graph JSON $batch to collect facts", group="network")
    sandbox: bool = _setting(
        "bool",
        False,
        "Set by `cbacheck demo`: the tenant is the local sandbox; loopback endpoints are accepted",
        cli=False,
        group="network",
    )

    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def cloud_endpoints(self) -> wellknown.Cloud:
        """The cloud's endpoints with the per-URL overrides applied."""
        base = wellknown.CLOUDS[self.cloud]
        return dataclasses.replace(
            base,
            login_url=(self.login_url or base.login_url).rstrip("/"),
            graph_url=(self.graph_url or base.graph_url).rstrip("/"),
            exchange_url=(self.exchange_url or base.exchange_url).rstrip("/"),
            compliance_url=(self.compliance_url or base.compliance_url).rstrip("/"),
        )

    @property
    def tenant_configured(self) -> bool:
        return bool(self.tenant and self.app_id)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    def endpoint_overrides(self) -> str | None:
        """One loud line naming every endpoint and CA bundle not at its default, with its source; None if none."""
        changed = [
            f"{name}={getattr(self, name)} from {self.source(name)}"
            for name in (*ENDPOINT_SETTINGS, "ca_bundle")
            if getattr(self, name) is not None
        ]
        return "endpoints overridden: " + ", ".join(changed) if changed else None

    def describe(self) -> dict[str, dict[str, Any]]:
        """Every setting with its value and source, secrets reduced to whether they are set."""
        out: dict[str, dict[str, Any]] = {}
        for spec in setting_fields():
            value = getattr(self, spec.name)
            if spec.metadata["kind"] == "secret":
                shown: Any = "(set)" if value else None
            elif isinstance(value, Path):
                shown = str(value)
            elif isinstance(value, tuple):
                shown = list(value)
            else:
                shown = value
            out[spec.name] = {"value": shown, "source": self.source(spec.name)}
        return out


def setting_fields() -> tuple[dataclasses.Field[Any], ...]:
    return tuple(f for f in dataclasses.fields(Settings) if f.name != "sources")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def option_name(name: str) -> str:
    """`cbacheck run --NAME` (dashes)."""
    return "--" + name.replace("_", "-")


def plugin_option_name(name: str) -> str:
    """`pytest --cba-NAME` (not named pytest_*: pluggy would take such a module attribute for a hook)."""
    return "--cba-" + name.replace("_", "-")


def role_id(value: str) -> str | None:
    """A role given as template ID or display name, as a template ID (None when unknown)."""
    if GUID_RE.match(value):
        return value.lower()
    for template, name in wellknown.DIRECTORY_ROLE_NAMES.items():
        if name.lower() == value.strip().lower():
            return template
    return None


def accepted_role_ids(settings: Settings) -> frozenset[str]:
    """The required role plus any configured alternatives, as template IDs."""
    ids = {role_id(settings.required_role)} | {role_id(r) for r in settings.accepted_roles}
    return frozenset(i for i in ids if i)


def accepted_role_ids_for(settings: Settings, profile: profiles.Profile) -> frozenset[str]:
    """The roles that satisfy CBA-ROLE-001 for a profile: the settings' roles it supports, else all it supports.

    The default profile keeps the settings' roles as they are (required_role defaults to Exchange
    Administrator, which Security & Compliance PowerShell does not support).
    """
    accepted = accepted_role_ids(settings)
    if profile.name == profiles.DEFAULT:
        return accepted
    return (accepted & profile.supported_roles) or profile.supported_roles

