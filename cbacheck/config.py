"""Settings: one table gives every CLI option, pytest option, environment variable and config key."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cbacheck import wellknown
from cbacheck.errors import ConfigError

Kind = Literal["str", "int", "float", "bool", "path", "list", "choice", "url", "guid", "secret"]

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


def _setting(
    kind: Kind,
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] = (),
    cli: bool = True,
    group: str = "tenant",
) -> Any:
    """A dataclass field carrying the metadata the option, env and file readers derive from."""
    meta = {"kind": kind, "help": help, "choices": choices, "cli": cli and kind != "secret", "group": group}
    if isinstance(default, list | tuple):
        return field(default=tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Resolved settings; `sources[name]` says where each value came from."""

    # The app under test (link 1 to 6).
    tenant: str | None = _setting("str", None, "Tenant ID (GUID) or a domain of the tenant")
    app_id: str | None = _setting("guid", None, "Application (client) ID of the CBA app under test")
    organization: str | None = _setting(
        "str", None, "The -Organization value scripts use (the initial *.onmicrosoft.com domain)"
    )
    cert: Path | None = _setting("path", None, "Certificate of the app: .cer/.crt, .pem or .pfx/.p12", group="cert")
    cert_password: str | None = _setting(
        "secret", None, "Password of the PFX or encrypted PEM (environment or file only)", group="cert"
    )
    cloud: str = _setting("choice", "global", "Microsoft cloud", choices=CLOUD_NAMES)
    login_url: str | None = _setting("url", None, "Override of the Entra login endpoint (private endpoints, sandbox)")
    graph_url: str | None = _setting("url", None, "Override of the Microsoft Graph endpoint")
    exchange_url: str | None = _setting("url", None, "Override of the Exchange Online endpoint")
    ca_bundle: Path | None = _setting(
        "path", None, "CA bundle that signs those endpoints (wins over REQUESTS_CA_BUNDLE)"
    )
    # Policy.
    expiry_days: int = _setting("int", 30, "Rotation window: fail when the certificate expires sooner", group="policy")
    max_lifetime_days: int = _setting("int", 365, "Longest allowed certificate lifetime", group="policy")
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
    # The auditor identity that reads Graph.
    auditor_credential: str = _setting(
        "choice", "auto", "How the auditor signs in to Graph", choices=CREDENTIAL_KINDS, group="auditor"
    )
    auditor_app_id: str | None = _setting("guid", None, "Application ID of the auditor app", group="auditor")
    auditor_cert: Path | None = _setting("path", None, "Certificate (with key) of the auditor app", group="auditor")
    auditor_cert_password: str | None = _setting("secret", None, "Password of the auditor certificate", group="auditor")
    # The admin identity that applies fixes.
    admin_credential: str = _setting(
        "choice", "auto", "How the admin signs in to Graph to apply fixes", choices=CREDENTIAL_KINDS, group="admin"
    )
    admin_app_id: str | None = _setting("guid", None, "Application ID of the admin app", group="admin")
    admin_cert: Path | None = _setting("path", None, "Certificate (with key) of the admin app", group="admin")
    admin_cert_password: str | None = _setting("secret", None, "Password of the admin certificate", group="admin")
    # Fixes.
    fix: str = _setting(
        "choice", "plan", "plan: show fixes; apply: make them; off: neither", choices=FIX_MODES, group="fix"
    )
    yes: bool = _setting("bool", False, "Apply without asking (for pipelines)", group="fix")
    remove_old_key: bool = _setting("bool", False, "After a proven rotation, remove the old key", group="fix")
    remove_expired_keys: bool = _setting("bool", False, "Fix CBA-APP-005 by removing expired keys", group="fix")
    propagation_timeout_s: int = _setting(
        "int", 300, "Longest wait for fixes to take effect before 'pending propagation'", group="fix"
    )
    new_cert_dir: Path | None = _setting("path", None, "Folder for certificates a fix creates", group="fix")
    journal: Path | None = _setting(
        "path", None, "Journal of applied fix actions (resume after interruption)", group="fix"
    )
    # Output.
    report_dir: Path = _setting("path", Path("reports"), "Folder for the reports", group="report")
    html: Path | None = _setting("path", None, "HTML report path (default: in report_dir, UTC-stamped)", group="report")
    json: Path | None = _setting("path", None, "JSON results path", group="report")
    junit: Path | None = _setting("path", None, "JUnit XML path", group="report")
    # Network.
    timeout_s: float = _setting("float", 30.0, "Timeout of one HTTP request, seconds", group="network")
    retries: int = _setting("int", 4, "Retries of one request on 429/5xx/connection errors", group="network")
    batching: bool = _setting("bool", True, "Use Graph JSON $batch to collect facts", group="network")
    sandbox: bool = _setting(
        "bool", False, "Set by `cbacheck demo`: the tenant is the local sandbox", cli=False, group="network"
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
        )

    @property
    def tenant_configured(self) -> bool:
        return bool(self.tenant and self.app_id)

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

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


