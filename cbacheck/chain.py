"""The chain of links: a downstream check that cannot hold because an upstream one failed says so."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class UpstreamFailure(AssertionError):
    """A check fails because an upstream requirement failed; the report groups it under that root cause."""

    def __init__(self, upstream: str, reason: str) -> None:
        self.upstream = upstream
        self.reason = reason
        super().__init__(f"follows from {upstream}: {reason}")


def require(value: T | None, upstream: str, reason: str) -> T:
    """The value, or an UpstreamFailure naming the upstream requirement when it is absent."""
    if value is None:
        raise UpstreamFailure(upstream, reason)
    return value
