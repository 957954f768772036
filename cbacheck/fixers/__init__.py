"""Fixes on request: plan the failed requirements' fixes, apply them after confirmation, and verify them.

The public face docs/fixes.md documents; the parts live in actions, planners, handlers, apply,
journal and verify.
"""

from __future__ import annotations

from cbacheck.fixers.apply import FixRun, fix_on_request
from cbacheck.fixers.planners import plan, plan_from_results
from cbacheck.fixers.planning import NO_OPT_INS, OptIns
from cbacheck.fixers.verify import BROKEN, PENDING_PROPAGATION, VERIFIED

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
