"""What every planner sees (PlanContext, AppHandle), how a planner stops (CannotPlan), and the planner registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, NamedTuple, TypeVar

from cbacheck import catalogue
from cbacheck.config import Settings
from cbacheck.facts import AppRegistration, CertFacts, ServicePrincipal, TenantFacts, Unavailable
from cbacheck.fixers.actions import Action, ManualStep, Ref

T = TypeVar("T")

# Planners run in the catalogue's order of fixes, which follows the chain (link 1 to 6), so a plan reads
# along it.
PLANNER_ORDER: Final = catalogue.FIXES

# A broken upstream object leaves nothing downstream to keep: a new app has no SP, key, permission,
# consent or role; a new SP has no consent or role; a new local certificate is not uploaded yet.
IMPLIED_FIXES: Final[dict[str, tuple[str, ...]]] = {
    "create_app": (
        "create_service_principal",
        "upload_certificate",
        "add_exchange_permission",
        "grant_exchange_consent",
        "assign_directory_role",
    ),
    "new_certificate": ("upload_certificate",),
}
IMPLIED_BY_MISSING_SERVICE_PRINCIPAL: Final = ("grant_exchange_consent", "assign_directory_role")

# A certificate that failed these was not read (unparsable, wrong password, no or another private key):
# the input is wrong, not the certificate, so nothing is created or uploaded for it.
CERTIFICATE_NOT_READ: Final = frozenset({"CBA-CERT-001", "CBA-CERT-002"})


@dataclass(frozen=True)
class OptIns:
    """Writes the default plan never makes, each allowed only by a flag on the command line of `cbacheck run`.

    Never from the environment or a config file: a file a pipeline checks out must not widen what
    cbacheck writes to a tenant.
    """

    allow_roles: frozenset[str] = frozenset()  # role template ids, lower case (over-privileged ones stay manual)
    enable_service_principal: bool = False  # an admin may have disabled it on purpose
    create_app: bool = False  # a missing app_id looks the same as a typo
    # Exchange role groups (lower-case names) the RBAC fix may add the app to although they manage roles
    # (Organization Management, or a group holding Role Management).
    allow_role_groups: frozenset[str] = frozenset()


NO_OPT_INS: Final = OptIns()


class AppHandle(NamedTuple):
    """The app a planner writes to: its object id and appId, concrete or produced by create-app."""

    object_id: str | Ref
    app_id: str | Ref
    depends_on: tuple[str, ...]


class SpHandle(NamedTuple):
    """The app's service principal: its object id, concrete or produced by create-service-principal."""

    object_id: str | Ref
    depends_on: tuple[str, ...]


class CannotPlan(Exception):  # noqa: N818 - a planner's stop signal, the twin of chain.require
    """A planner stops: the fact it needs could not be read (a step saying why) or the object is absent (nothing)."""

    def __init__(self, fix: str, missing: Unavailable | None) -> None:
        super().__init__(str(missing) if missing is not None else f"{fix}: nothing to plan")
        self.fix = fix
        self.missing = missing

    def steps(self, ctx: PlanContext) -> list[Action]:
        if self.missing is None:
            return []
        return [
            ManualStep(
                id=f"cannot-plan-{self.fix.replace('_', '-')}",
                mends=ctx.mends(self.fix),
                reason=f"{self.missing}; cbacheck plans this fix only from facts it could read",
                explanation="Give the auditor the permission named above and run again, or make the change by hand.",
                portal=catalogue.PORTAL_APP,
            )
        ]


