"""Change since the last run: an earlier results file (schema 1 or 2) read, and each result's change named."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cbacheck.config import Settings, parse_input_json, read_input_bytes
from cbacheck.errors import ConfigError, InputFileError
from cbacheck.report.exceptions import PROFILE
from cbacheck.report.gate import result_key

SCHEMA_PREFIX = "https://cbacheck.dev/schema/results/"
READABLE_VERSIONS = ("1", "2")
CHANGES = ("same", "fixed", "broken", "added", "removed")
# Whether an outcome stands (the requirement holds or its risk was accepted) or is broken; the rest are neutral.
HOLDS = ("passed", "accepted", "warning")
NOT_HOLDING = ("failed", "blocked", "error", "pending")
MAX_RESULTS_BYTES = 50_000_000


@dataclass(frozen=True)
class Previous:
    """The earlier run: where its file is, its SHA-256, when it started, and its outcome per result key."""

    path: Path
    sha256: str
    schema: str
    started: str
    outcomes: dict[tuple[str, str, str], str]


def load_previous(settings: Settings) -> Previous | None:
    """The results file --compare names, or None; ConfigError when it is no cbacheck results file (exit 2)."""
    path = settings.compare
    if path is None:
        return None
    where = f"compare = {str(path)!r} ({settings.source('compare')})"
    origin = settings.source("compare")
    try:
        data = read_input_bytes(path, "results file", origin, max_bytes=MAX_RESULTS_BYTES)
        document = parse_input_json(data, path, "results file", origin)
    except InputFileError as err:  # the plugin reports setting problems as ConfigError (exit 2)
        raise ConfigError([str(err)]) from None
    schema = document.get("schema") if isinstance(document, dict) else None
    version = str(schema).removeprefix(SCHEMA_PREFIX) if isinstance(schema, str) else ""
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_PREFIX) or version not in READABLE_VERSIONS:
        raise ConfigError(
            [f"{where} is not a cbacheck results file of schema version {' or '.join(READABLE_VERSIONS)}"]
        )
    try:
        outcomes = _outcomes(document)
    except (KeyError, TypeError, AttributeError):
        raise ConfigError([f"{where} does not match the results schema {version}"]) from None
    started = str(document.get("run", {}).get("started", ""))
    return Previous(path, hashlib.sha256(data).hexdigest(), schema, started, outcomes)


def _outcomes(document: Mapping[str, Any]) -> dict[tuple[str, str, str], str]:
    """Outcome per (app, profile, ID); version 1 has neither per result: the run's app_id and the one profile."""
    run_app = document["run"]["settings"].get("app_id", {}).get("value") or ""
    out = {}
    for record in document["requirements"]:
        key = result_key({"app_id": record.get("app_id", run_app), "profile": record.get("profile", PROFILE), **record})
        out[key] = str(record["outcome"])
    return out


def change_of(now: str, before: str | None) -> str:
    if before is None:
        return "added"
    if now in HOLDS and before in NOT_HOLDING:
        return "fixed"
    if now in NOT_HOLDING and before in HOLDS:
        return "broken"
    return "same"


def mark_changes(requirements: Sequence[dict[str, Any]], previous: Previous) -> dict[str, Any]:
    """Give each result its `change` (and `previous_outcome` when it differs); the comparison for the document."""
    seen = set()
    for record in requirements:
        key = result_key(record)
        seen.add(key)
        before = previous.outcomes.get(key)
        record["change"] = change_of(record["outcome"], before)
        record["previous_outcome"] = before if before is not None and before != record["outcome"] else None
    removed = [
        {"app_id": app or None, "profile": profile, "id": req_id, "previous_outcome": outcome}
        for (app, profile, req_id), outcome in previous.outcomes.items()
        if (app, profile, req_id) not in seen
    ]
    counts = dict.fromkeys(CHANGES, 0)
    for record in requirements:
        counts[record["change"]] += 1
    counts["removed"] = len(removed)
    return {
        "previous": str(previous.path),
        "sha256": previous.sha256,
        "schema": previous.schema,
        "previous_started": previous.started,
        "counts": counts,
        "removed": removed,
    }


def change_lines(document: Mapping[str, Any]) -> list[str]:
    """What changed since the earlier run, first in the console: one line per change kind, IDs with transitions."""
    comparison = document.get("comparison")
    if not comparison:
        return []
    lines = [f"changes since {comparison['previous']} ({comparison['previous_started'] or 'unknown start'}):"]
    for change in ("broken", "fixed", "added"):
        records = [r for r in document["requirements"] if r.get("change") == change]
        if records:
            lines.append(f"  {change}: " + ", ".join(_transition(r) for r in records))
    moved = [r for r in document["requirements"] if r.get("change") == "same" and r.get("previous_outcome")]
    if moved:
        lines.append("  outcome changed: " + ", ".join(_transition(r) for r in moved))
    if comparison["removed"]:
        lines.append(
            "  removed: " + ", ".join(f"{r['id']} (was {r['previous_outcome']})" for r in comparison["removed"])
        )
    if len(lines) == 1:
        lines.append("  nothing changed")
    return lines


def _transition(record: Mapping[str, Any]) -> str:
    before = record.get("previous_outcome")
    return f"{record['id']} ({before} -> {record['outcome']})" if before else f"{record['id']} ({record['outcome']})"
