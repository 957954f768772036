"""The tenant audit's verdicts: each principal's requirements judged over the facts in memory, and the JSON document.

The requirement rules run as plain functions over `AuditFacts`, not as pytest items: 10,000 apps times a
dozen requirements would be 100,000 test items whose per-item setup costs more than the whole audit's
reads, while each rule here is a few comparisons. The rules reuse the fact predicates `cbacheck run`
judges with (`grants_tenant_wide`, `requests_app_role`, `accepted_role_ids`, `OVER_PRIVILEGED_ROLES`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from cbacheck import wellknown
from cbacheck.auditfacts import AuditFacts, Holder
from cbacheck.catalogue import AUDIT_CATALOGUE, CATALOGUE, Requirement
from cbacheck.config import Settings
from cbacheck.config.table import accepted_role_ids
from cbacheck.report.audit_links import link_outcomes
from cbacheck.report.exceptions import PROFILE, ExceptionsFile, exception_note
from cbacheck.report.gate import at_or_above

SCHEMA_VERSION = 1
MANAGE_AS_APP = (wellknown.EXCHANGE_MANAGE_AS_APP, wellknown.EXCHANGE_MANAGE_AS_APP_V2)
FAILING = ("failed", "blocked")


@dataclass(frozen=True)
class Outcome:
    id: str
    outcome: str  # passed | failed | error | accepted (a failure an exception covers) | blocked | skipped
    message: str
    evidence: dict[str, Any] | None = None  # what a check of `cbacheck run` recorded (supplied certificates only)

    def as_dict(self) -> dict[str, Any]:
        entry = requirement(self.id)
        out = {
            "id": self.id,
            "title": entry.title,
            "severity": entry.severity,
            "outcome": self.outcome,
            "message": self.message,
        }
        return out if self.evidence is None else {**out, "evidence": self.evidence}


Rule = Callable[[Holder, AuditFacts, Settings], Outcome]


def requirement(req_id: str) -> Requirement:
    """An audit requirement, or one of `cbacheck run`'s (the token and Exchange links of a supplied certificate)."""
    return AUDIT_CATALOGUE.get(req_id) or CATALOGUE[req_id]


def _judge(req_id: str, problems: Sequence[str], fine: str) -> Outcome:
    return Outcome(req_id, "failed", "; ".join(problems)) if problems else Outcome(req_id, "passed", fine)


