"""The Evidence recorder checks write to: what was observed, what was expected, and where it came from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from cbacheck.facts import Source

SECRET_MARK = "(secret withheld)"


class ExtrasBuilder(Protocol):
    """The part of `pytest_html.extras` the evidence uses; passed in so only plugin.py imports pytest_html."""

    def json(self, content: Any, name: str = ...) -> dict[str, Any]: ...

    def text(self, content: str, name: str = ...) -> dict[str, Any]: ...

    def url(self, content: str, name: str = ...) -> dict[str, Any]: ...

    def html(self, content: str) -> dict[str, Any]: ...


def jsonable(label: str, value: Any) -> Any:
    """The value as plain JSON data; anything else is a mistake in the check, named by its label."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Source):
        return value.as_dict()
    if isinstance(value, Mapping):
        return {str(key): jsonable(f"{label}.{key}", item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((jsonable(label, item) for item in value), key=str)
    if isinstance(value, list | tuple):
        return [jsonable(f"{label}[{index}]", item) for index, item in enumerate(value)]
    # Bytes are refused rather than encoded: in this tool they are key material more often than not.
    raise TypeError(
        f"evidence {label!r} is a {type(value).__name__}; record str, numbers, lists or dicts "
        "(dates and paths are converted)"
    )


def redacted(value: Any, secrets: Iterable[str]) -> Any:
    """The value with every string that contains a secret withheld whole, however deep it sits.

    Only values are looked at, never dict keys (labels and field names are the check's and cbacheck's
    own words, and a short password must not rewrite them), and a value is withheld as a whole, so the
    place of the match gives nothing of the secret away. Anything that is not a str, dict, list or
    tuple is returned unchanged.
    """
    secrets = [s for s in secrets if s]
    if not secrets:
        return value
    if isinstance(value, str):
        return SECRET_MARK if any(secret in value for secret in secrets) else value
    if isinstance(value, dict):
        return {key: redacted(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redacted(item, secrets) for item in value)
    return value


class Evidence:
    """What one check saw. Values must be JSON data; the plugin adds the sources of the facts used."""

    def __init__(self, requirement_id: str = "") -> None:
        self.requirement_id = requirement_id
        self._observed: dict[str, Any] = {}
        self._expected: list[str] = []
        self._details: dict[str, Any] = {}
        self._sources: list[dict[str, Any]] = []
        self._changes = 0
        self._drained_at = 0
        self._links_attached = False

    def observed(self, label: str, value: Any) -> None:
        """A value read from the certificate or the tenant that the verdict rests on."""
        self._observed[label] = jsonable(label, value)
        self._changes += 1

    def expected(self, text: str) -> None:
        """The rule applied, in words (e.g. 'at least 30 days left')."""
        self._expected.append(str(text))
        self._changes += 1

    def add(self, label: str, value: Any) -> None:
        """Any further detail a reviewer may want (the matching rule, the candidates considered)."""
        self._details[label] = jsonable(label, value)
        self._changes += 1

    def source(self, src: Source) -> None:
        """The request a fact came from; each distinct request is kept once."""
        entry = src.as_dict()
        if entry not in self._sources:
            self._sources.append(entry)
            self._changes += 1

    @property
    def empty(self) -> bool:
        return not (self._observed or self._expected or self._details or self._sources)

    def as_dict(self) -> dict[str, Any]:
        return {
            "observed": dict(self._observed),
            "expected": list(self._expected),
            "details": dict(self._details),
            "sources": list(self._sources),
        }

    def drain_as_extras(
        self, extras: ExtrasBuilder, *, remediation: str = "", reference: str = "", secrets: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """pytest-html extras for what was recorded since the last drain, so each lands on one phase report.

        The remediation and reference links are attached once, with the first drain.
        """
        attached: list[dict[str, Any]] = []
        if self._changes != self._drained_at and not self.empty:
            name = f"Evidence {self.requirement_id}".rstrip()
            attached.append(extras.json(redacted(self.as_dict(), secrets), name=name))
        self._drained_at = self._changes
        if not self._links_attached:
            self._links_attached = True
            if remediation:
                attached.append(extras.text(remediation, name="Remediation"))
            if reference:
                attached.append(extras.url(reference, name="Reference"))
        return attached
