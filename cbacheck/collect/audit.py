"""Tenant-wide reads for `cbacheck audit`: every principal granted an Exchange app-only permission, from lists.

Graph's identity throttling counts requests, not objects
(https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits), so the audit
reads 999-item pages of whole collections rather than one app at a time: the resource service
principals in one $batch, then side by side (a bounded pool) each resource's ``appRoleAssignedTo``
(https://learn.microsoft.com/graph/api/serviceprincipal-list-approleassignedto), the applications and
service principals with ``$select``, and the directory role assignments and eligibilities. Each page is
reduced to compact facts before the next arrives; Retry-After is followed by the session's retry policy.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from cbacheck import wellknown
from cbacheck.auditfacts import (
    AccessPolicy,
    ApplicationRoleAssignment,
    AppLinks,
    AuditFacts,
    EwsPolicy,
    Holder,
    SuppliedFile,
)
from cbacheck.certs.folder import SuppliedCertificate
from cbacheck.collect import application_rbac, audit_links
from cbacheck.collect.graph import BatchRequest, GraphClient
from cbacheck.collect.parse import parse_application, parse_role_assignments, parse_service_principal
from cbacheck.collect.rbac import ExchangeCommandError, ExchangeCommands, _assignment, _pointer, exchange_tenant
from cbacheck.collect.tokens import graph_token_provider
from cbacheck.collect.transport import build_session, is_token_request, stats_of, trusted_target
from cbacheck.config import Settings
from cbacheck.errors import CredentialError, GraphError
from cbacheck.facts import (
    AppRegistration,
    DirectoryRoleAssignment,
    ExchangeRbac,
    ExchangeServicePrincipal,
    ManagementRoleAssignment,
    ServicePrincipal,
)

PAGE = "999"
MAX_PARALLEL = 6
RESOURCE_SELECT = "id,appId,displayName,appRoles"
APP_SELECT = (
    "id,appId,displayName,signInAudience,keyCredentials,passwordCredentials,requiredResourceAccess,createdDateTime"
)
SP_SELECT = "id,appId,displayName,accountEnabled,servicePrincipalType"
RESOURCES = (
    wellknown.EXCHANGE_ONLINE_APP_ID,
    wellknown.EXCHANGE_ONLINE_PROTECTION_APP_ID,
    wellknown.MICROSOFT_GRAPH_APP_ID,
)
# The links of the apps whose certificate was supplied, and every supplied file with what it matched.
LinksRead = tuple[dict[str, AppLinks], tuple[SuppliedFile, ...]]
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class SideBySide:
    """What the side-by-side lanes read."""

    holders: list[Holder]
    roles: dict[str, tuple[DirectoryRoleAssignment, ...]]
    applications_seen: int
    ews: EwsPolicy | None
    rbac: ExchangeRbac | None
    last_sign_in: dict[str, str] | None
    app_management_policy: dict[str, object] | None
    application_rbac: dict[str, tuple[ApplicationRoleAssignment, ...]] | None
    access_policies: tuple[AccessPolicy, ...] | None
    links: LinksRead


def audited_roles(resource: ServicePrincipal) -> dict[str, str]:
    """appRoleId (lower case) -> value of the resource's app roles the audit looks for."""
    wanted = wellknown.AUDIT_EXCHANGE_ROLES.get(resource.app_id.lower())
    out = {}
    for role in resource.app_roles:
        mailbox = resource.app_id.lower() == wellknown.MICROSOFT_GRAPH_APP_ID and role.value.startswith(
            wellknown.GRAPH_MAILBOX_PREFIXES
        )
        if mailbox or (wanted is not None and role.value in wanted):
            out[role.id.lower()] = role.value
    return out


def endpoint_of(url: str) -> str:
    """A request's endpoint for the per-endpoint count: path without query, GUIDs and appId keys replaced."""
    path = url.split("?", 1)[0]
    if "/adminapi/" in path:
        return "Exchange InvokeCommand"
    if "/v1.0/" in path:
        return _GUID.sub("{id}", path.split("/v1.0", 1)[1])  # relative to the version root, as $batch names it
    if "/beta/" in path:
        return "beta " + _GUID.sub("{id}", path.split("/beta", 1)[1])
    return _GUID.sub("{id}", path)


