"""What applying one action did (ActionResult) and the statuses it can end in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from cbacheck.fixers.actions import redact

APPLIED: Final = "applied"
ALREADY_DONE: Final = "already-done"
FAILED: Final = "failed"
SKIPPED_DEPENDENCY_FAILED: Final = "skipped-dependency-failed"
MANUAL: Final = "manual"
# Waits for an earlier action's effect to be proven (e.g. the old key goes only after the new one
# got a token); apply_and_verify runs it again once the proof is in.
WAITING_FOR_VERIFICATION: Final = "waiting-for-verification"
DONE_STATUSES: Final = frozenset({APPLIED, ALREADY_DONE})


def now_stamp() -> str:
    """Now, as ISO 8601 UTC with milliseconds and Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ActionResult:
    """What applying one action did: state before, the request (secrets elided), the answer, state after."""

    action_id: str
    kind: str
    status: str
    mends: tuple[str, ...] = ()
    before: Any = None
    request: Mapping[str, Any] | None = None
    response_status: int | None = None
    request_id: str = ""
    after: Any = None
    error: str = ""
    error_code: str = ""
    started_at: str = ""
    finished_at: str = ""
    output: Mapping[str, Any] = field(default_factory=dict)  # ids and paths later actions and probes use

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "kind": self.kind,
            "status": self.status,
            "mends": list(self.mends),
            "before": self.before,
            "request": dict(self.request) if self.request is not None else None,
            "response_status": self.response_status,
            "request_id": self.request_id,
            "after": self.after,
            "error": self.error,
            "error_code": self.error_code,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "output": dict(self.output),
        }


def report_output(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs fit for the journal and the reports: the certificate bytes are described, not copied."""
    shown = {name: value for name, value in outputs.items() if name != "der_base64"}
    return dict(redact(shown))
