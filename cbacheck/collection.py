"""Collect every tenant fact for links 2 to 6 once: Graph in two $batch round trips, then the token and Exchange."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests

from cbacheck import certs, wellknown
from cbacheck.config import Settings
from cbacheck.errors import CbaCheckError, CertificateError, CredentialError, GraphError
from cbacheck.exchange import probe_exchange
from cbacheck.facts import (
    AppRegistration,
    AppRole,
    AppRoleAssignment,
    CollectionStats,
    DirectoryRoleAssignment,
    ExchangeProbe,
    KeyCredential,
    Organization,
    PasswordCredential,
    RequiredResource,
    ResourceAccess,
    ServicePrincipal,
    Source,
    TenantFacts,
    TokenAttempt,
    Unavailable,
)
from cbacheck.graph import BatchRequest, GraphClient, GraphResponse, permission_for
from cbacheck.tokens import acquire_app_token, describe_provider, graph_token_provider
from cbacheck.transport import build_session, stats_of

T = TypeVar("T")

APP_SELECT = "id,appId,displayName,signInAudience,keyCredentials,passwordCredentials,requiredResourceAccess"
SP_SELECT = "id,appId,displayName,accountEnabled,appRoles"
EXCHANGE_SP_SELECT = "id,appId,displayName,appRoles"
ORG_SELECT = "id,displayName,verifiedDomains"


class MalformedFact(CbaCheckError):
    """Graph answered 2xx with JSON that lacks what the fact needs."""


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


# --- Graph JSON → facts ------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 from Graph as an aware UTC datetime (Graph sends 7 fractional digits and 'Z')."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise MalformedFact(f"{value!r} is not an ISO 8601 date") from err
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def decode_key(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise MalformedFact("a keyCredential 'key' is not base64") from err


def _required(item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedFact(f"the object has no {name!r}")
    return value


def _list(item: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = item.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedFact(f"{name!r} is not a list")
    return [entry for entry in value if isinstance(entry, dict)]


def parse_application(body: Any, source: Source | None = None) -> AppRegistration:
    if not isinstance(body, dict):
        raise MalformedFact("the application is not a JSON object")
    keys = tuple(
        KeyCredential(
            key_id=str(k.get("keyId", "")),
            type=str(k.get("type", "")),
            usage=str(k.get("usage", "")),
            display_name=str(k.get("displayName") or ""),
            start=parse_time(k.get("startDateTime")),
            end=parse_time(k.get("endDateTime")),
            custom_key_identifier=k.get("customKeyIdentifier") or None,
            key_der=decode_key(k.get("key")),
        )
        for k in _list(body, "keyCredentials")
    )
    passwords = tuple(
        PasswordCredential(
            key_id=str(p.get("keyId", "")),
            display_name=str(p.get("displayName") or ""),
            hint=str(p.get("hint") or ""),
            start=parse_time(p.get("startDateTime")),
            end=parse_time(p.get("endDateTime")),
        )
        for p in _list(body, "passwordCredentials")
    )
    resources = tuple(
        RequiredResource(
            resource_app_id=str(r.get("resourceAppId", "")),
            access=tuple(
                ResourceAccess(id=str(a.get("id", "")), type=str(a.get("type", ""))) for a in _list(r, "resourceAccess")
            ),
        )
        for r in _list(body, "requiredResourceAccess")
    )
    return AppRegistration(
        object_id=_required(body, "id"),
        app_id=_required(body, "appId"),
        display_name=str(body.get("displayName") or ""),
        sign_in_audience=str(body.get("signInAudience") or ""),
        key_credentials=keys,
        password_credentials=passwords,
        required_resource_access=resources,
        raw=body,
        source=source,
    )


def parse_service_principal(body: Any, source: Source | None = None) -> ServicePrincipal:
    if not isinstance(body, dict):
        raise MalformedFact("the service principal is not a JSON object")
    enabled = body.get("accountEnabled")
    return ServicePrincipal(
        object_id=_required(body, "id"),
        app_id=_required(body, "appId"),
        display_name=str(body.get("displayName") or ""),
        # Not selected for the Exchange SP; an SP Graph returns without the flag is not disabled.
        account_enabled=enabled is not False,
        app_roles=tuple(
            AppRole(
                id=str(r.get("id", "")),
                value=str(r.get("value") or ""),
                display_name=str(r.get("displayName") or ""),
                allowed_member_types=tuple(str(t) for t in r.get("allowedMemberTypes") or ()),
            )
            for r in _list(body, "appRoles")
        ),
        source=source,
    )


def parse_organization(body: Any, source: Source | None = None) -> Organization:
    values = body.get("value") if isinstance(body, dict) else None
    if not isinstance(values, list) or not values or not isinstance(values[0], dict):
        raise MalformedFact("/organization returned no organization")
    org = values[0]
    domains = _list(org, "verifiedDomains")
    initial = next((str(d.get("name", "")) for d in domains if d.get("isInitial") is True), "")
    return Organization(
        tenant_id=_required(org, "id"),
        display_name=str(org.get("displayName") or ""),
        initial_domain=initial,
        verified_domains=tuple(str(d.get("name", "")) for d in domains if d.get("name")),
        source=source,
    )


def parse_app_role_grants(items: list[Any]) -> tuple[AppRoleAssignment, ...]:
    return tuple(
        AppRoleAssignment(
            id=_required(item, "id"),
            principal_id=str(item.get("principalId", "")),
            resource_id=str(item.get("resourceId", "")),
            resource_display_name=str(item.get("resourceDisplayName") or ""),
            app_role_id=str(item.get("appRoleId", "")),
            created=str(item.get("createdDateTime") or ""),
        )
        for item in items
        if isinstance(item, dict) and not item.get("deletedDateTime")
    )


def parse_role_assignments(items: list[Any], status: str) -> tuple[DirectoryRoleAssignment, ...]:
    parsed = []
    for item in items:
        if not isinstance(item, dict):
            continue
        expanded = item.get("roleDefinition")
        definition: dict[str, Any] = expanded if isinstance(expanded, dict) else {}
        definition_id = _required(item, "roleDefinitionId")
        # For built-in roles roleDefinitionId is the template id (FACTS.md 1.6).
        template = str(definition.get("templateId") or definition_id).lower()
        name = str(definition.get("displayName") or wellknown.DIRECTORY_ROLE_NAMES.get(template, ""))
        parsed.append(
            DirectoryRoleAssignment(
                id=_required(item, "id"),
                principal_id=str(item.get("principalId", "")),
                role_definition_id=definition_id,
                role_template_id=template,
                role_display_name=name,
                directory_scope_id=str(item.get("directoryScopeId") or ""),
                app_scope_id=item.get("appScopeId") or None,
                status=status,
            )
        )
    return tuple(parsed)


# --- Graph answers → fact or None or Unavailable ------------------------------------------------------


def unavailable_from(what: str, err: CbaCheckError, source: Source | None = None) -> Unavailable:
    if isinstance(err, GraphError):
        missing = permission_for(err.method, err.url) if err.status == 403 else ""
        return Unavailable(what, str(err), missing_permission=missing, source=source, error=err)
    return Unavailable(what, str(err), source=source, error=err)


def single(what: str, answer: GraphResponse | None, parse: Callable[[Any, Source | None], T]) -> T | None | Unavailable:
    """An object addressed by key: 404 Request_ResourceNotFound means confirmed absent (None)."""
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


def collection(
    what: str, answer: GraphResponse | None, graph: GraphClient, parse: Callable[[list[Any]], tuple[T, ...]]
) -> tuple[T, ...] | Unavailable:
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
        "app": single(WHAT["app"], first.get("app"), parse_application),
        "app_sp": single(WHAT["app_sp"], first.get("app_sp"), parse_service_principal),
        "exchange_sp": single(WHAT["exchange_sp"], first.get("exchange_sp"), parse_service_principal),
    }
    organization = single(WHAT["organization"], first.get("organization"), parse_organization)
    facts["organization"] = (
        Unavailable(WHAT["organization"], "/organization answered 404") if organization is None else organization
    )
    app_sp = facts["app_sp"]
    if isinstance(app_sp, Unavailable):
        reason = f"needs the service principal's object id, which could not be read: {app_sp.reason}"
        facts.update(
            {
                name: Unavailable(WHAT[name], reason, missing_permission=app_sp.missing_permission)
                for name in SECOND_ROUND_TRIP
            }
        )
        return facts, auditor
    if app_sp is None:
        # No service principal: nothing can be granted or assigned to it. A true fact, not a default.
        facts.update(dict.fromkeys(SECOND_ROUND_TRIP, ()))
        return facts, auditor
    try:
        second = graph.batch(second_round_trip(app_sp.object_id))
    except (GraphError, CredentialError) as err:
        facts.update(_all_unavailable(SECOND_ROUND_TRIP, err))
        return facts, auditor
    facts["app_role_grants"] = collection(
        WHAT["app_role_grants"], second.get("app_role_grants"), graph, parse_app_role_grants
    )
    facts["role_assignments"] = collection(
        WHAT["role_assignments"],
        second.get("role_assignments"),
        graph,
        lambda items: parse_role_assignments(items, "active"),
    )
    facts["role_eligibilities"] = collection(
        WHAT["role_eligibilities"],
        second.get("role_eligibilities"),
        graph,
        lambda items: parse_role_assignments(items, "eligible"),
    )
    return facts, auditor


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
    """
    if not (settings.tenant and settings.app_id):
        raise CredentialError("collect needs tenant and app_id; set both (--tenant and --app-id, or CBACHECK_*)")
    started = time.perf_counter()
    collected_at = now or datetime.now(UTC)
    session = session or build_session(settings)
    stats = stats_of(session)

    graph_facts, auditor = _collect_graph(settings, session)
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
