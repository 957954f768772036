"""One raw setting value (option or environment text, a TOML value) turned into its typed form, or refused."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import reprlib
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cbacheck.config.table import GUID_RE, Kind

# Far past any sensible setting; int() of a longer text would be slow or refused by Python itself.
MAX_NUMBER_CHARS = 32
INTEGER_RE = re.compile(r"[+-]?[0-9]{1,18}")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


class Rejected(Exception):
    """The raw value cannot be the setting's value; str() is the end of the sentence ("is not a number")."""


Converter = Callable[[dataclasses.Field[Any], Any, bool], Any]

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = 6
_short.maxdict = 6
_short.maxlevel = 3


def shown(raw: Any) -> str:
    """The raw value for a one-line message: escaped, and short however long or deep it is."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() > 64:
        return f"(a number of about {int(raw.bit_length() * 0.30103)} digits)"
    return _short.repr(raw)


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # os.environ and sys.argv keep undecodable bytes as lone surrogates; no report can print them.
        raise Rejected("is not UTF-8 text (a name in another encoding: rename the file or folder)") from None
    return text


def _plain(text: str) -> str:
    """UTF-8 without control characters: a value with a line break could forge lines in a pipeline log."""
    if any(unicodedata.category(char) == "Cc" for char in _utf8(text)):
        raise Rejected("holds a control character (a line break, tab or escape)")
    return text


def _text(spec: dataclasses.Field[Any], raw: Any, from_text: bool) -> str:
    if not isinstance(raw, str):
        raise Rejected("is not a string")
    return _plain(raw)


def _secret(spec: dataclasses.Field[Any], raw: Any, from_text: bool) -> str:
    if not isinstance(raw, str):
        raise Rejected("is not a string")
    return _utf8(raw)


def _guid(spec: dataclasses.Field[Any], raw: Any, from_text: bool) -> str:
    if not isinstance(raw, str) or not GUID_RE.match(raw.strip()):
        raise Rejected("is not a GUID like 00000000-0000-0000-0000-000000000000")
    return raw.strip().lower()


def _url(spec: dataclasses.Field[Any], raw: Any, from_text: bool) -> str:
    if not isinstance(raw, str) or not raw.startswith("https://") or any(c.isspace() for c in raw):
        raise Rejected("is not an https:// URL")
    _utf8(raw)
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - a port that is not a number raises here, not later in a request
    except ValueError:
        raise Rejected("is not an https:// URL") from None
    if not parts.hostname or parts.username is not None or parts.query or parts.fragment:
        raise Rejected("is not an https:// base URL (a host, no user name, query or fragment)")
    return raw.rstrip("/")


def _path(spec: dataclasses.Field[Any], raw: Any, from_text: bool) -> Path:
    if not isinstance(raw, str | Path) or not str(raw):
        raise Rejected("is not a path")
    return Path(os.path.expanduser(_plain(str(raw))))


def _within_limits(spec: dataclasses.Field[Any], value: float) -> None:
    low, high = spec.metadata["minimum"], spec.metadata["maximum"]
    if low is not None and high is not None and not low <= value <= high:
        raise Rejected(f"is outside {low:g} to {high:g}")


def _int(spec: dataclasses.Field[Any], raw: Any, from_text: bool) -> int:
    if from_text and isinstance(raw, str):
        text = raw.strip()
        if not INTEGER_RE.fullmatch(text):
            raise Rejected("is not a whole number")
        value = int(text)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        # 3.7 is not read as 3: a setting that silently changes is worse than one refused.
        raise Rejected("is not a whole number")
    _within_limits(spec, value)
    return value


def _float(spec: dataclasses.Field[Any], raw: Any, from_text: bool) -> float:
    if from_text and isinstance(raw, str):
        if len(raw) > MAX_NUMBER_CHARS:
            raise Rejected("is not a number")
        try:
            value = float(raw)
        except ValueError:
            raise Rejected("is not a number") from None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    else:
        raise Rejected("is not a number")
    if not math.isfinite(value):
        raise Rejected("is not a finite number")
    _within_limits(spec, value)
    return value


def _bool(spec: dataclasses.Field[Any], raw: Any, from_text: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    if from_text and isinstance(raw, str):
        text = raw.strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
    # In TOML a boolean is true or false; "yes" there is a string and most likely a mistake.
    raise Rejected("is not true or false" + ("" if from_text else " (a TOML boolean, without quotes)"))


def _list(spec: dataclasses.Field[Any], raw: Any, from_text: bool) -> tuple[str, ...]:
    if from_text and isinstance(raw, str):
        return tuple(_plain(item.strip()) for item in raw.split(",") if item.strip())
    if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
        return tuple(_plain(item) for item in raw)
    raise Rejected("is not a comma-separated list" if from_text else "is not an array of strings")


def _choice(spec: dataclasses.Field[Any], raw: Any, from_text: bool) -> str:
    choices = spec.metadata["choices"]
    if not isinstance(raw, str) or raw.strip().lower() not in choices:
        raise Rejected(f"is not one of: {', '.join(choices)}")
    return raw.strip().lower()


CONVERTERS: dict[Kind, Converter] = {
    "str": _text,
    "secret": _secret,
    "guid": _guid,
    "url": _url,
    "path": _path,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "list": _list,
    "choice": _choice,
}


def convert(spec: dataclasses.Field[Any], raw: Any, origin: str, *, from_text: bool) -> tuple[Any, str | None]:
    """(value, None), or (None, one line naming the setting, its source and what is wrong).

    `from_text` is true for options and environment variables, whose values are text to parse; a
    TOML value must already have the setting's type. A secret's value is never part of the line.
    """
    kind = spec.metadata["kind"]
    try:
        return CONVERTERS[kind](spec, raw, from_text), None
    except Rejected as rejected:
        subject = spec.name if kind == "secret" else f"{spec.name} = {shown(raw)}"
        return None, f"{subject} ({origin}) {rejected}"
