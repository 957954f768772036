"""What can go wrong in the sandbox, apart from HTTP: start-up errors and the faults of tenant operations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class SandboxError(Exception):
    """The sandbox cannot start or run as asked."""


class SandboxStateError(SandboxError):
    """A state file or scenario is not valid JSON or not Graph-shaped; the message names it."""


class SandboxFault(Exception):
    """A tenant operation refused; ``key`` names the row of the Graph error table, ``values`` fill it.

    The operations on TenantState raise these; the Graph layer turns each into Graph's error
    envelope (graph/errors.py), so the rules are testable without HTTP.
    """

    def __init__(self, key: str, **values: Any) -> None:
        self.key = key
        self.values = {name: str(value) for name, value in values.items()}
        super().__init__(f"{key}: {self.values}")


class ObjectNotFound(SandboxFault):
    """The object an operation names does not exist."""

    def __init__(self, object_id: str) -> None:
        super().__init__("not_found", object_id=object_id)


class InvalidRequest(SandboxFault):
    """The request body asks for something the tenant cannot hold (a bad value, an unknown role)."""


class Conflict(SandboxFault):
    """The object to create exists already."""


class TableFault(Exception):
    """An error answer of an admin endpoint: a row (status, code, message template) of the subclass's TABLE."""

    TABLE: ClassVar[Mapping[str, tuple[int, str, str]]]

    def __init__(self, key: str, **values: str) -> None:
        self.status, self.code, template = self.TABLE[key]
        self.message = template.format(**values)
        super().__init__(self.message)