def pytest_option_name(name: str) -> str:
    return "--cba-" + name.replace("_", "-")


def role_id(value: str) -> str | None:
    """A role given as template ID or display name, as a template ID (None when unknown)."""
    if GUID_RE.match(value):
        return value.lower()
    for template, name in wellknown.DIRECTORY_ROLE_NAMES.items():
        if name.lower() == value.strip().lower():
            return template
    return None


def find_config_file(cwd: Path, explicit: Path | None) -> tuple[Path | None, str]:
    """The config file to read and the key path inside it ('' or 'tool.cbacheck')."""
    if explicit is not None:
        return explicit, "tool.cbacheck" if explicit.name == "pyproject.toml" else ""
    candidate = cwd / CONFIG_FILE
    if candidate.is_file():
        return candidate, ""
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        return pyproject, "tool.cbacheck"
    return None, ""


def read_config_file(path: Path, table: str, problems: list[str]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(
            f"config file {str(path)!r} does not exist; check the path given to --config or CBACHECK_CONFIG"
        )
        return {}
    except IsADirectoryError:
        problems.append(f"config file {str(path)!r} is a directory, not a TOML file")
        return {}
    except (OSError, UnicodeDecodeError) as err:
        problems.append(f"config file {str(path)!r} cannot be read: {err}")
        return {}
    except tomllib.TOMLDecodeError as err:
        problems.append(f"config file {str(path)!r} is not valid TOML: {err}")
        return {}
    for key in filter(None, table.split(".")):
        node = data.get(key, {})
        if not isinstance(node, dict):
            problems.append(f"config file {str(path)!r}: [{table}] must be a table")
            return {}
        data = node
    known = {f.name for f in setting_fields()}
    for key in data:
        if key not in known:
            problems.append(
                f"config file {str(path)!r}: unknown setting {key!r}; known settings: {', '.join(sorted(known))}"
            )
    return {k: v for k, v in data.items() if k in known}


def _convert(spec: dataclasses.Field[Any], raw: Any, origin: str, problems: list[str]) -> Any:
    kind = spec.metadata["kind"]
    name = spec.name

    def bad(expected: str) -> None:
        problems.append(f"{name} = {raw!r} ({origin}) is not {expected}")

    if raw is None:
        return None
    if kind in ("str", "secret"):
        if not isinstance(raw, str):
            bad("a string")
            return None
        return raw
    if kind == "guid":
        if not isinstance(raw, str) or not GUID_RE.match(raw.strip()):
            bad("a GUID like 00000000-0000-0000-0000-000000000000")
            return None
        return raw.strip().lower()
    if kind == "url":
        if not isinstance(raw, str) or not raw.startswith("https://"):
            bad("an https:// URL")
            return None
        return raw.rstrip("/")
    if kind == "path":
        if not isinstance(raw, str | Path) or not str(raw):
            bad("a path")
            return None
        return Path(os.path.expanduser(str(raw)))
    if kind == "int":
        try:
            return int(raw) if not isinstance(raw, bool) else bad("a whole number")
        except (TypeError, ValueError):
            bad("a whole number")
            return None
    if kind == "float":
        try:
            return float(raw) if not isinstance(raw, bool) else bad("a number")
        except (TypeError, ValueError):
            bad("a number")
            return None
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        bad("true or false")
        return None
    if kind == "list":
        if isinstance(raw, str):
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        bad("a comma-separated list")
        return None
    if kind == "choice":
        choices = spec.metadata["choices"]
        if not isinstance(raw, str) or raw.strip().lower() not in choices:
            problems.append(f"{name} = {raw!r} ({origin}) is not one of: {', '.join(choices)}")
            return None
        return raw.strip().lower()
    raise AssertionError(kind)


def resolve(
    options: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Resolve every setting: option > environment > config file > default.

    All problems are collected and raised together as one ConfigError, one line each.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    env = dict(os.environ if env is None else env)
    cwd = cwd or Path.cwd()
    problems: list[str] = []

    explicit = config_file
    explicit_origin = "option --config"
    if explicit is None and env.get(ENV_PREFIX + "CONFIG"):
        explicit = Path(env[ENV_PREFIX + "CONFIG"])
        explicit_origin = f"env {ENV_PREFIX}CONFIG"
    path, table = find_config_file(cwd, explicit)
    file_values: dict[str, Any] = {}
    file_origin = ""
    if path is not None:
        file_values = read_config_file(path, table, problems)
        file_origin = f"file {path}" + (f" [{table}]" if table else "")
        if explicit is not None and problems and not path.exists():
            problems[-1] += f" (from {explicit_origin})"

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in setting_fields():
        name = spec.name
        kind = spec.metadata["kind"]
        if name in options and kind == "secret":
            # Secrets never come from the command line: shell history and process lists keep them.
            problems.append(f"{name} cannot be given as an option; set {env_name(name)} or {env_name(name)}_FILE")
            continue
        if name in options:
            raw, origin = options[name], f"option {option_name(name)}"
        elif env_name(name) in env:
            raw, origin = env[env_name(name)], f"env {env_name(name)}"
        elif kind == "secret" and env_name(name) + "_FILE" in env:
            secret_path = env[env_name(name) + "_FILE"]
            origin = f"file named by env {env_name(name)}_FILE"
            try:
                raw = Path(secret_path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as err:
                problems.append(f"{name}: cannot read {secret_path!r} ({origin}): {err.strerror or err}")
                continue
        elif name in file_values:
            raw, origin = file_values[name], file_origin
        else:
            continue
        converted = _convert(spec, raw, origin, problems)
        if converted is not None:
            values[name] = converted
            sources[name] = origin

    settings = Settings(**values, sources=sources)
    problems.extend(validate(settings))
    if problems:
        raise ConfigError(problems)
    return settings


def validate(settings: Settings) -> list[str]:
    """Cross-field rules; one line per problem."""
    problems: list[str] = []

    def origin(name: str) -> str:
        return settings.source(name)

    if settings.tenant and not TENANT_RE.match(settings.tenant):
        problems.append(f"tenant = {settings.tenant!r} ({origin('tenant')}) is neither a GUID nor a domain name")
    if bool(settings.tenant) != bool(settings.app_id):
        missing = "app_id" if settings.tenant else "tenant"
        problems.append(
            f"{missing} is not set but {'tenant' if missing == 'app_id' else 'app_id'} is: "
            f"set both ({option_name(missing)} or {env_name(missing)}) to check a tenant"
        )
    for name in ("expiry_days", "max_lifetime_days", "propagation_timeout_s", "retries"):
        if getattr(settings, name) < 0:
            problems.append(f"{name} = {getattr(settings, name)!r} ({origin(name)}) must not be negative")
    if settings.timeout_s <= 0:
        problems.append(f"timeout_s = {settings.timeout_s!r} ({origin('timeout_s')}) must be positive")
    for name in ("required_role",):
        if role_id(getattr(settings, name)) is None:
            problems.append(
                f"{name} = {getattr(settings, name)!r} ({origin(name)}) is neither a role template ID "
                f"nor one of: {', '.join(sorted(wellknown.DIRECTORY_ROLE_NAMES.values()))}"
            )
    for role in settings.accepted_roles:
        if role_id(role) is None:
            problems.append(f"accepted_roles entry {role!r} ({origin('accepted_roles')}) is not a known role")
    for name in ("cert", "auditor_cert", "admin_cert", "ca_bundle"):
        value = getattr(settings, name)
        if value is not None and not value.exists():
            problems.append(f"{name} = {str(value)!r} ({origin(name)}) does not exist; check the path")
        elif value is not None and value.is_dir():
            problems.append(f"{name} = {str(value)!r} ({origin(name)}) is a directory, not a file")
    if settings.auditor_credential == "certificate" and not (settings.auditor_app_id and settings.auditor_cert):
        problems.append("auditor_credential = 'certificate' needs auditor_app_id and auditor_cert")
    if settings.admin_credential == "certificate" and not (settings.admin_app_id and settings.admin_cert):
        problems.append("admin_credential = 'certificate' needs admin_app_id and admin_cert")
    return problems


def accepted_role_ids(settings: Settings) -> frozenset[str]:
    """The required role plus any configured alternatives, as template IDs."""
    ids = {role_id(settings.required_role)} | {role_id(r) for r in settings.accepted_roles}
    return frozenset(i for i in ids if i)
