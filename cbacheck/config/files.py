"""Input files: one reader for every file cbacheck takes as input, and the config file it finds or is given."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cbacheck.config.table import CONFIG_FILE, ENV_PREFIX, setting_fields
from cbacheck.errors import InputFileError

# Far larger than any real cbacheck.toml or pyproject.toml, small enough to parse at once.
MAX_CONFIG_BYTES = 1024 * 1024
# A password file holds one line.
MAX_SECRET_BYTES = 64 * 1024
# Steering data a config file may hold beside the settings, read by one command: `[[targets]]`, the tenants
# `cbacheck audit` reads (docs/audit.md). Only a file named with --config or CBACHECK_CONFIG may hold them.
COMMAND_TABLES = ("targets",)


RefusalKind = Literal[
    "missing", "permission", "unopenable", "directory", "not-regular", "too-large", "grew", "unreadable"
]


class Refused(Exception):
    """Why `read_regular_file` refused a path, as a kind each caller words in its own error."""

    def __init__(self, kind: RefusalKind, detail: str = "", size: int = 0) -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail  # the system's words for "cannot be opened/read"
        self.size = size  # the file's size for "too-large", what was read for "grew"


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file `path`, at most `max_bytes`; Refused otherwise.

    The file is opened without blocking and judged on the open descriptor, so a FIFO, /dev/zero or a
    device swapped in after a check is refused instead of being read forever.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise Refused("missing") from None
    except PermissionError:
        raise Refused("permission") from None
    except IsADirectoryError:
        raise Refused("directory") from None
    except (OSError, ValueError) as err:
        raise Refused("unopenable", str(getattr(err, "strerror", None) or err)) from None
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise Refused("directory")
        if not stat.S_ISREG(info.st_mode):
            raise Refused("not-regular")
        if info.st_size > max_bytes:
            raise Refused("too-large", size=info.st_size)
        data = _read_at_most(descriptor, max_bytes + 1)
    except IsADirectoryError:
        raise Refused("directory") from None
    except OSError as err:
        raise Refused("unreadable", str(err.strerror or err)) from None
    finally:
        os.close(descriptor)
    if len(data) > max_bytes:
        raise Refused("grew", size=len(data))
    return data


def read_input_bytes(path: Path, what: str, origin: str, *, max_bytes: int) -> bytes:
    """The bytes of the regular file `path`, at most `max_bytes`; InputFileError naming it and its source otherwise."""
    try:
        return read_regular_file(path, max_bytes)
    except Refused as refused:
        raise InputFileError(what, str(path), origin, _input_file_reason(refused, max_bytes)) from None


def parse_input_json(data: bytes, path: Path, what: str, origin: str) -> Any:
    """The JSON value of an input file's bytes (UTF-8); InputFileError naming the file when it is not JSON."""
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as err:
        raise InputFileError(what, str(path), origin, f"is not JSON ({str(err)[:120]})") from None


def read_input_json(path: Path, what: str, origin: str, *, max_bytes: int) -> Any:
    """The JSON value of the regular file `path` (results, audits), read as every input file is."""
    return parse_input_json(read_input_bytes(path, what, origin, max_bytes=max_bytes), path, what, origin)


