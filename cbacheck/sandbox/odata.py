"""The OData query options the sandbox's Graph understands: $filter, $select, $top and skip tokens."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

Predicate = Callable[[Mapping[str, Any]], bool]

DEFAULT_PAGE: Final = 100
MAX_PAGE: Final = 999
# Bounds on a $filter the sandbox parses (UNCONFIRMED: Graph's own limits are not documented); they
# keep a hostile expression from exhausting the parser's recursion.
MAX_FILTER_LENGTH: Final = 4096
MAX_FILTER_CLAUSES: Final = 100
MAX_FILTER_DEPTH: Final = 16

_TOKEN: Final = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)(?![\w-])"
    r"|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?P<name>[A-Za-z_][\w/]*)|(?P<punct>[(),]))"
)


class QueryError(Exception):
    """A query option is malformed (``unsupported`` False) or not supported (True)."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        self.unsupported = unsupported
        super().__init__(message)


@dataclass(frozen=True)
class _Tok:
    kind: str
    value: Any


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise QueryError(f"Invalid filter clause: syntax error at position {pos} in '{text}'.")
        pos = m.end()
        if m.group("string") is not None:
            out.append(_Tok("lit", m.group("string")[1:-1].replace("''", "'")))
        elif m.group("number") is not None:
            num = m.group("number")
            out.append(_Tok("lit", float(num) if "." in num else int(num)))
        elif m.group("guid") is not None:
            out.append(_Tok("lit", m.group("guid")))
        elif m.group("name") is not None:
            name = m.group("name")
            lowered = name.lower()
            if lowered in ("true", "false"):
                out.append(_Tok("lit", lowered == "true"))
            elif lowered == "null":
                out.append(_Tok("lit", None))
            else:
                out.append(_Tok("name", name))
        else:
            out.append(_Tok("punct", m.group("punct")))
    return out


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.lower() == right.lower()
    return bool(left == right)


class _FilterParser:
    """Recursive descent over: clause (and|or clause)*, clause = prop eq|ne lit | prop in (...) |
    startswith(prop, lit) | not clause | ( expr )."""

    def __init__(self, text: str, properties: frozenset[str], resource: str) -> None:
        self.toks = _tokens(text)
        self.pos = 0
        self.text = text
        self.properties = {p.lower(): p for p in properties}
        self.resource = resource
        self.clauses = 0
        self.depth = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise QueryError(f"Invalid filter clause: unexpected end of '{self.text}'.")
        self.pos += 1
        return tok

    def expect(self, kind: str, value: Any = None) -> _Tok:
        tok = self.take()
        if tok.kind != kind or (value is not None and str(tok.value).lower() != value):
            raise QueryError(f"Invalid filter clause: expected {value or kind} in '{self.text}'.")
        return tok

    def prop(self, name: str) -> str:
        found = self.properties.get(name.lower())
        if found is None:
            raise QueryError(
                f"Unsupported or invalid query filter clause specified for property '{name}' of "
                f"resource '{self.resource}'.",
                unsupported=True,
            )
        return found

    def parse(self) -> Predicate:
        pred = self.expr()
        if self.peek() is not None:
            raise QueryError(f"Invalid filter clause: unexpected '{self.peek().value}' in '{self.text}'.")  # type: ignore[union-attr]
        return pred

    def expr(self) -> Predicate:
        left = self.clause()
        while (tok := self.peek()) is not None and tok.kind == "name" and tok.value.lower() in ("and", "or"):
            self.take()
            right = self.clause()
            left = _and(left, right) if tok.value.lower() == "and" else _or(left, right)
        return left

    def clause(self) -> Predicate:
        self.clauses += 1
        self.depth += 1
        try:
            if self.clauses > MAX_FILTER_CLAUSES or self.depth > MAX_FILTER_DEPTH:
                raise QueryError(
                    f"Invalid filter clause: more than {MAX_FILTER_CLAUSES} clauses or {MAX_FILTER_DEPTH} levels of "
                    "nesting.",
                    unsupported=True,
                )
            return self._clause()
        finally:
            self.depth -= 1

    def _clause(self) -> Predicate:
        tok = self.take()
        if tok.kind == "punct" and tok.value == "(":
            inner = self.expr()
            self.expect("punct", ")")
            return inner
        if tok.kind != "name":
            raise QueryError(f"Invalid filter clause: unexpected {tok.value!r} in '{self.text}'.")
        word = tok.value.lower()
        if word == "not":
            inner = self.clause()
            return lambda obj: not inner(obj)
        if word in ("startswith", "endswith"):
            self.expect("punct", "(")
            prop = self.prop(self.expect("name").value)
            self.expect("punct", ",")
            lit = self.expect("lit").value
            self.expect("punct", ")")
            if not isinstance(lit, str):
                raise QueryError(f"Invalid filter clause: {word} needs a string in '{self.text}'.")
            if word == "endswith":
                raise QueryError("endswith needs ConsistencyLevel: eventual; not supported.", unsupported=True)
            return lambda obj: str(obj.get(prop) or "").lower().startswith(lit.lower())
        if "/" in tok.value:
            raise QueryError(
                f"Unsupported or invalid query filter clause specified for property '{tok.value}' "
                f"of resource '{self.resource}'.",
                unsupported=True,
            )
        prop = self.prop(tok.value)
        op = self.expect("name").value.lower()
        if op in ("eq", "ne"):
            lit = self.expect("lit").value
            if op == "eq":
                return lambda obj: _equal(obj.get(prop), lit)
            return lambda obj: not _equal(obj.get(prop), lit)
        if op == "in":
            self.expect("punct", "(")
            values = [self.expect("lit").value]
            while (nxt := self.take()).kind == "punct" and nxt.value == ",":
                values.append(self.expect("lit").value)
            if nxt.value != ")":
                raise QueryError(f"Invalid filter clause: expected ')' in '{self.text}'.")
            return lambda obj: any(_equal(obj.get(prop), v) for v in values)
        if op in ("gt", "ge", "lt", "le"):
            raise QueryError(f"Operator '{op}' is not supported on '{prop}'.", unsupported=True)
        raise QueryError(f"Invalid filter clause: unknown operator '{op}' in '{self.text}'.")