def sp_enabled(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    problems = [] if holder.sp.account_enabled else [f"service principal {holder.sp.object_id} is disabled"]
    return _judge("CBA-AUD-001", problems, "enabled")


def audience(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    if holder.app is None:
        return Outcome("CBA-AUD-002", "failed", "no app registration in this tenant (another tenant's app)")
    found = holder.app.sign_in_audience
    return _judge("CBA-AUD-002", [] if found == "AzureADMyOrg" else [f"signInAudience {found}"], "AzureADMyOrg")


def no_secrets(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    assert holder.app is not None
    live = [p for p in holder.app.password_credentials if p.end is None or p.end > facts.collected_at]
    return _judge("CBA-AUD-003", [f"{len(live)} client secret(s) (hint {p.hint!r})" for p in live[:1]], "none")


def key_expiry(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    assert holder.app is not None
    soon = holder.app.keys_expiring(facts.collected_at, settings.expiry_days)  # CBA-KEY-003's rule
    problems = [f"key {k.key_id} expires {k.end.date().isoformat()}" for k in soon if k.end is not None]
    return _judge("CBA-AUD-004", problems, f"no key expires within {settings.expiry_days} days")


def key_lifetime(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    assert holder.app is not None
    long = [
        k
        for k in holder.app.key_credentials
        if k.start and k.end and (k.end - k.start).days > settings.max_lifetime_days
    ]
    problems = [f"key {k.key_id} lives {(k.end - k.start).days} days" for k in long if k.end and k.start]
    return _judge("CBA-AUD-005", problems, f"every key within {settings.max_lifetime_days} days")


def expired_leftovers(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    assert holder.app is not None
    now = facts.collected_at
    expired = [k.key_id for k in holder.app.key_credentials if k.end is not None and k.end <= now]
    expired += [p.key_id for p in holder.app.password_credentials if p.end is not None and p.end <= now]
    return _judge("CBA-AUD-006", [f"expired credential(s) {', '.join(expired)}"] if expired else [], "none")


def no_owners(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    if holder.owners is None:
        return Outcome("CBA-AUD-012", "error", "owners not read (needs Application.Read.All)")
    problems = [f"{len(holder.owners)} owner(s) can add a credential and act as the app: {', '.join(holder.owners)}"]
    return _judge("CBA-AUD-012", problems if holder.owners else [], "no owners")


def not_over_privileged(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    over = [
        r.role_display_name or r.template_id
        for r in facts.roles_of(holder.sp.object_id)
        if r.template_id in wellknown.OVER_PRIVILEGED_ROLES
    ]
    return _judge("CBA-AUD-007", [f"holds {', '.join(over)}"] if over else [], "no over-privileged role")


def authorised(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    # Any role Microsoft lists for Exchange app-only sign-in authorises a principal the audit found; the
    # configured required/accepted roles (what `cbacheck run` asks of its one app) count as well.
    accepted = accepted_role_ids(settings) | wellknown.EXCHANGE_SUPPORTED_ROLES
    roles = facts.roles_of(holder.sp.object_id)
    if any(r.grants_tenant_wide(accepted) for r in roles):
        names = [r.role_display_name for r in roles if r.grants_tenant_wide(accepted)]
        return Outcome("CBA-AUD-008", "passed", f"Entra role {', '.join(names)} tenant-wide")
    rbac = facts.exchange_rbac
    if rbac is not None and rbac.authorised(holder.sp.object_id):
        # The RBAC path as CBA-ROLE-001 judges it: the pointer whose ObjectId is the service principal's holds
        # an enabled management role assignment (ExchangeRbac.authorised).
        return Outcome("CBA-AUD-008", "passed", f"Exchange RBAC: {', '.join(rbac.roles_of(holder.sp.object_id))}")
    unread = [facts.not_read[k] for k in ("directory role active assignments", "Exchange RBAC") if k in facts.not_read]
    if unread:
        return Outcome("CBA-AUD-008", "error", f"no tenant-wide Entra role seen; not read: {'; '.join(unread)}")
    return Outcome(
        "CBA-AUD-008",
        "failed",
        "neither a supported Entra role tenant-wide nor an Exchange RBAC role assignment on the pointer whose "
        f"ObjectId is {holder.sp.object_id}",
    )


def in_manifest(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    assert holder.app is not None
    requested = holder.app.requests_app_role(wellknown.EXCHANGE_ONLINE_APP_ID, wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID)
    return _judge("CBA-AUD-009", [] if requested else ["granted but not in requiredResourceAccess"], "configured")


def ews_status(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    if facts.ews is None:
        status = facts.not_read.get("EWS status", "EWS status not read")
    elif facts.ews.accepts(holder.sp.app_id):
        status = "EWS accepts it now (EwsEnabled " + _ews_switch(facts.ews.enabled) + ")"
    else:
        status = "EWS refuses it (EwsEnabled " + _ews_switch(facts.ews.enabled) + ", not on EwsAllowedAppIDs)"
    return Outcome(
        "CBA-AUD-010",
        "failed",
        f"full_access_as_app: EWS access to every mailbox; {status}. Microsoft is retiring EWS in Exchange Online",
    )


def _ews_switch(enabled: bool | None) -> str:
    return {True: "$true", False: "$false", None: "$null"}[enabled]


def graph_mailbox(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    """An Entra-granted Graph mailbox permission reaches every mailbox unless an Application Access Policy
    restricts it; RBAC for Applications grants add to Entra's ("a union operation"), so a scoped assignment bites
    only once the Entra grant is removed (https://learn.microsoft.com/exchange/permissions-exo/application-rbac,
    FAQ; the policies' rules: https://learn.microsoft.com/powershell/module/exchangepowershell/new-applicationaccesspolicy)."""
    held = f"{', '.join(holder.held_from(wellknown.MICROSOFT_GRAPH_DISPLAY_NAME))} granted in Entra"
    policies = facts.access_policies_of(holder.sp.app_id)
    restricted = [p.scope for p in policies or () if p.access_right == "RestrictAccess"]
    if restricted:
        return Outcome(
            "CBA-AUD-011",
            "passed",
            f"{held}, limited by an Application Access Policy to {', '.join(restricted)} (RestrictAccess); RBAC for "
            "Applications replaces these policies",
        )
    if facts.application_rbac is None:
        rbac = "RBAC for Applications " + facts.not_read.get("RBAC for Applications", "not read")
    else:
        scoped = [a.describe() for a in facts.application_roles_of(holder.sp.object_id) if a.scoped]
        rbac = (
            f"RBAC for Applications also grants {'; '.join(scoped)}, which limits nothing while the Entra grant stays: "
            "remove the Entra grant"
            if scoped
            else "no scoped RBAC for Applications assignment: assign the matching Application role with a management "
            "scope, then remove the Entra grant"
        )
    if policies is None:
        unread = facts.not_read.get("Application Access Policies", "not read")
        return Outcome(
            "CBA-AUD-011", "error", f"{held}; could not verify: Application Access Policies {unread}; {rbac}"
        )
    denied = [p.scope for p in policies if p.access_right == "DenyAccess"]
    but = f" but {', '.join(denied)} (DenyAccess)" if denied else ""
    return Outcome("CBA-AUD-011", "failed", f"{held}: every mailbox of the tenant{but}, unscoped; {rbac}")


def application_rbac_scoped(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    """Each RBAC for Applications assignment names a management scope or an administrative unit; one without covers
    the whole organization (https://learn.microsoft.com/exchange/permissions-exo/application-rbac)."""
    assignments = facts.application_roles_of(holder.sp.object_id)
    unscoped = [a.describe() for a in assignments if not a.scoped]
    return _judge("CBA-AUD-014", unscoped, "; ".join(a.describe() for a in assignments))


def unused(holder: Holder, facts: AuditFacts, settings: Settings) -> Outcome:
    # Microsoft's "Remove unused applications" recommendation uses the same test: no token issued for 90 days,
    # apps created but never used included, apps created within those 90 days excluded
    # (https://learn.microsoft.com/entra/identity/monitoring-health/recommendation-remove-unused-apps).
    if facts.last_sign_in is None:
        why = facts.not_read.get("last sign-in", "not read (needs AuditLog.Read.All)")
        return Outcome("CBA-AUD-013", "error", f"last sign-in {why}")
    window = settings.unused_days
    last = facts.last_sign_in.get(holder.sp.app_id.lower())
    if last is not None:
        try:
            idle = (facts.collected_at - datetime.fromisoformat(last)).days
        except (ValueError, TypeError):
            return Outcome("CBA-AUD-013", "error", f"last sign-in {last!r} is not a date")
        problems = [f"last app-only sign-in {last[:10]}, {idle} days ago"] if idle > window else []
        return _judge("CBA-AUD-013", problems, f"signed in {idle} days ago (within {window} days)")
    created = holder.app.created if holder.app is not None else None
    if created is None:
        # No creation date: a registration from before Graph recorded one, or another tenant's app.
        return Outcome("CBA-AUD-013", "failed", "no sign-in recorded, and no creation date to count from")
    age = (facts.collected_at - created).days
    problems = [f"no sign-in recorded since it was created {age} days ago"] if age > window else []
    return _judge("CBA-AUD-013", problems, f"no sign-in recorded, created {age} days ago (within {window} days)")


def rules_for(holder: Holder) -> Iterator[Rule]:
    """The requirements a principal is judged by, chosen by what it holds."""
    if not holder.managed_identity:
        yield sp_enabled
        yield audience
        if holder.app is not None:
            yield from (no_secrets, key_expiry, key_lifetime, expired_leftovers, no_owners)
        yield unused
    yield not_over_privileged
    if any(holder.holds(value) for value in MANAGE_AS_APP):
        yield authorised
        if holder.app is not None:
            yield in_manifest
    if holder.holds(wellknown.FULL_ACCESS_AS_APP):
        yield ews_status
    if holder.held_from(wellknown.MICROSOFT_GRAPH_DISPLAY_NAME):
        yield graph_mailbox
    if holder.held_from(wellknown.RBAC_FOR_APPLICATIONS):
        yield application_rbac_scoped


def verdict_of(outcomes: Sequence[Outcome], fail_on: str) -> str:
    # blocked (a broken upstream link) fails at the check's own severity, as in `cbacheck run`.
    if any(o.outcome in FAILING and at_or_above(requirement(o.id).severity, fail_on) for o in outcomes):
        return "failed"
    if any(o.outcome == "error" for o in outcomes):
        return "error"
    return "passed"


def accepted(outcome: Outcome, app_id: str, exceptions: ExceptionsFile | None, today: date) -> Outcome:
    """A failure an unexpired exception of the exceptions file covers (by ID and, when it names one, app) is
    `accepted`, with the exception's note; an expired one leaves it failed, saying so."""
    entry = exceptions.matching(outcome.id, app_id, PROFILE) if exceptions and outcome.outcome == "failed" else None
    if entry is None or exceptions is None:
        return outcome
    note = exception_note(entry, exceptions, today)
    verdict = "failed" if entry.expired(today) else "accepted"
    return Outcome(outcome.id, verdict, f"{outcome.message}; {note}", outcome.evidence)


def app_entry(
    holder: Holder, facts: AuditFacts, settings: Settings, exceptions: ExceptionsFile | None = None
) -> dict[str, Any]:
    today = facts.collected_at.date()
    judged = [rule(holder, facts, settings) for rule in rules_for(holder)]
    judged += [Outcome(*found) for found in link_outcomes(holder, facts, settings)]
    outcomes = [accepted(outcome, holder.sp.app_id, exceptions, today) for outcome in judged]
    links = facts.links.get(holder.sp.app_id.lower())
    keys = holder.app.key_credentials if holder.app else ()
    secrets = holder.app.password_credentials if holder.app else ()
    now = facts.collected_at
    return {
        "appId": holder.sp.app_id,
        "displayName": holder.sp.display_name,
        "servicePrincipalId": holder.sp.object_id,
        "type": holder.service_principal_type,
        "permissions": list(holder.permissions),
        "roles": sorted(
            {f"{r.role_display_name or r.template_id} ({r.status})" for r in facts.roles_of(holder.sp.object_id)}
        ),
        "exchangeRbac": list(facts.exchange_rbac.roles_of(holder.sp.object_id)) if facts.exchange_rbac else None,
        "applicationRbac": None
        if facts.application_rbac is None
        else [a.describe() for a in facts.application_roles_of(holder.sp.object_id)],
        "credentials": [
            {"kind": "certificate", "keyId": k.key_id, "daysLeft": (k.end - now).days if k.end else None} for k in keys
        ]
        + [{"kind": "secret", "keyId": p.key_id, "daysLeft": (p.end - now).days if p.end else None} for p in secrets]
        + [{"kind": "federated", "keyId": f, "daysLeft": None} for f in holder.federated_credentials or ()],
        "owners": None if holder.owners is None else list(holder.owners),
        "lastSignIn": None
        if facts.last_sign_in is None
        else facts.last_sign_in.get(holder.sp.app_id.lower(), "none recorded"),
        "certificate": None if links is None else {"file": links.certificate, "thumbprint": links.thumbprint},
        "verdict": verdict_of(outcomes, settings.fail_on),
        "requirements": [o.as_dict() for o in outcomes],
    }


def audit_document(facts: AuditFacts, settings: Settings, exceptions: ExceptionsFile | None = None) -> dict[str, Any]:
    """The audit's JSON document (schema `AUDIT_SCHEMA`)."""
    apps = [app_entry(holder, facts, settings, exceptions) for holder in facts.holders]
    failed = sum(1 for app in apps if app["verdict"] == "failed")
    errors = sum(1 for app in apps if app["verdict"] == "error")
    return {
        "schema": "cbacheck-audit",
        "schema_version": SCHEMA_VERSION,
        "tenant": facts.tenant,
        "collected_at": facts.collected_at.isoformat(),
        "verdict": "failed" if failed else ("error" if errors else "passed"),
        "fail_on": settings.fail_on,
        "counts": {"apps": len(apps), "failed": failed, "error": errors, "applications_seen": facts.applications_seen},
        "not_read": dict(facts.not_read),
        "app_management_policy": facts.app_management_policy,
        "certificates": [
            {"file": f.name, "thumbprint": f.thumbprint, "appIds": list(f.app_ids), "problem": f.problem or None}
            for f in facts.supplied
        ],
        "requests": {
            "per_endpoint": facts.requests_per_endpoint,
            "round_trips": facts.round_trips,
            "sequential_round_trips": facts.sequential_round_trips,
        },
        "apps": apps,
    }


def unread_document(settings: Settings, reason: str) -> dict[str, Any]:
    """The audit document of a tenant that could not be read at all: no principals, verdict error, and why."""
    return {
        "schema": "cbacheck-audit",
        "schema_version": SCHEMA_VERSION,
        "tenant": settings.tenant or "",
        "collected_at": datetime.now(UTC).isoformat(),
        "verdict": "error",
        "fail_on": settings.fail_on,
        "counts": {"apps": 0, "failed": 0, "error": 0, "applications_seen": 0},
        "not_read": {"tenant": reason},
        "app_management_policy": None,
        "requests": {"per_endpoint": {}, "round_trips": 0, "sequential_round_trips": 0},
        "apps": [],
    }


def compare_principals(current: Mapping[str, Any], earlier: Mapping[str, Any]) -> dict[str, list[str]]:
    """Which principals appeared or disappeared since an earlier audit document."""
    now = {a["appId"]: a["displayName"] for a in current.get("apps", [])}
    before = {a["appId"]: a["displayName"] for a in earlier.get("apps", [])}
    return {
        "appeared": sorted(f"{now[i]} ({i})" for i in now.keys() - before.keys()),
        "disappeared": sorted(f"{before[i]} ({i})" for i in before.keys() - now.keys()),
    }


AUDIT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema", "schema_version", "tenant", "collected_at", "verdict", "apps"],
    "properties": {
        "schema": {"const": "cbacheck-audit"},
        "tenant": {"type": "string"},
        "collected_at": {"type": "string"},
        "verdict": {"enum": ["passed", "failed", "error"]},
        "schema_version": {"const": SCHEMA_VERSION},
        "target": {"type": "string"},  # the [[targets]] name, when the audit read a list of targets
        "apps": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["appId", "displayName", "permissions", "requirements", "verdict"],
                "properties": {
                    "appId": {"type": "string"},
                    "displayName": {"type": "string"},
                    "permissions": {"type": "array", "items": {"type": "string"}},
                    "requirements": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "outcome", "severity", "message"],
                            "properties": {
                                "outcome": {"enum": ["passed", "failed", "error", "accepted", "blocked", "skipped"]}
                            },
                        },
                    },
                },
            },
        },
    },
}
