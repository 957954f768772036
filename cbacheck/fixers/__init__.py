"""Fixes on request: plan the failed requirements' fixes, apply them after confirmation, and verify them.

The public face docs/fixes.md documents; the parts live in actions, planners, handlers, apply,
journal and verify.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cbacheck.fixers.planners import plan, plan_from_results
from cbacheck.fixers.planning import NO_OPT_INS, OptIns

if TYPE_CHECKING:
    from cbacheck.fixers.apply import FixRun, fix_on_request
    from cbacheck.fixers.verify import BROKEN, PENDING_PROPAGATION, VERIFIED


def __getattr__(name: str) -> Any:
    """Applying and verifying (handlers, journal, the network) load only when a run applies fixes."""
    if name in ("FixRun", "fix_on_request"):
        from cbacheck.fixers import apply

        return getattr(apply, name)
    if name in ("BROKEN", "PENDING_PROPAGATION", "VERIFIED"):
        from cbacheck.fixers import verify

        return getattr(verify, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BROKEN",
    "PENDING_PROPAGATION",
    "VERIFIED",
    "NO_OPT_INS",
    "FixRun",
    "OptIns",
    "fix_on_request",
    "plan",
    "plan_from_results",
]