def _and(a: Predicate, b: Predicate) -> Predicate:
    return lambda obj: a(obj) and b(obj)


def _or(a: Predicate, b: Predicate) -> Predicate:
    return lambda obj: a(obj) or b(obj)


def parse_filter(text: str, properties: frozenset[str], resource: str) -> Predicate:
    """Compile a $filter expression over the given filterable properties."""
    if not text.strip():
        raise QueryError("Invalid filter clause: the expression is empty.")
    if len(text) > MAX_FILTER_LENGTH:
        raise QueryError(f"Invalid filter clause: longer than {MAX_FILTER_LENGTH} characters.", unsupported=True)
    lambda_use = re.search(r"(\w+)/(?:any|all)\(", text)
    if lambda_use:
        raise QueryError(
            "Unsupported or invalid query filter clause specified for property "
            f"'{lambda_use.group(1)}' of resource '{resource}'.",
            unsupported=True,
        )
    return _FilterParser(text, properties, resource).parse()


def parse_select(text: str, known: frozenset[str], entity_type: str) -> list[str]:
    """The property names of a $select, each checked against the entity's properties."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise QueryError("Invalid $select: no property named.")
    lowered = {k.lower(): k for k in known}
    out: list[str] = []
    for name in names:
        found = lowered.get(name.lower())
        if found is None:
            raise QueryError(
                "Parsing OData Select and Expand failed: Could not find a property named "
                f"'{name}' on type '{entity_type}'."
            )
        if found not in out:
            out.append(found)
    return out


def parse_top(text: str | None) -> int:
    """The page size from $top: default 100, 1..999."""
    if text is None:
        return DEFAULT_PAGE
    try:
        value = int(text)
    except ValueError:
        raise QueryError(f"Invalid page size specified: '{text}'. Must be between 1 and 999 inclusive.") from None
    if not 1 <= value <= MAX_PAGE:
        raise QueryError(f"Invalid page size specified: '{text}'. Must be between 1 and 999 inclusive.")
    return value


def encode_skiptoken(offset: int) -> str:
    """An opaque skip token for the given offset (clients must follow nextLink verbatim)."""
    raw = json.dumps({"o": offset}).encode()
    return "RFNwdAoAAQAAA" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_skiptoken(token: str) -> int:
    """The offset in a skip token this sandbox issued."""
    prefix = "RFNwdAoAAQAAA"
    try:
        if not token.startswith(prefix):
            raise ValueError(token)
        body = token[len(prefix) :]
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        offset = data["o"]
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise ValueError(token)
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
        raise QueryError("Invalid $skiptoken: it does not come from an @odata.nextLink.") from None
    if offset < 0:
        raise QueryError("Invalid $skiptoken.")
    return offset