@dataclass(frozen=True)
class PlanContext:
    """What every planner sees: settings, facts and the fixes in play (after implications)."""

    settings: Settings
    tenant: TenantFacts | None
    cert: CertFacts | None
    failed: frozenset[str]
    fixes: frozenset[str]
    opt_ins: OptIns = NO_OPT_INS

    @property
    def now(self) -> datetime:
        if self.tenant is not None:
            return self.tenant.collected_at
        if self.cert is not None:
            return self.cert.read_at
        # No facts at all (an unreadable certificate, no tenant): the clock only names the new files.
        return datetime.now(UTC)

    @property
    def app(self) -> AppRegistration | None:
        return self.tenant.known("app") if self.tenant is not None else None

    @property
    def app_sp(self) -> ServicePrincipal | None:
        return self.tenant.known("app_sp") if self.tenant is not None else None

    @property
    def app_is_new(self) -> bool:
        """The app is registered by this plan (create-app, opted in), so every id downstream is a reference."""
        return (
            "create_app" in self.fixes
            and self.opt_ins.create_app
            and self.app is None
            and self.unavailable("app") is None
        )

    @property
    def certificate_judged(self) -> bool:
        """The local certificate was read, so a defect found in it is the certificate's, not the input's."""
        return self.cert is not None and not (self.failed & CERTIFICATE_NOT_READ)

    def unavailable(self, name: str) -> Unavailable | None:
        """The reason a tenant fact could not be collected (None when it was)."""
        if self.tenant is None:
            # No tenant configured: tenant changes are simply not planned (the tenant links were skipped).
            return None
        value = getattr(self.tenant, name)
        return value if isinstance(value, Unavailable) else None

    def require(self, fix: str, value: T | Unavailable) -> T:
        """The fact, or CannotPlan naming why it could not be read."""
        if isinstance(value, Unavailable):
            raise CannotPlan(fix, value)
        return value

    def mends(self, fix: str) -> tuple[str, ...]:
        """The failed requirements this fix mends; all of its requirements when it is implied."""
        own = tuple(sorted((r.id for r in catalogue.CATALOGUE.values() if r.fix == fix), key=catalogue.chain_order))
        failed = tuple(req for req in own if req in self.failed)
        return failed or own

    def app_handle(self, fix: str) -> AppHandle:
        """The app to write to: concrete, or created by create-app; CannotPlan when there is none."""
        if self.app_is_new:
            return AppHandle(Ref("create-app", "id"), Ref("create-app", "appId"), ("create-app",))
        app = self.app
        if app is None:
            raise CannotPlan(fix, self.unavailable("app"))
        return AppHandle(app.object_id, app.app_id, ())

    def sp_handle(self, fix: str) -> SpHandle:
        """The app's service principal: concrete, or created by this plan; CannotPlan when there is none."""
        sp = self.app_sp
        if sp is not None and not self.app_is_new:
            return SpHandle(sp.object_id, ())
        missing = self.unavailable("app_sp")
        created = "create_service_principal" in self.fixes and self.app is not None and missing is None
        if self.app_is_new or created:
            return SpHandle(Ref("create-service-principal", "id"), ("create-service-principal",))
        raise CannotPlan(fix, missing)


def needed_fixes(failed: Iterable[str], tenant: TenantFacts | None = None) -> dict[str, tuple[str, ...]]:
    """Fix name -> failed requirement IDs it mends, including fixes implied by broken upstream objects."""
    fixes: dict[str, list[str]] = {}
    for req_id in sorted(failed, key=catalogue.chain_order):
        requirement = catalogue.requirement(req_id)
        if requirement is not None:
            fixes.setdefault(requirement.fix, []).append(req_id)
    queue = list(fixes)
    while queue:
        name = queue.pop(0)
        implied = list(IMPLIED_FIXES.get(name, ()))
        if name == "create_service_principal" and tenant is not None and tenant.known("app_sp") is None:
            implied.extend(IMPLIED_BY_MISSING_SERVICE_PRINCIPAL)
        for other in implied:
            if other not in fixes:
                fixes[other] = []
                queue.append(other)
    return {name: tuple(ids) for name, ids in fixes.items()}


Planner = Callable[[PlanContext], list[Action]]
PLANNERS: dict[str, Planner] = {}


def planner(name: str) -> Callable[[Planner], Planner]:
    """Register a planner under a fix name from catalogue.FIXES."""
    if name not in catalogue.FIXES:
        raise ValueError(f"unknown fix {name!r}; known: {', '.join(catalogue.FIXES)}")

    def register(function: Planner) -> Planner:
        PLANNERS[name] = function
        return function

    return register
