"""The user's cache folder: where cbacheck keeps small files between runs, which it trusts, and how it writes them.

Only things that are safe to lose live there (msal's discovery documents, digests of validated keys): a file
that is missing, unreadable, of another version, not the user's or writable by others is a miss, never an error,
and a write that fails costs the next run a little time, nothing more.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

# Where ownership cannot be read (Windows has no getuid), no file is trusted: -1 matches no owner.
_USER_ID: Final = os.getuid() if hasattr(os, "getuid") else -1


def cache_file(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME/cbacheck/<name>, or ~/.cache/cbacheck/<name>."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cbacheck" / name


def read_trusted(path: Path, version: int) -> dict[str, Any]:
    """The file's JSON object when it is a regular file of the user, writable by no one else, of that version;
    empty otherwise."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_uid != _USER_ID or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return {}
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) and content.get("version") == version else {}


def write_private(path: Path, content: Mapping[str, Any]) -> None:
    """Replace the file with this JSON object atomically, mode 0600 in a 0700 folder; a failure is ignored."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    except OSError:
        return
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:  # mkstemp creates it 0600
            json.dump(content, out)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