def _resource_sps(graph: GraphClient) -> list[ServicePrincipal]:
    requests_ = [
        BatchRequest(f"r{i}", f"/servicePrincipals(appId='{app_id}')?$select={RESOURCE_SELECT}")
        for i, app_id in enumerate(RESOURCES)
    ]
    answers = graph.batch(requests_)
    found = []
    for request in requests_:
        answer = answers.get(request.id)
        if answer is not None and answer.ok:
            found.append(parse_service_principal(answer.body, answer.source))
        elif answer is not None and answer.status != 404:
            answer.raise_for_error()
    return found


class Pages:
    """Pages of one collection, one at a time (nothing of a page is kept but what the caller keeps).

    A nextLink carries the bearer token, so it is followed only where `transport.trusted_target` allows, as
    `GraphClient.follow_pages` does; `count` is the lane's sequential round trips.
    """

    def __init__(self, graph: GraphClient, path: str, params: dict[str, str]) -> None:
        self.graph, self.path, self.params = graph, path, {**params, "$top": PAGE}
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        page = self.graph.get(self.path, self.params)
        seen: set[str] = set()
        while True:
            self.count += 1
            yield from (item for item in page.value if isinstance(item, dict))
            next_link = page.body.get("@odata.nextLink") if isinstance(page.body, dict) else None
            if not isinstance(next_link, str):
                return
            if next_link in seen or not trusted_target(self.graph.base_url, next_link):
                raise GraphError(
                    "GET", self.path, page.status, "UntrustedNextLink", f"next page {next_link!r} not followed"
                )
            seen.add(next_link)
            page = self.graph.get(next_link)


def _grants(graph: GraphClient, resource: ServicePrincipal, lanes: dict[str, int]) -> dict[str, list[str]]:
    """principal object id -> "resource/value" of every audited role granted on this resource."""
    roles = audited_roles(resource)
    held: dict[str, list[str]] = defaultdict(list)
    if not roles:
        return held
    pages = Pages(graph, f"/servicePrincipals/{resource.object_id}/appRoleAssignedTo", {})
    for item in pages:
        value = roles.get(str(item.get("appRoleId", "")).lower())
        if value and item.get("principalType", "ServicePrincipal") == "ServicePrincipal":
            permission = f"{resource.display_name}/{value}"
            principal = str(item.get("principalId", "")).lower()
            if permission not in held[principal]:
                held[principal].append(permission)
    lanes[f"appRoleAssignedTo {resource.display_name}"] = pages.count
    return held


def _compact_app(item: dict[str, Any]) -> dict[str, Any]:
    """An application as the audit keeps it: the certificate bytes dropped (thumbprints and dates stay)."""
    for key in item.get("keyCredentials") or ():
        if isinstance(key, dict):
            key.pop("key", None)
    return item


def _listing(
    graph: GraphClient, path: str, params: dict[str, str], keep: Callable[[dict[str, Any]], Any], lanes: dict[str, int]
) -> list[Any]:
    """Every item of a collection that `keep` turns into a fact, page by page."""
    pages = Pages(graph, path, params)
    kept = [fact for item in pages if (fact := keep(item)) is not None]
    lanes[path] = pages.count
    return kept


def _roles(
    graph: GraphClient, path: str, status: str, not_read: dict[str, str], lanes: dict[str, int]
) -> list[DirectoryRoleAssignment]:
    try:
        return list(parse_role_assignments(_listing(graph, path, {}, lambda item: item, lanes), status))
    except GraphError as err:
        not_read[f"directory role {status} assignments"] = f"{err} (needs RoleManagement.Read.Directory)"
        return []