def read_input_text(path: Path, what: str, origin: str, *, max_bytes: int) -> str:
    """The UTF-8 text of the regular file `path`, at most `max_bytes` long; InputFileError otherwise."""
    data = read_input_bytes(path, what, origin, max_bytes=max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        reason = f"is not UTF-8 text (byte {err.start} cannot be decoded); save it as UTF-8"
        raise InputFileError(what, str(path), origin, reason) from None


def _input_file_reason(refused: Refused, max_bytes: int) -> str:
    return {
        "missing": "cannot be read: it does not exist; check the path",
        "permission": "cannot be read: permission denied; fix its permissions or run as its owner",
        "unopenable": f"cannot be opened: {refused.detail}",
        "directory": "is a directory, not a file",
        "not-regular": "is not a regular file (a pipe, socket or device); give the path of a file",
        "too-large": f"is {refused.size} bytes; cbacheck reads at most {max_bytes} bytes here",
        "grew": f"grew past {max_bytes} bytes while being read",
        "unreadable": f"cannot be read: {refused.detail}",
    }[refused.kind]


def _read_at_most(descriptor: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(descriptor, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class ConfigFile:
    """The config file a run reads: its path, the table inside it, and whether it was named or found."""

    path: Path
    table: str  # '' or 'tool.cbacheck'
    named_by: str | None  # 'option --config' or 'env CBACHECK_CONFIG'; None for a file found in the folder

    @property
    def origin(self) -> str:
        return f"file {self.path}" + (f" [{self.table}]" if self.table else "")


def _table_of(path: Path) -> str:
    return "tool.cbacheck" if path.name == "pyproject.toml" else ""


def find_config_file(cwd: Path, explicit: Path | None, named_by: str = "option --config") -> ConfigFile | None:
    """The config file named explicitly, else cbacheck.toml, else pyproject.toml in `cwd`; None when none."""
    if explicit is not None:
        return ConfigFile(explicit, _table_of(explicit), named_by)
    for name in (CONFIG_FILE, "pyproject.toml"):
        candidate = cwd / name
        # lexists, not is_file: a FIFO or a dangling link under that name is reported, not passed over.
        if os.path.lexists(candidate):
            return ConfigFile(candidate, _table_of(candidate), None)
    return None


def _parse_toml(config: ConfigFile, problems: list[str]) -> dict[str, Any] | None:
    origin = f"named by {config.named_by}" if config.named_by else "found in the working folder"
    try:
        text = read_input_text(config.path, "config file", origin, max_bytes=MAX_CONFIG_BYTES)
    except InputFileError as err:
        problems.append(str(err))
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        problems.append(f"config file {str(config.path)!r} is not valid TOML: {err}")
    except ValueError as err:  # an integer past Python's digit limit
        problems.append(f"config file {str(config.path)!r} is not usable TOML: {err}")
    except RecursionError:
        problems.append(f"config file {str(config.path)!r} nests arrays or tables too deeply to be a config file")
    return None


def _cbacheck_table(config: ConfigFile, problems: list[str]) -> dict[str, Any]:
    """The file's cbacheck table (the whole file, or [tool.cbacheck] of a pyproject.toml); {} on a problem."""
    data = _parse_toml(config, problems)
    if data is None:
        return {}
    for key in filter(None, config.table.split(".")):
        node = data.get(key, {})
        if not isinstance(node, dict):
            problems.append(f"config file {str(config.path)!r}: [{config.table}] must be a table")
            return {}
        data = node
    return data


def read_command_table(config: ConfigFile, name: str, problems: list[str]) -> Any:
    """One of COMMAND_TABLES as the file holds it (None when absent); problems with the file go to `problems`."""
    return _cbacheck_table(config, problems).get(name)


def read_config_file(config: ConfigFile, problems: list[str]) -> dict[str, Any]:
    """The settings the file sets (known keys only); every problem with the file is added to `problems`."""
    data = _cbacheck_table(config, problems)
    known = {f.name for f in setting_fields()}
    for key in data:
        if key in COMMAND_TABLES:
            if config.named_by is None:
                problems.append(
                    f"{key} is set in {str(config.path)!r}, a config file found in the working folder; it chooses "
                    f"which tenants are read, so only a file named with --config or {ENV_PREFIX}CONFIG may hold it"
                )
        elif key not in known:
            problems.append(
                f"config file {str(config.path)!r}: unknown setting {key[:80]!r}; "
                f"known settings: {', '.join(sorted(known))}"
            )
    return {k: v for k, v in data.items() if k in known}


def config_file_named(options_config: Path | None, env: dict[str, str]) -> tuple[Path | None, str]:
    """The explicitly named config file and who named it: `--config` wins over CBACHECK_CONFIG."""
    if options_config is not None:
        return options_config, "option --config"
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"]), f"env {ENV_PREFIX}CONFIG"
    return None, ""
