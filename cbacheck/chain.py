"""The chain of links: a check whose input is missing because an upstream link broke names that link."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class UpstreamFailure(AssertionError):
    """A check cannot hold because an upstream requirement failed; reported as failed, naming the upstream ID.

    It is an AssertionError on purpose: a broken chain is non-compliance (failed), not "could not verify".
    """

    def __init__(self, upstream: str, reason: str) -> None:
        self.upstream = upstream
        self.reason = reason
        super().__init__(f"follows from {upstream}: {reason}")


def require(value: T | None, upstream: str, reason: str) -> T:
    """The value, or an UpstreamFailure naming `upstream` when it is None (the object does not exist)."""
    __tracebackhide__ = True
    if value is None:
        raise UpstreamFailure(upstream, reason)
    return value
