"""The fix journal: append-only JSON lines of each action started, answered and finished, so an apply resumes.

The journal decides which application a resumed apply adopts, so it is trusted only as a regular
0600 file owned by the user, created without following a symlink.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from cbacheck.config import Settings
from cbacheck.errors import FixError
from cbacheck.fixers.actions import Action, redact
from cbacheck.fixers.outcomes import DONE_STATUSES, ActionResult, now_stamp

DEFAULT_JOURNAL_NAME: Final = "fix-journal.jsonl"
MAX_JOURNAL_BYTES: Final = 64 * 1024 * 1024
# Only cbacheck's own create request proves an application is cbacheck's; its outputs are never taken
# from the journal blindly (see created_applications).
CREATE_APPLICATION: Final = "CreateApplication"
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class CreatedApplication:
    """An application whose id came back from cbacheck's own POST /applications, with when it was asked for."""

    object_id: str
    app_id: str
    requested_at: datetime
    answered_at: datetime


def _moment(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


class Journal:
    """Append-only JSON lines: each action started and finished, so an interrupted apply can resume.

    A process killed mid-write leaves at most one partial last line; reading skips it, since the
    state re-read before each write (not the journal) decides what is still to do.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, default=str)
        flags = os.O_WRONLY | os.O_APPEND | _NOFOLLOW
        try:
            descriptor = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            descriptor = self._open_trusted(flags)
        with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _open_trusted(self, flags: int) -> int:
        """The journal opened without following a symlink; FixError unless it is the user's own 0600 file."""
        try:
            descriptor = os.open(self.path, flags | _NOFOLLOW)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise self._untrusted("a symbolic link") from err
            raise FixError(f"cannot open the fix journal {str(self.path)!r}: {err.strerror or err}") from err
        info = os.fstat(descriptor)
        problem = ""
        if not stat.S_ISREG(info.st_mode):
            problem = "not a regular file"
        elif hasattr(os, "getuid") and info.st_uid != os.getuid():
            problem = "owned by another user"
        elif info.st_mode & 0o077:
            problem = f"readable or writable by others (mode {stat.S_IMODE(info.st_mode):04o})"
        elif info.st_size > MAX_JOURNAL_BYTES:
            problem = f"larger than {MAX_JOURNAL_BYTES // (1024 * 1024)} MiB"
        if problem:
            os.close(descriptor)
            raise self._untrusted(problem)
        return descriptor

    def _untrusted(self, problem: str) -> FixError:
        return FixError(
            f"the fix journal {str(self.path)!r} is {problem}; nothing was changed. cbacheck trusts only a "
            "regular file of mode 0600 owned by you, because the journal decides which application a resumed "
            "apply adopts. Check its content, then move it aside (or chmod 600 it) and run again."
        )

    def check(self) -> None:
        """FixError when an existing journal cannot be trusted (before anything is asked or changed)."""
        self.records()

    def started(self, action: Action, tenant: str, request: Mapping[str, Any]) -> None:
        self._append(
            {
                "event": "started",
                "at": now_stamp(),
                "tenant": tenant,
                "action": action.id,
                "kind": action.kind,
                "request": redact(request),
            }
        )

    def answered(
        self, action: Action, tenant: str, status: int | None, request_id: str, created: Mapping[str, Any]
    ) -> None:
        """Graph answered the write: recorded at once, so the ids it created survive a kill before finished."""
        self._append(
            {
                "event": "answered",
                "at": now_stamp(),
                "tenant": tenant,
                "action": action.id,
                "kind": action.kind,
                "status": status,
                "request_id": request_id,
                "created": redact(dict(created)),
            }
        )

    def finished(self, result: ActionResult, tenant: str) -> None:
        self._append(
            {
                "event": "finished",
                "at": now_stamp(),
                "tenant": tenant,
                "action": result.action_id,
                "result": result.as_dict(),
            }
        )

    def records(self) -> list[dict[str, Any]]:
        try:
            descriptor = self._open_trusted(os.O_RDONLY)
        except FixError:
            if not os.path.lexists(self.path):
                return []
            raise
        with os.fdopen(descriptor, "rb") as handle:
            data = handle.read(MAX_JOURNAL_BYTES + 1)
        records: list[dict[str, Any]] = []
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def outputs(self, tenant: str) -> dict[str, dict[str, Any]]:
        """Outputs of actions finished as applied or already done in this tenant, newest last.

        A created application's ids are left out: only created_applications may name one.
        """
        found: dict[str, dict[str, Any]] = {}
        for record in self.records():
            result = record.get("result")
            if (
                record.get("event") == "finished"
                and record.get("tenant") == tenant
                and isinstance(result, dict)
                and result.get("status") in DONE_STATUSES
                and result.get("kind") != CREATE_APPLICATION
                and isinstance(result.get("output"), dict)
            ):
                found[str(record["action"])] = dict(result["output"])
        return found

    def unfinished(self, tenant: str) -> set[str]:
        """Actions whose write was started but never recorded as finished (the process was interrupted)."""
        open_actions: set[str] = set()
        for record in self.records():
            if record.get("tenant") != tenant:
                continue
            if record.get("event") == "started":
                open_actions.add(str(record.get("action")))
            elif record.get("event") == "finished":
                open_actions.discard(str(record.get("action")))
        return open_actions

    def created_applications(self, tenant: str) -> list[CreatedApplication]:
        """Applications whose ids came back from cbacheck's own create request in this tenant, oldest first."""
        asked: dict[str, datetime] = {}
        created: list[CreatedApplication] = []
        for record in self.records():
            if record.get("tenant") != tenant or record.get("kind") != CREATE_APPLICATION:
                continue
            at = _moment(record.get("at"))
            action = str(record.get("action"))
            if record.get("event") == "started" and at is not None:
                asked[action] = at
            elif record.get("event") == "answered" and at is not None and action in asked:
                ids = record.get("created")
                if isinstance(ids, dict) and ids.get("id") and ids.get("appId"):
                    created.append(CreatedApplication(str(ids["id"]), str(ids["appId"]), asked.pop(action), at))
        return created

    def unanswered_creates(self, tenant: str) -> list[str]:
        """When create requests were sent whose answer was never recorded (the app may exist, its id is unknown)."""
        open_requests: dict[str, str] = {}
        for record in self.records():
            if record.get("tenant") != tenant or record.get("kind", _kind_of(record)) != CREATE_APPLICATION:
                continue
            action = str(record.get("action"))
            found = record.get("result")
            result: dict[str, Any] = found if isinstance(found, dict) else {}
            if record.get("event") == "started":
                open_requests[action] = str(record.get("at"))
            elif record.get("event") == "answered" or result.get("response_status") is not None:
                # Graph answered: with the new ids (answered) or with an error (finished, failed), so no app
                # is unaccounted for. A finished record without a response (cbacheck stopped) answers nothing.
                open_requests.pop(action, None)
        return list(open_requests.values())


def _kind_of(record: Mapping[str, Any]) -> str:
    result = record.get("result")
    return str(result.get("kind", "")) if isinstance(result, dict) else ""


def journal_path(settings: Settings) -> Path:
    """The journal setting, or fix-journal.jsonl in the report folder."""
    return settings.journal or settings.report_dir / DEFAULT_JOURNAL_NAME