def _read_side_by_side(
    graph: GraphClient,
    commands: ExchangeCommands,
    resources: list[ServicePrincipal],
    not_read: dict[str, str],
    lanes: dict[str, int],
    later: list[int],
    links_of: Callable[[list[Holder]], LinksRead],
) -> SideBySide:
    """Every lane at once: Graph's lists in one bounded pool, Exchange's reads in another (each service throttles
    on its own); owner batches, the RBAC reads and the supplied certificates' links (`links_of`, bounded by
    audit_links.MAX_PARALLEL) start as soon as the holders and their keyCredentials are known, side by side."""
    with (
        ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="cbacheck-audit") as pool,
        ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="cbacheck-audit-exo") as exo,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="cbacheck-audit-links") as beside,
    ):
        exchange = exo.submit(_exchange_reads, commands, exo, not_read)
        grant_futures = [pool.submit(_grants, graph, resource, lanes) for resource in resources]
        apps = pool.submit(_listing, graph, "/applications", {"$select": APP_SELECT}, _compact_app, lanes)
        sps = pool.submit(_listing, graph, "/servicePrincipals", {"$select": SP_SELECT}, lambda i: i, lanes)
        active = pool.submit(_roles, graph, "/roleManagement/directory/roleAssignments", "active", not_read, lanes)
        eligible = pool.submit(
            _roles, graph, "/roleManagement/directory/roleEligibilitySchedules", "eligible", not_read, lanes
        )
        sign_ins = pool.submit(_sign_ins, graph, not_read, lanes)
        policy = pool.submit(_app_management_policy, graph, not_read)
        held: dict[str, list[str]] = defaultdict(list)
        for future in grant_futures:
            for principal, permissions in future.result().items():
                held[principal].extend(permissions)
        read = exchange.result()
        for sp_id, assignments in (read.application_rbac or {}).items():
            # Principals granted mailbox access by RBAC for Applications are holders too, Entra grant or not.
            held[sp_id].extend(f"{wellknown.RBAC_FOR_APPLICATIONS}/{a.role}" for a in assignments)
        holders = _holders(held, sps.result(), apps.result())
        links = beside.submit(links_of, holders)
        rbac = pool.submit(_rbac_or_none, commands, read.pointers, holders, exo, not_read)
        holders = _relations(graph, holders, pool, later)
        roles = _by_principal([*active.result(), *eligible.result()], held)
        return SideBySide(
            holders,
            roles,
            len(apps.result()),
            read.ews,
            rbac.result(),
            sign_ins.result(),
            policy.result(),
            read.application_rbac,
            read.access_policies,
            links.result(),
        )


def _sign_ins(graph: GraphClient, not_read: dict[str, str], lanes: dict[str, int]) -> dict[str, str] | None:
    """appId -> last app-only sign-in, from GET /beta/reports/servicePrincipalSignInActivities (AuditLog.Read.All,
    https://learn.microsoft.com/graph/api/reportroot-list-serviceprincipalsigninactivities); None when unreadable."""
    url = graph.base_url.rsplit("/v1.0", 1)[0] + "/beta/reports/servicePrincipalSignInActivities"
    try:
        items = _listing(graph, url, {}, lambda item: item, lanes)
    except GraphError as err:
        not_read["last sign-in"] = f"not read: {err.status} {err.code} (needs AuditLog.Read.All)"
        return None
    out: dict[str, str] = {}
    for item in items:
        activity = item.get("applicationAuthenticationClientSignInActivity") or item.get("lastSignInActivity") or {}
        when = activity.get("lastSignInDateTime") if isinstance(activity, dict) else None
        if when:
            out[str(item.get("appId", "")).lower()] = str(when)
    return out


def _app_management_policy(graph: GraphClient, not_read: dict[str, str]) -> dict[str, object] | None:
    """The tenant's default app management policy (Policy.Read.All,
    https://learn.microsoft.com/graph/api/tenantappmanagementpolicy-get): whether it restricts credentials."""
    try:
        body = graph.get("/policies/defaultAppManagementPolicy").body
    except GraphError as err:
        not_read["app management policy"] = f"not read: {err.status} {err.code} (needs Policy.Read.All)"
        return None
    body = body if isinstance(body, dict) else {}
    restrictions = body.get("applicationRestrictions") or {}
    return {
        "isEnabled": body.get("isEnabled"),
        "passwordCredentials": [r.get("restrictionType") for r in restrictions.get("passwordCredentials") or []],
        "keyCredentials": [r.get("restrictionType") for r in restrictions.get("keyCredentials") or []],
    }


