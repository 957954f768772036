"""The check author's vocabulary: require, follows_from and cannot_verify (with assert, that is every outcome)."""

from __future__ import annotations

from typing import NoReturn, TypeVar

from cbacheck.facts import FactUnavailable, Unavailable

T = TypeVar("T")


class UpstreamFailure(AssertionError):
    """A check cannot hold because an upstream requirement failed; reported as blocked, naming the upstream ID.

    It is an AssertionError on purpose: a broken chain is non-compliance (blocked fails the gate at the
    check's own severity), not "could not verify".
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


def follows_from(upstream: str, message: str) -> NoReturn:
    """Block the check as following from the upstream requirement: "follows from CBA-APP-001: <message>"."""
    __tracebackhide__ = True
    raise UpstreamFailure(upstream, message)


def cannot_verify(what: str, reason: str, permission: str = "") -> NoReturn:
    """End the check as error, never passed: `what` could not be established, for `reason`.

    `permission` names the permission the auditor lacks, when that is why.
    """
    __tracebackhide__ = True
    raise FactUnavailable(Unavailable(what, reason, missing_permission=permission))
