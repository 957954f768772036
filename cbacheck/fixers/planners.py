"""The plan: run the registered planners for the failed requirements, each action once, in dependency order."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from cbacheck import profiles
from cbacheck.config import Settings
from cbacheck.errors import FixError
from cbacheck.facts import CertFacts, TenantFacts
from cbacheck.fixers import access_planners, certificate_planners, profile_planners, rbac_planners
from cbacheck.fixers.actions import Action
from cbacheck.fixers.planning import NO_OPT_INS, PLANNER_ORDER, PLANNERS, CannotPlan, OptIns, PlanContext, needed_fixes

# Importing the planner modules registers their @planner functions in PLANNERS.
PLANNER_MODULES = (certificate_planners, access_planners, rbac_planners)


def plan(
    settings: Settings,
    tenant_facts: TenantFacts | None,
    cert_facts: CertFacts | None,
    failed: set[str] | frozenset[str],
    opt_ins: OptIns = NO_OPT_INS,
) -> list[Action]:
    """The actions that mend the failed requirements, in dependency order, each once; pure.

    Empty when nothing failed, and when every effect is already present in the facts (so a plan made
    after a successful apply is empty). `opt_ins` are the writes allowed only on the command line.
    """
    if not failed:
        return []
    fixes = needed_fixes(failed, tenant_facts)
    ctx = PlanContext(settings, tenant_facts, cert_facts, frozenset(failed), frozenset(fixes), opt_ins)
    actions: list[Action] = []
    for name in PLANNER_ORDER:
        if name not in fixes:
            continue
        try:
            actions.extend(PLANNERS[name](ctx))
        except CannotPlan as stop:
            actions.extend(stop.steps(ctx))
    actions.extend(profile_planners.plan_profiles(ctx))
    return order(merge_duplicates(actions))


def merge_duplicates(actions: Iterable[Action]) -> list[Action]:
    """Each action once: a second planner asking for the same action adds only what it mends."""
    merged: dict[str, Action] = {}
    for action in actions:
        first = merged.get(action.id)
        if first is None:
            merged[action.id] = action
            continue
        if type(first) is not type(action):
            raise AssertionError(f"two different actions share the id {action.id!r}")
        mends = tuple(dict.fromkeys((*first.mends, *action.mends)))
        depends = tuple(dict.fromkeys((*first.depends_on, *action.depends_on)))
        merged[action.id] = dataclasses.replace(first, mends=mends, depends_on=depends)
    return list(merged.values())


def order(actions: Iterable[Action]) -> list[Action]:
    """Dependency order (a stable topological sort: ties keep the planners' chain order)."""
    pending = list(actions)
    ids = {action.id for action in pending}
    done: set[str] = set()
    ordered: list[Action] = []
    while pending:
        for index, action in enumerate(pending):
            if all(dep in done or dep not in ids for dep in action.depends_on):
                ordered.append(action)
                done.add(action.id)
                del pending[index]
                break
        else:
            cycle = ", ".join(action.id for action in pending)
            raise FixError(f"the fix actions depend on each other in a cycle: {cycle}")
    return ordered


def failed_ids(requirements: Iterable[Mapping[str, Any]]) -> set[str]:
    """IDs that failed on their own account.

    Errors (could not verify) are never fixed blindly, and a failure that follows from an upstream
    one (an unuploaded key is not "valid now" either) is mended by the upstream fix, not its own.
    A profile-dependent failure of a profile other than the default is named with its profile
    (CBA-PERM-002@security-compliance): the profile planners mend it, the chain's planners do not.
    """
    return {
        profiles.qualified(str(req["id"]), str(req.get("profile") or profiles.DEFAULT))
        for req in requirements
        if req.get("outcome") == "failed" and not req.get("follows_from")
    }


def plan_from_results(
    requirements: list[dict[str, Any]],
    settings: Settings,
    tenant_facts: TenantFacts | None,
    cert_facts: CertFacts | None,
    opt_ins: OptIns = NO_OPT_INS,
) -> list[dict[str, Any]]:
    """The plan for the failed requirements of a results file, as plain dicts for the reports."""
    actions = plan(settings, tenant_facts, cert_facts, failed_ids(requirements), opt_ins)
    return [action.as_dict() for action in actions]
