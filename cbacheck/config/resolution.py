"""Resolving settings: option > environment > config file > default; who may set what; cross-setting rules."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cbacheck import profiles, wellknown
from cbacheck.config.files import (
    MAX_SECRET_BYTES,
    ConfigFile,
    config_file_named,
    find_config_file,
    read_config_file,
    read_input_text,
)
from cbacheck.config.table import (
    ENDPOINT_SETTINGS,
    ENV_PREFIX,
    TENANT_RE,
    Settings,
    env_name,
    option_name,
    role_id,
    setting_fields,
)
from cbacheck.config.values import convert
from cbacheck.errors import ConfigError, InputFileError

ALLOW_CUSTOM_ENDPOINTS = option_name("allow_custom_endpoints")

# (raw value, where it came from, whether it is text to parse)
Picked = tuple[Any, str, bool]


def resolve(
    options: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    config_file: Path | None = None,
    *,
    app_under_test: bool = True,
) -> Settings:
    """Resolve every setting: option > environment > config file > default.

    `app_under_test=False` (the tenant audit) needs no app_id beside the tenant: it reads with the auditor alone.

    A config file found in `cwd` may set only settings that describe the subject; the rest come from
    an option, the environment or a file named by `config_file` or CBACHECK_CONFIG. All problems are
    collected and raised together as one ConfigError, one line each.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    environment = dict(os.environ if env is None else env)
    problems: list[str] = []
    explicit, named_by = config_file_named(config_file, environment)
    config = find_config_file(cwd or Path.cwd(), explicit, named_by)
    file_values = read_config_file(config, problems) if config is not None else {}
    if config is not None and config.named_by is None:
        problems.extend(refuse_steering(config, file_values))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in setting_fields():
        picked = _pick(spec, options, environment, file_values, config, problems)
        if picked is None:
            continue
        raw, origin, from_text = picked
        value, problem = convert(spec, raw, origin, from_text=from_text)
        if problem is not None:
            problems.append(problem)
        elif value is not None:
            values[spec.name] = value
            sources[spec.name] = origin
    settings = Settings(**values, sources=sources)
    problems.extend(validate(settings, app_under_test=app_under_test))
    if problems:
        raise ConfigError(problems)
    return settings


def refuse_steering(config: ConfigFile, file_values: dict[str, Any]) -> list[str]:
    """One line per key a found config file sets that it may not; the keys are dropped from `file_values`."""
    problems = []
    for spec in setting_fields():
        # A command-line-only setting is reported by _pick, for a named file as much as a found one.
        if spec.name not in file_values or spec.metadata["trust"] != "steering":
            continue
        del file_values[spec.name]
        where = [option_name(spec.name)] if spec.metadata["cli"] else []
        problems.append(
            f"{spec.name} is set in {str(config.path)!r}, a config file found in the working folder, which may "
            "set only what describes the subject (tenant, app, certificates, identities, report paths): "
            f"give {spec.name} as {' or '.join([*where, env_name(spec.name)])}, or name a trusted file "
            f"with --config or {ENV_PREFIX}CONFIG"
        )
    return problems


def _pick(
    spec: dataclasses.Field[Any],
    options: Mapping[str, Any],
    env: Mapping[str, str],
    file_values: Mapping[str, Any],
    config: ConfigFile | None,
    problems: list[str],
) -> Picked | None:
    """The raw value that wins for one setting, or None (default, or a problem already recorded)."""
    name = spec.name
    kind, trust = spec.metadata["kind"], spec.metadata["trust"]
    if name in options and kind == "secret":
        # Secrets never come from the command line: shell history and process lists keep them.
        problems.append(f"{name} cannot be given as an option; set {env_name(name)} or {env_name(name)}_FILE")
        return None
    if trust == "command_line":
        return _pick_command_line(name, options, env, file_values, config, problems)
    if name in options:
        return options[name], f"option {option_name(name)}", True
    if env_name(name) in env:
        return env[env_name(name)], f"env {env_name(name)}", True
    if kind == "secret" and env_name(name) + "_FILE" in env:
        origin = f"file named by env {env_name(name)}_FILE"
        try:
            text = read_input_text(
                Path(env[env_name(name) + "_FILE"]), f"{name} file", origin, max_bytes=MAX_SECRET_BYTES
            )
        except InputFileError as err:
            problems.append(str(err))
            return None
        return text.rstrip("\r\n"), origin, True
    if name in file_values and config is not None:
        return file_values[name], config.origin, False
    return None