def _rbac_or_none(
    commands: ExchangeCommands,
    pointers: list[ExchangeServicePrincipal] | None,
    holders: list[Holder],
    pool: ThreadPoolExecutor,
    not_read: dict[str, str],
) -> ExchangeRbac | None:
    if pointers is None:
        return None
    try:
        return _rbac_of(commands, pointers, holders, pool)
    except (ExchangeCommandError, CredentialError) as err:
        not_read["Exchange RBAC"] = f"Exchange RBAC not read: {err}"
        return None


OWNER_SELECT = "id,displayName,userPrincipalName,appId"
BATCH_ITEMS = 20  # Graph's JSON batch limit (https://learn.microsoft.com/graph/json-batching)


def _owner_name(item: dict[str, Any]) -> str:
    return str(item.get("userPrincipalName") or item.get("appId") or item.get("displayName") or item.get("id", ""))


def _federated_name(item: dict[str, Any]) -> str:
    return f"{item.get('name', '')}: {item.get('issuer', '')} / {item.get('subject', '')}"


def _relations(graph: GraphClient, holders: list[Holder], pool: ThreadPoolExecutor, later: list[int]) -> list[Holder]:
    """Each registered holder's owners (who can add a credential and act as the app) and federated credentials,
    two $batch items per app (https://learn.microsoft.com/graph/api/application-list-owners,
    https://learn.microsoft.com/graph/api/application-list-federatedidentitycredentials), batches side by side."""
    registered = [h for h in holders if h.app is not None]
    requests_ = [
        request
        for i, holder in enumerate(registered)
        if holder.app is not None
        for request in (
            BatchRequest(f"o{i}", f"/applications/{holder.app.object_id}/owners?$select={OWNER_SELECT}"),
            BatchRequest(f"f{i}", f"/applications/{holder.app.object_id}/federatedIdentityCredentials"),
        )
    ]
    chunks = [requests_[start : start + BATCH_ITEMS] for start in range(0, len(requests_), BATCH_ITEMS)]
    answers: dict[str, Any] = {}
    for answered in pool.map(graph.batch, chunks):
        answers.update(answered)
    later.append(-(-len(chunks) // MAX_PARALLEL))  # rounds of side-by-side batches after the lists
    read: dict[str, Holder] = {}
    for i, holder in enumerate(registered):
        owners, federated = answers.get(f"o{i}"), answers.get(f"f{i}")
        read[holder.sp.object_id] = dataclasses.replace(
            holder,
            owners=tuple(_owner_name(o) for o in owners.value) if owners is not None and owners.ok else None,
            federated_credentials=(
                tuple(_federated_name(f) for f in federated.value) if federated is not None and federated.ok else None
            ),
        )
    return [read.get(h.sp.object_id, h) for h in holders]


@dataclass(frozen=True)
class ExchangeReads:
    """What the Exchange lane read: the EWS policy, every pointer, the RBAC for Applications grants and the
    Application Access Policies (None: not read, the reason in not_read)."""

    ews: EwsPolicy | None
    pointers: list[ExchangeServicePrincipal] | None
    application_rbac: dict[str, tuple[ApplicationRoleAssignment, ...]] | None
    access_policies: tuple[AccessPolicy, ...] | None


def _exchange_reads(commands: ExchangeCommands, exo: ThreadPoolExecutor, not_read: dict[str, str]) -> ExchangeReads:
    """Five read-only cmdlets side by side: the EWS policy (Get-OrganizationConfig), every Exchange service principal
    pointer (Get-ServicePrincipal without -Identity returns all,
    https://learn.microsoft.com/powershell/module/exchangepowershell/get-serviceprincipal), every management role
    assignment, every management scope and every Application Access Policy (collect/application_rbac.py)."""

    def run(cmdlet: str) -> list[dict[str, Any]] | ExchangeCommandError | CredentialError:
        try:
            return commands.run(cmdlet, {})
        except (ExchangeCommandError, CredentialError) as err:
            return err

    # Four in the pool and one here: this lane holds a worker of the pool itself, so it never waits on a full pool.
    cmdlets = ("Get-ServicePrincipal", application_rbac.ASSIGNMENTS_CMDLET)
    more = (application_rbac.SCOPES_CMDLET, application_rbac.POLICIES_CMDLET)
    futures = [exo.submit(run, cmdlet) for cmdlet in (*cmdlets, *more)]
    config = run("Get-OrganizationConfig")
    pointer_items, assignments, scopes, policies = (future.result() for future in futures)
    if isinstance(policies, list):
        read_policies: tuple[AccessPolicy, ...] | None = application_rbac.access_policies(policies)
    else:
        read_policies = None
        not_read["Application Access Policies"] = f"not read: {policies} ({application_rbac.NEEDS})"
    ews: EwsPolicy | None = None
    if isinstance(config, list):
        first = config[0] if config else {}
        enabled = first.get("EwsEnabled")
        allowed = first.get("EwsAllowedAppIDs") or []
        ews = EwsPolicy(
            enabled if isinstance(enabled, bool) else None,
            frozenset(str(a).lower() for a in (allowed if isinstance(allowed, list) else str(allowed).split(","))),
        )
    else:
        not_read["EWS status"] = f"EWS status not read: {config} (needs an Exchange role with Get-OrganizationConfig)"
    if not isinstance(pointer_items, list):
        not_read["Exchange RBAC"] = f"Exchange RBAC not read: {pointer_items} (needs View-Only Organization Management)"
        not_read["RBAC for Applications"] = f"not read: {pointer_items} ({application_rbac.NEEDS})"
        return ExchangeReads(ews, None, None, read_policies)
    pointers = [_pointer(item) for item in pointer_items]
    if not isinstance(assignments, list):
        not_read["RBAC for Applications"] = f"not read: {assignments} ({application_rbac.NEEDS})"
        return ExchangeReads(ews, pointers, None, read_policies)
    if not isinstance(scopes, list):
        not_read["management scopes"] = f"filters not shown: {scopes} ({application_rbac.NEEDS})"
    read = application_rbac.application_assignments(assignments, pointers, scopes if isinstance(scopes, list) else None)
    return ExchangeReads(ews, pointers, read, read_policies)


def _rbac_of(
    commands: ExchangeCommands,
    pointers: list[ExchangeServicePrincipal],
    holders: list[Holder],
    pool: ThreadPoolExecutor,
) -> ExchangeRbac:
    """The pointers of Exchange.ManageAsApp holders (ObjectId = the holder's service principal) and their role
    assignments, direct and via role groups (-RoleAssignee), one request per such pointer, side by side."""
    manage = {h.sp.object_id.lower() for h in holders if h.holds(wellknown.EXCHANGE_MANAGE_AS_APP)}
    matched = [p for p in pointers if p.object_id.lower() in manage]

    def assignments(pointer: ExchangeServicePrincipal) -> list[ManagementRoleAssignment]:
        try:
            found = commands.run("Get-ManagementRoleAssignment", {"RoleAssignee": pointer.object_id})
        except ExchangeCommandError as err:
            if err.status == 404:  # a pointer that holds nothing
                return []
            raise
        return [_assignment(pointer.object_id, item) for item in found]

    held = [a for found in pool.map(assignments, matched) for a in found]
    return ExchangeRbac(tuple(matched), tuple(held), ())


def collect_audit(
    settings: Settings,
    *,
    now: datetime | None = None,
    session: requests.Session | None = None,
    supplied: tuple[SuppliedCertificate, ...] = (),
) -> AuditFacts:
    """Read every Exchange app-only principal of the tenant with the auditor identity; then the token and Exchange
    links of the apps whose certificate is among `supplied` (collect/audit_links.py)."""
    session = session or build_session(settings)
    cloud = settings.cloud_endpoints
    provider = graph_token_provider(settings, session, "auditor")
    graph = GraphClient(
        cloud.graph_url, provider, session, batching=settings.batching, scope=f"{cloud.graph_resource}/.default"
    )
    read_at = now or datetime.now(UTC)
    resources = _resource_sps(graph)
    not_read: dict[str, str] = {}
    lanes: dict[str, int] = {}
    later: list[int] = []
    commands = ExchangeCommands(settings, session, provider, exchange_tenant(settings, None))
    tools = frozenset(a.lower() for a in (settings.auditor_app_id, settings.admin_app_id) if a)

    def links_of(read_holders: list[Holder]) -> LinksRead:
        audited = (h for h in read_holders if h.sp.app_id.lower() not in tools)
        pairs, files = audit_links.match_certificates(audited, supplied)
        return audit_links.collect_links(settings, session, pairs), files

    read = _read_side_by_side(graph, commands, resources, not_read, lanes, later, links_of)
    holders = tuple(h for h in read.holders if h.sp.app_id.lower() not in tools)
    links, files = read.links
    unmatched = [f"{f.name} ({f.problem or 'SHA-1 ' + f.thumbprint})" for f in files if not f.app_ids]
    if unmatched:
        not_read["supplied certificates"] = f"no audited app holds {', '.join(unmatched)}"
    stats = stats_of(session)
    counts = Counter(endpoint_of(source.url) for source in stats.sources if not is_token_request("POST", source.url))
    return AuditFacts(
        collected_at=read_at,
        tenant=settings.tenant or "",
        holders=holders,
        links=links,
        supplied=files,
        roles=read.roles,
        exchange_rbac=read.rbac,
        application_rbac=read.application_rbac,
        access_policies=read.access_policies,
        last_sign_in=read.last_sign_in,
        app_management_policy=read.app_management_policy,
        ews=read.ews,
        tools=tools,
        not_read=not_read,
        requests_per_endpoint=dict(counts),
        round_trips=stats.graph_round_trips,
        # The $batch of resource principals, the longest lane of pages read side by side, then the rounds of
        # owner batches (the Exchange reads run beside the lists; the RBAC reads beside the owner batches).
        # With supplied certificates, each app's token and then its Exchange probe run beside the owner
        # batches too, apps side by side: the longer of the two follows the lists.
        sequential_round_trips=1 + max(lanes.values(), default=0) + max(sum(later), 2 if links else 0),
        applications_seen=read.applications_seen,
    )


def _holders(held: dict[str, list[str]], sps: Iterable[dict[str, Any]], apps: Iterable[dict[str, Any]]) -> list[Holder]:
    """The holders' service principals and app registrations; every other object is dropped as it is read."""
    sp_items = {str(item.get("id", "")).lower(): item for item in sps if str(item.get("id", "")).lower() in held}
    wanted_apps = {str(item.get("appId", "")).lower() for item in sp_items.values()}
    registrations: dict[str, AppRegistration] = {
        str(item.get("appId", "")).lower(): parse_application(item)
        for item in apps
        if str(item.get("appId", "")).lower() in wanted_apps
    }
    holders = []
    for sp_id, item in sp_items.items():
        sp = parse_service_principal(item)
        holders.append(
            Holder(
                sp=sp,
                service_principal_type=str(item.get("servicePrincipalType") or "Application"),
                permissions=tuple(held[sp_id]),
                app=registrations.get(sp.app_id.lower()),
            )
        )
    return sorted(holders, key=lambda h: (h.sp.display_name.lower(), h.sp.app_id))


def _by_principal(
    assignments: Iterable[DirectoryRoleAssignment], held: dict[str, list[str]]
) -> dict[str, tuple[DirectoryRoleAssignment, ...]]:
    grouped: dict[str, list[DirectoryRoleAssignment]] = defaultdict(list)
    for assignment in assignments:
        if assignment.principal_id.lower() in held:
            grouped[assignment.principal_id.lower()].append(assignment)
    return {principal: tuple(items) for principal, items in grouped.items()}
