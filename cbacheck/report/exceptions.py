"""Risk acceptance: the exceptions file (TOML `[[exception]]` entries), read once, checked whole, matched per result."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from cbacheck import catalogue, profiles
from cbacheck.config import GUID_RE, Settings
from cbacheck.errors import ConfigError

# The default profile, and every profile an exception may name (cbacheck/profiles.py).
PROFILE = profiles.DEFAULT
PROFILES = profiles.NAMES
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
KNOWN_KEYS = ("id", "app_id", "profile", "reason", "approver", "expires")
MAX_EXCEPTIONS_BYTES = 1_000_000


@dataclass(frozen=True)
class RiskException:
    """One reviewed, time-limited acceptance of a failing requirement."""

    id: str
    reason: str
    approver: str
    expires: date
    app_id: str | None = None
    profile: str | None = None

    def covers(self, req_id: str, app_id: str | None, profile: str) -> bool:
        return (
            self.id == req_id
            and (self.app_id is None or (app_id or "").lower() == self.app_id)
            and (self.profile is None or self.profile == profile)
        )

    def expired(self, today: date) -> bool:
        """Valid through the whole `expires` day (UTC); from the next day on, the requirement fails again."""
        return today > self.expires

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "app_id": self.app_id,
            "profile": self.profile,
            "reason": self.reason,
            "approver": self.approver,
            "expires": self.expires.isoformat(),
        }


@dataclass(frozen=True)
class ExceptionsFile:
    """The exceptions file as read: where it is, where that was set, its SHA-256 and its entries."""

    path: Path
    source: str
    sha256: str
    entries: tuple[RiskException, ...]

    def matching(self, req_id: str, app_id: str | None, profile: str) -> RiskException | None:
        return next((entry for entry in self.entries if entry.covers(req_id, app_id, profile)), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "source": self.source,
            "sha256": self.sha256,
            "entries": [entry.as_dict() for entry in self.entries],
        }


def load_exceptions(settings: Settings) -> ExceptionsFile | None:
    """The exceptions file the settings name, or None; ConfigError listing every problem in it (exit 2)."""
    path = settings.exceptions
    if path is None:
        return None
    where = f"exceptions = {str(path)!r} ({settings.source('exceptions')})"
    try:
        data = path.read_bytes()[: MAX_EXCEPTIONS_BYTES + 1]
    except OSError as err:
        raise ConfigError([f"{where} cannot be read: {err.strerror or err}"]) from None
    if len(data) > MAX_EXCEPTIONS_BYTES:
        raise ConfigError([f"{where} is larger than {MAX_EXCEPTIONS_BYTES} bytes; it is not an exceptions file"])
    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError([f"{where} is not valid TOML: {err}"]) from None
    problems: list[str] = []
    unknown_tables = sorted(set(parsed) - {"exception"})
    if unknown_tables:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown_tables)}; write one [[exception]] per entry")
    raw_entries = parsed.get("exception", [])
    if not isinstance(raw_entries, list):
        raw_entries = []
        problems.append(f"{where}: 'exception' must be an array of tables ([[exception]])")
    entries = [entry for n, raw in enumerate(raw_entries, 1) if (entry := _entry(raw, f"{where} entry {n}", problems))]
    if problems:
        raise ConfigError(problems)
    return ExceptionsFile(path, settings.source("exceptions"), hashlib.sha256(data).hexdigest(), tuple(entries))


def _text(raw: Mapping[str, Any], key: str, where: str, problems: list[str], required: bool) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            problems.append(f"{where}: {key} is missing; every exception names its {key}")
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: {key} must be a non-empty string")
        return None
    return value.strip()


def _entry(raw: Any, where: str, problems: list[str]) -> RiskException | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: not a table")
        return None
    before = len(problems)
    extra = sorted(set(raw) - set(KNOWN_KEYS))
    if extra:
        problems.append(f"{where}: unknown key(s) {', '.join(extra)} (known: {', '.join(KNOWN_KEYS)})")
    req_id = _text(raw, "id", where, problems, True)
    if req_id is not None and req_id not in catalogue.CATALOGUE and req_id not in catalogue.AUDIT_CATALOGUE:
        problems.append(f"{where}: id {req_id!r} is not a requirement ID of the catalogue")
    reason = _text(raw, "reason", where, problems, True)
    approver = _text(raw, "approver", where, problems, True)
    app_id = _text(raw, "app_id", where, problems, False)
    if app_id is not None and not GUID_RE.match(app_id):
        problems.append(f"{where}: app_id {app_id!r} is not a GUID")
    profile = _text(raw, "profile", where, problems, False)
    if profile is not None and profile not in PROFILES:
        problems.append(f"{where}: profile {profile!r} is not one of: {', '.join(PROFILES)}")
    expires = _expiry(raw.get("expires"), where, problems)
    if len(problems) > before or not (req_id and reason and approver and expires):
        return None
    return RiskException(req_id, reason, approver, expires, app_id.lower() if app_id else None, profile)


def _expiry(value: Any, where: str, problems: list[str]) -> date | None:
    """`expires` as a date: a TOML date or a "YYYY-MM-DD" string; a time of day or any other form is refused."""
    if value is None:
        problems.append(f"{where}: expires is missing; every exception ends on a date (YYYY-MM-DD)")
        return None
    if isinstance(value, date) and type(value) is date:
        return value
    if isinstance(value, str) and DATE_RE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    problems.append(f"{where}: expires {str(value)!r} is not a calendar date YYYY-MM-DD")
    return None


def exception_note(entry: RiskException, exceptions: ExceptionsFile, today: date) -> str:
    """The sentence a result carries about the exception that covers (or covered) it."""
    if entry.expired(today):
        return (
            f"the exception for {entry.id} in {exceptions.path} expired on {entry.expires.isoformat()} "
            f"({entry.reason}; approved by {entry.approver}): the requirement fails again"
        )
    return (
        f"accepted until {entry.expires.isoformat()} by the exception in {exceptions.path} "
        f"({entry.reason}; approved by {entry.approver})"
    )
