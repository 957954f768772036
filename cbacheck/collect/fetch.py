"""Fetch every tenant fact for links 2 to 6 once: the auditor's Graph reads beside the app's token and Exchange."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests

from cbacheck import certs, profiles, wellknown
from cbacheck.collect import adminapi, discovery
from cbacheck.collect.exchange import ProbeTarget, probe_exchange, require_read_only_cmdlet
from cbacheck.collect.graph import BatchRequest, GraphClient, GraphResponse, permission_for
from cbacheck.collect.parse import (
    MalformedFact,
    parse_app_role_grants,
    parse_application,
    parse_organization,
    parse_role_assignments,
    parse_service_principal,
    pim_unlicensed_note,
)
from cbacheck.collect.rbac import collect_exchange_rbac, collect_profile_rbac
from cbacheck.collect.tokens import acquire_app_token, describe_provider, graph_token_provider
from cbacheck.collect.transport import build_session, stats_of
from cbacheck.config import GUID_RE, Settings
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


def organization_path(tenant: str) -> str:
    """GET /organization/{id} when the tenant is a GUID, whose documented least privilege is Organization.Read.All
    (https://learn.microsoft.com/graph/api/organization-get); the list otherwise, documented with Directory.Read.All
    (https://learn.microsoft.com/graph/api/organization-list)."""
    if GUID_RE.match(tenant):
        return f"/organization/{tenant.lower()}?$select={ORG_SELECT}"
    return f"/organization?$select={ORG_SELECT}"


def profile_resources(settings: Settings) -> tuple[str, ...]:
    """The resource applications the checked profiles need besides Office 365 Exchange Online."""
    ids = (permission.resource_app_id.lower() for permission in profiles.permissions_of(settings.profile))
    return tuple(dict.fromkeys(i for i in ids if i != wellknown.EXCHANGE_ONLINE_APP_ID))


def first_round_trip(app_id: str, tenant: str = "", resources: tuple[str, ...] = ()) -> list[BatchRequest]:
    return [
        BatchRequest("app", f"/applications(appId='{app_id}')?$select={APP_SELECT}"),
        BatchRequest("app_sp", f"/servicePrincipals(appId='{app_id}')?$select={SP_SELECT}"),
        BatchRequest(
            "exchange_sp",
            f"/servicePrincipals(appId='{wellknown.EXCHANGE_ONLINE_APP_ID}')?$select={EXCHANGE_SP_SELECT}",
        ),
        BatchRequest("organization", organization_path(tenant)),
        *(
            BatchRequest(
                f"resource_sp_{resource}", f"/servicePrincipals(appId='{resource}')?$select={EXCHANGE_SP_SELECT}"
            )
            for resource in resources
        ),
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


def _all_unavailable(
    names: tuple[str, ...] | list[str], err: CbaCheckError, resources: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Every named fact unavailable for one reason (the auditor's sign-in, or the $batch itself failed)."""
    facts: dict[str, Any] = {name: unavailable_from(WHAT[name], err) for name in names}
    if resources:
        facts["resource_sps"] = {r: unavailable_from(f"the service principal of resource {r}", err) for r in resources}
    return facts


def _collect_graph(
    settings: Settings, session: requests.Session, app_sp_id: Callable[[], str | None]
) -> tuple[dict[str, Any], str]:
    """The Graph facts keyed by TenantFacts field, and how the auditor signed in.

    `app_sp_id` waits for the app's token and gives its `oid` claim (the service principal's object
    id) when there is one: the grants then ride in the first $batch. Otherwise they follow it.
    """
    assert settings.app_id is not None
    cloud = settings.cloud_endpoints
    try:
        provider = graph_token_provider(settings, session, "auditor")
    except CredentialError as err:
        return _all_unavailable(list(WHAT), err, profile_resources(settings)), f"not signed in: {err}"
    auditor = describe_provider(provider)
    scope = f"{cloud.graph_resource}/.default"
    graph = GraphClient(cloud.graph_url, provider, session, batching=settings.batching, scope=scope)
    resources = profile_resources(settings)
    try:
        provider.token(scope)  # signed in while the app's own token is on its way
        known_id = app_sp_id()
        requests_ = first_round_trip(settings.app_id, settings.tenant or "", resources)
        if known_id:
            requests_ += second_round_trip(known_id)
        first = graph.batch(requests_)
    except (GraphError, CredentialError) as err:
        return _all_unavailable(list(WHAT), err, resources), auditor
    facts: dict[str, Any] = {
        "app": single_fact(WHAT["app"], first.get("app"), parse_application),
        "app_sp": single_fact(WHAT["app_sp"], first.get("app_sp"), parse_service_principal),
        "exchange_sp": single_fact(WHAT["exchange_sp"], first.get("exchange_sp"), parse_service_principal),
    }
    if resources:
        facts["resource_sps"] = {
            resource: single_fact(
                f"the service principal of resource {resource}",
                first.get(f"resource_sp_{resource}"),
                parse_service_principal,
            )
            for resource in resources
        }
    organization = single_fact(WHAT["organization"], first.get("organization"), parse_organization)
    facts["organization"] = (
        Unavailable(WHAT["organization"], "GET organization answered 404") if organization is None else organization
    )
    app_sp = facts["app_sp"]
    if known_id and isinstance(app_sp, ServicePrincipal) and app_sp.object_id == known_id:
        facts.update(_grants_from(graph, first))
    else:
        # No token, or the token's oid is not the service principal Graph names: decide from Graph's answer.
        facts.update(_collect_grants(graph, app_sp))
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
    return _grants_from(graph, second)


def _grants_from(graph: GraphClient, second: dict[str, GraphResponse]) -> dict[str, Any]:
    """The grants and role facts from the answers to `second_round_trip` (sent alone or with the first)."""
    eligibilities = second.get("role_eligibilities")
    pim_note = pim_unlicensed_note(eligibilities.status, eligibilities.body) if eligibilities is not None else ""
    return {
        "pim_note": pim_note,
        "app_role_grants": collection_fact(
            WHAT["app_role_grants"], second.get("app_role_grants"), graph, parse_app_role_grants
        ),
        "role_assignments": collection_fact(
            WHAT["role_assignments"],
            second.get("role_assignments"),
            graph,
            lambda items: parse_role_assignments(items, "active"),
        ),
        # Without a PIM licence no eligible assignment can exist: a true empty fact, with the note as evidence.
        "role_eligibilities": ()
        if pim_note
        else collection_fact(
            WHAT["role_eligibilities"], eligibilities, graph, lambda items: parse_role_assignments(items, "eligible")
        ),
    }


def _probe_with_token(
    settings: Settings, session: requests.Session, attempt: TokenAttempt, access_token: str
) -> ExchangeProbe | Unavailable:
    tenant_for_url = settings.organization or settings.tenant or ""
    anchor = str(attempt.claims.get("tid") or settings.tenant or "")
    return probe_exchange(settings, session, access_token, tenant_for_url, anchor_tenant=anchor)


# Lanes of the request log: the evidence lists the auditor's requests first, then the app's, then any
# further read, each in the order it was sent, whichever finished first.
AUDITOR_LANE, APP_LANE, FURTHER_LANE, PROFILE_RBAC_LANE = 1, 2, 3, 4
# The auditor's path, the app's path and the further reads: one thread each, no more (one more per further read).
PATHS = 4


@dataclasses.dataclass
class _AppPath:
    """The app under test's token attempt and, with a token, the Exchange probe."""

    token: TokenAttempt | Unavailable
    exchange: ExchangeProbe | None | Unavailable
    profile_tokens: dict[str, TokenAttempt | Unavailable] = dataclasses.field(default_factory=dict)
    profile_probes: dict[str, ExchangeProbe | None | Unavailable] = dataclasses.field(default_factory=dict)


ProfileRead = tuple[TokenAttempt | Unavailable, ExchangeProbe | None | Unavailable]


def _profile_tokens(
    settings: Settings, session: requests.Session, path: _AppPath, read: dict[str, ProfileRead]
) -> None:
    """The app's token for each other profile that names its resource (its claims only; the bearer is dropped
    after that profile's read-only probe, sent the way the Exchange probe is); `read`: profiles already read
    with the default chain's token (`_admin_api_beside`)."""
    for name in settings.profile:
        profile = profiles.profile_named(name)
        resource = profiles.token_resource_in(profile, settings.cloud)
        if name == profiles.DEFAULT or not resource:
            continue
        if name in read:
            path.profile_tokens[name], path.profile_probes[name] = read[name]
            continue
        if name == profiles.EXCHANGE_ADMIN_API:  # its own URL, body and answer (collect/adminapi.py)
            collected = adminapi.collect_admin_api(settings, session, _signing_material(settings), profile)
            path.profile_tokens[name], path.profile_probes[name] = collected
            continue
        token, access_token = acquire_app_token(settings, session, _signing_material(settings), resource)
        path.profile_tokens[name] = token
        if isinstance(token, TokenAttempt) and token.acquired and access_token:
            tenant_for_url = settings.organization or settings.tenant or ""
            target = ProbeTarget(
                profile.probe_cmdlet,
                profiles.probe_url_in(profile, settings.cloud_endpoints, tenant_for_url),
                profiles.service_domains_in(profile, settings.cloud),
            )
            anchor = str(token.claims.get("tid") or settings.tenant or "")
            path.profile_probes[name] = probe_exchange(
                settings, session, access_token, tenant_for_url, anchor_tenant=anchor, target=target
            )
        elif isinstance(token, Unavailable):
            path.profile_probes[name] = Unavailable(f"the {name} probe", f"no token to call it with: {token.reason}")
        else:
            path.profile_probes[name] = None
        del access_token  # the token is not kept beyond the probe


def _app_path(settings: Settings, session: requests.Session, token_known: Future[str | None]) -> _AppPath:
    """Token, then Exchange; the token's `oid` is published to the auditor's path as soon as it is known."""
    try:
        token, access_token = acquire_app_token(settings, session, _signing_material(settings))
    except BaseException:
        token_known.set_result(None)
        raise
    token_known.set_result(_sp_id_from(token, settings))
    exchange: ExchangeProbe | None | Unavailable = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cbacheck-admin-api") as beside:
        read = _admin_api_beside(settings, session, token, access_token, beside)
        if isinstance(token, TokenAttempt) and token.acquired and access_token:
            exchange = _probe_with_token(settings, session, token, access_token)
        elif isinstance(token, Unavailable):
            exchange = Unavailable("the Exchange Online probe", f"no token to call Exchange with: {token.reason}")
        del access_token  # the token is not kept beyond the probes
        path = _AppPath(token, exchange)
        _profile_tokens(
            settings, session, path, {name: (attempt, probe.result()) for name, (attempt, probe) in read.items()}
        )
    return path


def _admin_api_beside(
    settings: Settings,
    session: requests.Session,
    token: TokenAttempt | Unavailable,
    access_token: str | None,
    beside: ThreadPoolExecutor,
) -> dict[str, tuple[TokenAttempt | Unavailable, Future[ExchangeProbe | None | Unavailable]]]:
    """The Admin API read with the default chain's token when it asks for the same scope: no second token
    request, and its probe runs beside the Exchange probe (sub-lane 1 of the app's lane, listed after it)."""
    profile = profiles.profile_named(profiles.EXCHANGE_ADMIN_API)
    if profile.name not in settings.profile or not adminapi.shares_exchange_token(settings, profile):
        return {}
    log = stats_of(session).sources
    probe = beside.submit(
        _in_lane, log.sub_lane(1), log, adminapi.probe_with_token, settings, session, profile, token, access_token
    )
    return {profile.name: (adminapi.as_profile_token(token, profile, settings.cloud), probe)}


def _sp_id_from(token: TokenAttempt | Unavailable, settings: Settings) -> str | None:
    """The service principal's object id: an app-only token's `oid` claim, when the token is the app's own.

    `oid` is the object id of the requestor, for an app-only token its service principal
    (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference). Graph's own
    answer still decides: the grants read for this id count only when Graph names the same one.
    """
    if not (isinstance(token, TokenAttempt) and token.acquired):
        return None
    claims = token.claims
    oid = claims.get("oid")
    if not isinstance(oid, str) or claims.get("appid", claims.get("azp")) != settings.app_id:
        return None
    return oid if all(part.isalnum() for part in oid.split("-")) else None


def _in_lane(lane: int | tuple[int, ...], log: Any, work: Callable[..., T], *args: Any) -> T:
    with log.lane(*(lane if isinstance(lane, tuple) else (lane,))):
        return work(*args)


def collect(settings: Settings, *, now: datetime | None = None, session: requests.Session | None = None) -> TenantFacts:
    """Gather every fact the checks of links 2 to 6 need, once.

    Two paths run side by side: the auditor's (its token, then Graph in one $batch when the app's
    token names its service principal, else two) and the app's (its token, then the Exchange probe).
    Nothing is defaulted: what could not be read is Unavailable. A cmdlet that is not read-only
    raises ConfigError before any request.
    """
    if not (settings.tenant and settings.app_id):
        raise CredentialError("collect needs tenant and app_id; set both (--tenant and --app-id, or CBACHECK_*)")
    require_read_only_cmdlet(settings)
    started = time.perf_counter()
    collected_at = now or datetime.now(UTC)
    session = session or build_session(settings)
    stats = stats_of(session)
    login_url = settings.cloud_endpoints.login_url
    discovery.load(stats.http_cache, login_url)  # within msal's 24 hours, no discovery request at all
    token_known: Future[str | None] = Future()
    with ThreadPoolExecutor(max_workers=PATHS, thread_name_prefix="cbacheck-collect") as pool:
        app = pool.submit(_in_lane, APP_LANE, stats.sources, _app_path, settings, session, token_known)
        graph = pool.submit(
            _in_lane, AUDITOR_LANE, stats.sources, _collect_graph, settings, session, token_known.result
        )
        # Further reads go here, one line each, in FURTHER_LANE: they run beside the two paths above and
        # their result becomes a TenantFacts field below. The app's Exchange RBAC, read by the auditor with its
        # own Exchange token, needs nothing from Graph (the admin API URL takes the configured organization).
        rbac = pool.submit(_in_lane, FURTHER_LANE, stats.sources, collect_exchange_rbac, settings, session, None)
        # A profile's own role groups (Security & Compliance), beside the Exchange RBAC read.
        profile_rbac = pool.submit(_in_lane, PROFILE_RBAC_LANE, stats.sources, collect_profile_rbac, settings, session)
        app_path = app.result()
        graph_facts, auditor = graph.result()
        exchange_rbac = rbac.result()
        rbac_by_profile = profile_rbac.result()
    discovery.save(stats.http_cache, login_url)

    wall_ms = (time.perf_counter() - started) * 1000
    return TenantFacts(
        collected_at=collected_at,
        tenant=settings.tenant,
        app_id=settings.app_id,
        organization_setting=settings.organization,
        token=app_path.token,
        exchange=app_path.exchange,
        profile_tokens=app_path.profile_tokens,
        profile_probes=app_path.profile_probes,
        auditor=auditor,
        exchange_rbac=exchange_rbac,
        profile_rbac=rbac_by_profile,
        requests=tuple(stats.sources.in_lane_order()),
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


def collect_in_background(settings: Settings) -> Future[TenantFacts]:
    """`collect(settings)` started now, on a daemon thread: its answer (or exception) waits in the future.

    `cbacheck run` starts it as soon as the settings are resolved, so the network waits overlap
    pytest's start-up; an unused collection never holds up the end of the process.
    """
    future: Future[TenantFacts] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(collect(settings))
        except BaseException as err:  # noqa: BLE001 - handed to whoever waits, exactly as collect() raised it
            future.set_exception(err)

    threading.Thread(target=work, name="cbacheck-early-collect", daemon=True).start()
    return future