def _pick_command_line(
    name: str,
    options: Mapping[str, Any],
    env: Mapping[str, str],
    file_values: Mapping[str, Any],
    config: ConfigFile | None,
    problems: list[str],
) -> Picked | None:
    """A setting only an option may give: from the environment or a file it is an error, never ignored."""
    if env_name(name) in env:
        problems.append(
            f"{env_name(name)} is set, but {name} can only be given on the command line ({option_name(name)})"
        )
    if name in file_values and config is not None:
        problems.append(
            f"{name} is set in {str(config.path)!r}, but it can only be given on the command line ({option_name(name)})"
        )
    if name in options:
        return options[name], f"option {option_name(name)}", True
    return None


def validate(settings: Settings, *, app_under_test: bool = True) -> list[str]:
    """Cross-field rules; one line per problem."""
    return [
        *_identity_problems(settings, app_under_test),
        *_role_problems(settings),
        *_profile_problems(settings),
        *_file_problems(settings),
        *endpoint_problems(settings),
    ]


def _identity_problems(settings: Settings, app_under_test: bool = True) -> list[str]:
    problems: list[str] = []
    if settings.tenant and not TENANT_RE.match(settings.tenant):
        problems.append(
            f"tenant = {settings.tenant[:80]!r} ({settings.source('tenant')}) is neither a GUID nor a domain name"
        )
    if app_under_test and bool(settings.tenant) != bool(settings.app_id):
        missing = "app_id" if settings.tenant else "tenant"
        problems.append(
            f"{missing} is not set but {'tenant' if missing == 'app_id' else 'app_id'} is: "
            f"set both ({option_name(missing)} or {env_name(missing)}) to check a tenant"
        )
    if settings.auditor_credential == "certificate" and not (settings.auditor_app_id and settings.auditor_cert):
        problems.append("auditor_credential = 'certificate' needs auditor_app_id and auditor_cert")
    if settings.admin_credential == "certificate" and not (settings.admin_app_id and settings.admin_cert):
        problems.append("admin_credential = 'certificate' needs admin_app_id and admin_cert")
    return problems


def _profile_problems(settings: Settings) -> list[str]:
    problems = [
        f"profile entry {name[:80]!r} ({settings.source('profile')}) is not one of: {', '.join(profiles.NAMES)}"
        for name in settings.profile
        if name not in profiles.PROFILES
    ]
    if not settings.profile:
        problems.append(f"profile ({settings.source('profile')}) names no profile; one of: {', '.join(profiles.NAMES)}")
    if len(set(settings.profile)) != len(settings.profile):
        problems.append(f"profile ({settings.source('profile')}) names a profile twice: {', '.join(settings.profile)}")
    return problems


def _role_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    if role_id(settings.required_role) is None:
        problems.append(
            f"required_role = {settings.required_role[:80]!r} ({settings.source('required_role')}) is neither a "
            f"role template ID nor one of: {', '.join(sorted(wellknown.DIRECTORY_ROLE_NAMES.values()))}"
        )
    for role in settings.accepted_roles:
        if role_id(role) is None:
            problems.append(
                f"accepted_roles entry {role[:80]!r} ({settings.source('accepted_roles')}) is not a known role"
            )
    return problems


def _file_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    for name in ("cert", "auditor_cert", "admin_cert", "ca_bundle"):
        value = getattr(settings, name)
        if value is not None and not value.exists():
            problems.append(f"{name} = {str(value)!r} ({settings.source(name)}) does not exist; check the path")
        elif value is not None and value.is_dir():
            problems.append(f"{name} = {str(value)!r} ({settings.source(name)}) is a directory, not a file")
    return problems


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_microsoft_host(host: str, cloud: wellknown.Cloud, name: str) -> bool:
    """The host is the cloud's own host for this endpoint, or under it."""
    documented = urlsplit(getattr(cloud, name)).hostname or ""
    return host == documented or host.endswith("." + documented)


def endpoint_problems(settings: Settings) -> list[str]:
    """An endpoint outside the cloud's Microsoft hosts would receive the tenant's tokens: refuse it.

    Exceptions: `--allow-custom-endpoints` on the command line, and a loopback host (the sandbox)
    given by an option or in a run marked as the sandbox.
    """
    if settings.allow_custom_endpoints:
        return []
    cloud = wellknown.CLOUDS[settings.cloud]
    problems = []
    for name in ENDPOINT_SETTINGS:
        url = getattr(settings, name)
        if url is None:
            continue
        host = urlsplit(url).hostname or ""
        source = settings.source(name)
        if is_microsoft_host(host, cloud, name):
            continue
        if is_loopback(host) and (settings.sandbox or source.startswith("option ")):
            continue
        problems.append(
            f"{name} = {url!r} ({source}) is not a host of the {cloud.name} cloud "
            f"({urlsplit(getattr(cloud, name)).hostname}) and would receive the tenant's tokens; "
            f"give {ALLOW_CUSTOM_ENDPOINTS} on the command line if this endpoint is meant"
        )
    return problems
