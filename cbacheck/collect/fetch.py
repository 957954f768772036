"""Fetch every tenant fact for links 2 to 6 once: Graph in two $batch round trips, then the token and Exchange."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests

from cbacheck import certs, wellknown
from cbacheck.collect.exchange import probe_exchange, require_read_only_cmdlet
from cbacheck.collect.graph import BatchRequest, GraphClient, GraphResponse, permission_for
from cbacheck.collect.parse import (
    MalformedFact,
    parse_app_role_grants,
    parse_application,
    parse_organization,
    parse_role_assignments,
    parse_service_principal,
)
from cbacheck.collect.rbac import collect_exchange_rbac
from cbacheck.collect.tokens import acquire_app_token, describe_provider, graph_token_provider
from cbacheck.collect.transport import build_session, stats_of
from cbacheck.config import Settings
from cbacheck.errors import CbaCheckError, CertificateError, CredentialError, GraphError
from cbacheck.facts import (
    CollectionStats,
    ExchangeProbe,
    ServicePrincipal,
    Source,
    TenantFacts,
    TokenAttempt,
    Unavailable,
)

T = TypeVar("T")

APP_SELECT = "id,appId,displayName,signInAudience,keyCredentials,passwordCredentials,requiredResourceAccess"
SP_SELECT = "id,appId,displayName,accountEnabled,appRoles"
EXCHANGE_SP_SELECT = "id,appId,displayName,appRoles"
ORG_SELECT = "id,displayName,verifiedDomains"


def first_round_trip(app_id: str) -> list[BatchRequest]:
    return [
        BatchRequest("app", f"/applications(appId='{app_id}')?$select={APP_SELECT}"),
        BatchRequest("app_sp", f"/servicePrincipals(appId='{app_id}')?$select={SP_SELECT}"),
        BatchRequest(
            "exchange_sp",
            f"/servicePrincipals(appId='{wellknown.EXCHANGE_ONLINE_APP_ID}')?$select={EXCHANGE_SP_SELECT}",
        ),
        BatchRequest("organization", f"/organization?$select={ORG_SELECT}"),
    ]


def second_round_trip(sp_id: str) -> list[BatchRequest]:
    principal = f"$filter=principalId eq '{sp_id}'"
    # Role schedules have the same roleDefinition relationship as assignments (unifiedRoleScheduleBase),
    # so custom roles get their names too; built-in ones are also named from their template id.
    expand = "$expand=roleDefinition"
    return [
        BatchRequest("app_role_grants", f"/servicePrincipals/{sp_id}/appRoleAssignments"),
        BatchRequest("role_assignments", f"/roleManagement/directory/roleAssignments?{principal}&{expand}"),
        BatchRequest("role_eligibilities", f"/roleManagement/directory/roleEligibilitySchedules?{principal}&{expand}"),
    ]


# --- Graph answers → fact or None or Unavailable ------------------------------------------------------


def unavailable_from(what: str, err: CbaCheckError, source: Source | None = None) -> Unavailable:
    if isinstance(err, GraphError):
        missing = permission_for(err.method, err.url) if err.status == 403 else ""
        return Unavailable(what, str(err), missing_permission=missing, source=source, error=err)
    return Unavailable(what, str(err), source=source, error=err)


def single_fact(
    what: str, answer: GraphResponse | None, parse: Callable[[Any, Source | None], T]
) -> T | None | Unavailable:
    """The fact an object addressed by key gives: 404 Request_ResourceNotFound means confirmed absent (None)."""
    if answer is None:
        return Unavailable(what, "Graph gave no answer for this request")
    if answer.status == 404:
        code = answer.body.get("error", {}).get("code") if isinstance(answer.body, dict) else None
        if code in ("Request_ResourceNotFound", "ResourceNotFound", "NotFound"):
            return None
    if not answer.ok:
        return unavailable_from(what, answer.error(), answer.source)
    try:
        return parse(answer.body, answer.source)
    except MalformedFact as err:
        return Unavailable(what, f"{answer.source.method} {answer.source.url} answered {err}", source=answer.source)


def collection_fact(
    what: str, answer: GraphResponse | None, graph: GraphClient, parse: Callable[[list[Any]], tuple[T, ...]]
) -> tuple[T, ...] | Unavailable:
    """The fact a list answer gives, every page merged; a page that cannot be read makes it Unavailable."""
    if answer is None:
        return Unavailable(what, "Graph gave no answer for this request")
    if not answer.ok:
        return unavailable_from(what, answer.error(), answer.source)
    if not isinstance(answer.body, dict) or not isinstance(answer.body.get("value"), list):
        return Unavailable(what, f"{answer.source.url} answered without a 'value' list", source=answer.source)
    try:
        merged = graph.follow_pages(answer)
        return parse(merged.value)
    except (GraphError, MalformedFact) as err:
        return unavailable_from(what, err, answer.source)


# --- The collection ---------------------------------------------------------------------------------------


def _signing_material(settings: Settings) -> certs.SigningMaterial | CertificateError:
    if settings.cert is None:
        return CertificateError(
            "(none)", "not configured", "no certificate is configured", "Set cert (--cert or CBACHECK_CERT)."
        )
    try:
        return certs.load_signing_material(settings.cert, settings.cert_password, settings.source("cert"))
    except CertificateError as err:
        return err


# Every TenantFacts field that is collected and may be Unavailable, in declaration order.
FACT_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TenantFacts) if "Unavailable" in str(f.type))
# What each Graph fact is, for the reason of an Unavailable.
WHAT = {
    "organization": "the organization (tenant)",
    "app": "the app registration",
    "app_sp": "the app's service principal",
    "exchange_sp": "the Office 365 Exchange Online service principal",
    "app_role_grants": "the app roles granted to the app",
    "role_assignments": "the app's active directory role assignments",
    "role_eligibilities": "the app's eligible (PIM) directory role assignments",
}
SECOND_ROUND_TRIP = ("app_role_grants", "role_assignments", "role_eligibilities")


def _all_unavailable(names: tuple[str, ...] | list[str], err: CbaCheckError) -> dict[str, Any]:
    """Every named fact unavailable for one reason (the auditor's sign-in, or the $batch itself failed)."""
    return {name: unavailable_from(WHAT[name], err) for name in names}


def _collect_graph(settings: Settings, session: requests.Session) -> tuple[dict[str, Any], str]:
    """The Graph facts keyed by TenantFacts field, and how the auditor signed in."""
    assert settings.app_id is not None
    cloud = settings.cloud_endpoints
    try:
        provider = graph_token_provider(settings, session, "auditor")
    except CredentialError as err:
        return _all_unavailable(list(WHAT), err), f"not signed in: {err}"
    auditor = describe_provider(provider)
    graph = GraphClient(
        cloud.graph_url, provider, session, batching=settings.batching, scope=f"{cloud.graph_resource}/.default"
    )
    try:
        first = graph.batch(first_round_trip(settings.app_id))
    except (GraphError, CredentialError) as err:
        return _all_unavailable(list(WHAT), err), auditor
    facts: dict[str, Any] = {
        "app": single_fact(WHAT["app"], first.get("app"), parse_application),
        "app_sp": single_fact(WHAT["app_sp"], first.get("app_sp"), parse_service_principal),
        "exchange_sp": single_fact(WHAT["exchange_sp"], first.get("exchange_sp"), parse_service_principal),
    }
    organization = single_fact(WHAT["organization"], first.get("organization"), parse_organization)
    facts["organization"] = (
        Unavailable(WHAT["organization"], "/organization answered 404") if organization is None else organization
    )
    facts.update(_collect_grants(graph, facts["app_sp"]))
    return facts, auditor


def _collect_grants(graph: GraphClient, app_sp: ServicePrincipal | None | Unavailable) -> dict[str, Any]:
    """The second round trip: what is granted and assigned to the app's service principal."""
    if isinstance(app_sp, Unavailable):
        reason = f"needs the service principal's object id, which could not be read: {app_sp.reason}"
        return {
            name: Unavailable(WHAT[name], reason, missing_permission=app_sp.missing_permission)
            for name in SECOND_ROUND_TRIP
        }
    if app_sp is None:
        # No service principal: nothing can be granted or assigned to it. A true fact, not a default.
        return dict.fromkeys(SECOND_ROUND_TRIP, ())
    try:
        second = graph.batch(second_round_trip(app_sp.object_id))
    except (GraphError, CredentialError) as err:
        return _all_unavailable(SECOND_ROUND_TRIP, err)
    return {
        "app_role_grants": collection_fact(
            WHAT["app_role_grants"], second.get("app_role_grants"), graph, parse_app_role_grants
        ),
        "role_assignments": collection_fact(
            WHAT["role_assignments"],
            second.get("role_assignments"),
            graph,
            lambda items: parse_role_assignments(items, "active"),
        ),
        "role_eligibilities": collection_fact(
            WHAT["role_eligibilities"],
            second.get("role_eligibilities"),
            graph,
            lambda items: parse_role_assignments(items, "eligible"),
        ),
    }


def _probe_with_token(
    settings: Settings, session: requests.Session, attempt: TokenAttempt, access_token: str
) -> ExchangeProbe | Unavailable:
    tenant_for_url = settings.organization or settings.tenant or ""
    anchor = str(attempt.claims.get("tid") or settings.tenant or "")
    return probe_exchange(settings, session, access_token, tenant_for_url, anchor_tenant=anchor)


def collect(settings: Settings, *, now: datetime | None = None, session: requests.Session | None = None) -> TenantFacts:
    """Gather every fact the checks of links 2 to 6 need, once.

    Graph: at most two round trips (JSON $batch). Then the app's own token attempt and, with a
    token, the Exchange probe. Nothing is defaulted: what could not be read is Unavailable.
    A cmdlet that is not read-only raises ConfigError before any request.
    """
    if not (settings.tenant and settings.app_id):
        raise CredentialError("collect needs tenant and app_id; set both (--tenant and --app-id, or CBACHECK_*)")
    require_read_only_cmdlet(settings)
    started = time.perf_counter()
    collected_at = now or datetime.now(UTC)
    session = session or build_session(settings)
    stats = stats_of(session)

    graph_facts, auditor = _collect_graph(settings, session)
    exchange_rbac = collect_exchange_rbac(settings, session, graph_facts.get("organization"))
    token, access_token = acquire_app_token(settings, session, _signing_material(settings))
    exchange: ExchangeProbe | None | Unavailable = None
    if isinstance(token, TokenAttempt) and token.acquired and access_token:
        exchange = _probe_with_token(settings, session, token, access_token)
    elif isinstance(token, Unavailable):
        exchange = Unavailable("the Exchange Online probe", f"no token to call Exchange with: {token.reason}")
    del access_token  # the token is not kept beyond the probe

    wall_ms = (time.perf_counter() - started) * 1000
    return TenantFacts(
        collected_at=collected_at,
        tenant=settings.tenant,
        app_id=settings.app_id,
        organization_setting=settings.organization,
        token=token,
        exchange=exchange,
        auditor=auditor,
        exchange_rbac=exchange_rbac,
        requests=tuple(stats.sources),
        stats=CollectionStats(
            graph_round_trips=stats.graph_round_trips,
            graph_requests=stats.graph_requests,
            token_requests=stats.token_requests,
            exchange_requests=stats.exchange_requests,
            retries=stats.retries,
            wall_ms=wall_ms,
        ),
        **graph_facts,
    )
