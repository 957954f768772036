"""The fix journal: append-only JSON lines of each action started and finished, so an interrupted apply resumes."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from cbacheck.config import Settings
from cbacheck.errors import FixError
from cbacheck.fixers.actions import Action, redact
from cbacheck.fixers.outcomes import DONE_STATUSES, ActionResult, now_stamp

DEFAULT_JOURNAL_NAME: Final = "fix-journal.jsonl"


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
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def started(self, action: Action, tenant: str, request: Mapping[str, Any]) -> None:
        self._append(
            {"event": "started", "at": now_stamp(), "tenant": tenant, "action": action.id, "request": redact(request)}
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
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise FixError(f"cannot read the fix journal {str(self.path)!r}: {err.strerror or err}") from err
        records: list[dict[str, Any]] = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def outputs(self, tenant: str) -> dict[str, dict[str, Any]]:
        """Outputs of actions finished as applied or already done in this tenant, newest last."""
        found: dict[str, dict[str, Any]] = {}
        for record in self.records():
            result = record.get("result")
            if (
                record.get("event") == "finished"
                and record.get("tenant") == tenant
                and isinstance(result, dict)
                and result.get("status") in DONE_STATUSES
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


def journal_path(settings: Settings) -> Path:
    """The journal setting, or fix-journal.jsonl in the report folder."""
    return settings.journal or settings.report_dir / DEFAULT_JOURNAL_NAME
