"""The tenants one `cbacheck audit` reads: `[[targets]]` of a named config file, and the share of one `--shard I/N`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cbacheck.config import CLOUD_NAMES, TENANT_RE
from cbacheck.config.files import config_file_named, find_config_file, read_command_table
from cbacheck.errors import ConfigError, InputError

TARGET_KEYS = ("tenant", "name", "cloud")
# A target's name names its report files (audit-<name>.json), so it is one safe file-name word.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHARD_RE = re.compile(r"^([0-9]{1,6})/([0-9]{1,6})$")


@dataclass(frozen=True)
class Target:
    tenant: str
    name: str  # the tenant when the file gives no name
    cloud: str | None = None  # None: the cloud setting


def load_targets(config: Path | None, env: Mapping[str, str] | None = None) -> list[Target]:
    """The `[[targets]]` of the config file named by --config or CBACHECK_CONFIG; [] when none is named or it
    holds none. A found file's targets are refused while the settings are resolved (config/files.py)."""
    explicit, named_by = config_file_named(config, dict(os.environ if env is None else env))
    if explicit is None:
        return []
    named = find_config_file(Path.cwd(), explicit, named_by)
    assert named is not None
    problems: list[str] = []
    raw = read_command_table(named, "targets", problems)
    if problems:
        raise ConfigError(problems)
    return [] if raw is None else parse_targets(raw, str(explicit))


def parse_targets(raw: Any, origin: str) -> list[Target]:
    """Targets from the TOML value of `targets`; every problem named with its place in the file."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError([f"targets in {origin!r}: expected one or more [[targets]] tables"])
    problems: list[str] = []
    targets: list[Target] = []
    for index, entry in enumerate(raw):
        where = f"targets[{index}] in {origin!r}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a table with {', '.join(TARGET_KEYS)}")
            continue
        problems += [
            f"{where}: unknown key {key[:40]!r}; known: {', '.join(TARGET_KEYS)}"
            for key in entry.keys() - set(TARGET_KEYS)
        ]
        tenant, name, cloud = entry.get("tenant"), entry.get("name", entry.get("tenant")), entry.get("cloud")
        if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
            problems.append(f"{where}: tenant must be a tenant GUID or domain, got {str(tenant)[:80]!r}")
            continue
        if not isinstance(name, str) or not NAME_RE.match(name):
            problems.append(f"{where}: name must be letters, digits, '.', '_' or '-' (it names the report files)")
            continue
        if cloud is not None and cloud not in CLOUD_NAMES:
            problems.append(f"{where}: cloud must be one of {', '.join(CLOUD_NAMES)}, got {str(cloud)[:40]!r}")
            continue
        targets.append(Target(tenant, name, cloud))
    names = [t.name.lower() for t in targets]
    problems += [
        f"targets in {origin!r}: the name {n!r} is given twice"
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    if problems:
        raise ConfigError(problems)
    return targets


def parse_shard(text: str) -> tuple[int, int]:
    """(I, N) from `--shard I/N`: this is the I-th of N shards, 1 <= I <= N."""
    match = SHARD_RE.match(text.strip())
    if not match:
        raise InputError([f"--shard {text[:40]!r}: expected I/N, such as 2/5 (the second of five shards)"])
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise InputError([f"--shard {text}: I must be between 1 and N (1 <= I <= N); shards are numbered from 1"])
    return index, count


def shard_of(targets: Sequence[Target], index: int, count: int) -> list[Target]:
    """The targets of shard `index` of `count`: in the order of their names (case-folded), the k-th target
    (from 0) goes to shard k mod count + 1. Every target is in exactly one shard, the shards differ in size by
    at most one, and the split depends only on the names, never on the file's order."""
    ordered = sorted(targets, key=lambda t: (t.name.casefold(), t.name))
    return [target for k, target in enumerate(ordered) if k % count == index - 1]
