"""Files the sandbox writes into its workdir (the CA and private keys): created new, never through a symlink.

A workdir may be shared or prepared by someone else; a symlink planted in it must not make the
sandbox write an unencrypted private key somewhere else, so every path below the workdir is
opened relative to a folder descriptor with O_NOFOLLOW, and files are created with O_EXCL.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Final

from cbacheck.sandbox.faults import SandboxError

KEY_MODE: Final = 0o600
PUBLIC_MODE: Final = 0o644
_FOLDER_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _refusal(workdir: Path, relative: str, problem: str) -> SandboxError:
    return SandboxError(
        f"workdir '{workdir}': '{workdir / relative}' {problem}; the sandbox writes private keys there and "
        "follows no symlink. Remove it, or pick an empty --workdir."
    )


def write_file(workdir: Path, relative: str, data: bytes, mode: int) -> Path:
    """Write data to workdir/relative (folders made 0700), replacing only a regular file there."""
    parts = Path(relative).parts
    try:
        folder = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"workdir '{workdir}' cannot be opened: {exc.strerror or exc}") from None
    try:
        for depth, name in enumerate(parts[:-1], start=1):
            child = _enter(folder, name, workdir, "/".join(parts[:depth]))
            os.close(folder)
            folder = child
        _replace(folder, parts[-1], data, mode, workdir, relative)
    finally:
        os.close(folder)
    return workdir / relative


def _enter(parent: int, name: str, workdir: Path, shown: str) -> int:
    """The descriptor of folder ``name`` in parent, created 0700 if absent, never through a symlink."""
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        return os.open(name, _FOLDER_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            problem = "is a symlink" if _is_symlink(parent, name) else "is not a folder"
            raise _refusal(workdir, shown, problem) from None
        raise SandboxError(f"workdir '{workdir}': cannot create '{shown}': {exc.strerror or exc}") from None


def _replace(folder: int, name: str, data: bytes, mode: int, workdir: Path, shown: str) -> None:
    try:
        info = os.lstat(name, dir_fd=folder)
    except FileNotFoundError:
        info = None
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise _refusal(workdir, shown, "is a symlink")
        if not stat.S_ISREG(info.st_mode):
            raise _refusal(workdir, shown, "exists and is not a regular file")
        os.unlink(name, dir_fd=folder)  # a file of an earlier run; a new one is created below
    try:
        fd = os.open(name, _NEW_FILE_FLAGS, mode, dir_fd=folder)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ELOOP):
            raise _refusal(workdir, shown, "appeared while it was being written (a symlink?)") from None
        raise SandboxError(f"workdir '{workdir}': cannot write '{shown}': {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(data)


def _is_symlink(folder: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=folder).st_mode)
    except OSError:
        return False
