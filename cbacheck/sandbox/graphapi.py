"""Microsoft Graph v1.0 of the sandbox: the routes cbacheck reads and writes, $batch, permissions."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, Map, Rule

from cbacheck import wellknown
from cbacheck.sandbox.identity import AccessTokenError, TokenSigner
from cbacheck.sandbox.odata import (
    QueryError,
    decode_skiptoken,
    encode_skiptoken,
    parse_filter,
    parse_select,
    parse_top,
)
from cbacheck.sandbox.response import Call
from cbacheck.sandbox.state import (
    ENTITY_TYPES,
    TEMPLATES,
    JsonObject,
    TenantState,
    assignment_id,
    certificate_facts,
    graph_time,
    is_guid,
    key_credential_for,
    new_guid,
    render,
    utcnow,
)

GRAPH_AUDIENCES: Final = frozenset({"https://graph.microsoft.com", wellknown.MICROSOFT_GRAPH_APP_ID})
MAX_BATCH: Final = 20

# --- permissions: one table --------------------------------------------------------------------
# Each operation needs, for every set in its tuple, at least one of the set's application
# permissions in the token's roles (FACTS.md 1.12 and the Graph permission references).
_APP_READ: Final = frozenset(
    {
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Application.ReadWrite.OwnedBy",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
_ROLE_READ: Final = frozenset(
    {
        "RoleManagement.Read.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.ReadWrite.Directory",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
PERMISSIONS: Final[dict[str, tuple[frozenset[str], ...]]] = {
    "applications.read": (_APP_READ,),
    # Application.ReadWrite.OwnedBy only covers apps the caller owns; owners are not modelled.
    "applications.write": (frozenset({"Application.ReadWrite.All"}),),
    "servicePrincipals.read": (_APP_READ,),
    "servicePrincipals.write": (frozenset({"Application.ReadWrite.All"}),),
    "appRoleAssignments.read": (_APP_READ | {"AppRoleAssignment.ReadWrite.All"},),
    "appRoleAssignments.write": (frozenset({"AppRoleAssignment.ReadWrite.All"}), _APP_READ),
    "roleAssignments.read": (_ROLE_READ,),
    "roleAssignments.write": (frozenset({"RoleManagement.ReadWrite.Directory"}),),
    "roleDefinitions.read": (_ROLE_READ,),
    "roleEligibility.read": (
        frozenset(
            {
                "RoleEligibilitySchedule.Read.Directory",
                "RoleEligibilitySchedule.ReadWrite.Directory",
                "RoleManagement.Read.Directory",
                "RoleManagement.Read.All",
                "RoleManagement.ReadWrite.Directory",
            }
        ),
    ),
    # UNCONFIRMED which is least privileged (FACTS.md 9.6): any of these is accepted.
    "organization.read": (
        frozenset(
            {
                "Organization.Read.All",
                "Organization.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            }
        ),
    ),
    "domains.read": (
        frozenset({"Domain.Read.All", "Domain.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}),
    ),
}

# $filter properties per collection.
FILTERABLE: Final[dict[str, frozenset[str]]] = {
    "applications": frozenset({"id", "appId", "displayName", "signInAudience", "publisherDomain"}),
    "servicePrincipals": frozenset(
        {"id", "appId", "displayName", "servicePrincipalType", "accountEnabled", "appOwnerOrganizationId"}
    ),
    "appRoleAssignments": frozenset({"id", "principalId", "resourceId", "appRoleId"}),
    "roleAssignments": frozenset({"id", "principalId", "roleDefinitionId", "directoryScopeId", "appScopeId"}),
    "roleDefinitions": frozenset({"id", "displayName", "templateId", "isBuiltIn"}),
    "roleEligibilitySchedules": frozenset({"id", "principalId", "roleDefinitionId", "directoryScopeId"}),
    "domains": frozenset({"id", "isInitial", "isDefault", "isVerified"}),
    "organization": frozenset({"id"}),
}
_RESOURCE_NAMES: Final = {
    "applications": "Application",
    "servicePrincipals": "ServicePrincipal",
    "appRoleAssignments": "AppRoleAssignment",
    "roleAssignments": "UnifiedRoleAssignment",
    "roleDefinitions": "UnifiedRoleDefinition",
    "roleEligibilitySchedules": "UnifiedRoleEligibilitySchedule",
    "domains": "Domain",
    "organization": "Organization",
}
SUPPORTED_OPTIONS: Final = frozenset({"$select", "$filter", "$top", "$expand", "$skiptoken", "$count"})
_READ_ONLY: Final = {
    "applications": frozenset({"id", "appId", "createdDateTime", "publisherDomain", "deletedDateTime"}),
    "servicePrincipals": frozenset({"id", "deletedDateTime", "appOwnerOrganizationId", "appDisplayName"}),
}
_WRITABLE_SP: Final = frozenset(
    {"appId", "accountEnabled", "tags", "notes", "description", "appRoleAssignmentRequired", "displayName"}
)


class GraphError(Exception):
    """A Graph error response: status, code and message go into the documented envelope."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        super().__init__(f"{status} {code}: {message}")


def error_body(code: str, message: str, call: Call) -> JsonObject:
    """Graph's error envelope (FACTS.md 1.11)."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": call.date,
                "request-id": call.request_id,
                "client-request-id": call.client_request_id,
            },
        }
    }


def denied() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def not_found(object_id: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
    )


def bad_request(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


@dataclass(frozen=True)
class GraphResult:
    """A Graph response before it is put on the wire (or into a $batch response)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    """Who is calling, from the access token: app id, service principal id and granted roles."""

    app_id: str
    sp_id: str
    roles: frozenset[str]


@dataclass
class GraphRequest:
    """One Graph request as the handlers see it."""

    method: str
    path: str
    query: MultiDict[str, str]
    headers: Mapping[str, str]
    body: bytes
    call: Call
    caller: Caller
    args: dict[str, Any] = field(default_factory=dict)

    def json(self) -> JsonObject:
        try:
            doc = json.loads(self.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        if not isinstance(doc, dict):
            raise GraphError(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set and "
                "payload is of valid JSON format.",
            )
        return doc


class ObjectRef(BaseConverter):
    """``/{id}`` or ``(appId='{appId}')`` after a collection name (Graph's alternate key)."""

    regex = r"(?:/[^/()]+|\(appId='[^'/]+'\))"
    part_isolating = False

    def to_python(self, value: str) -> tuple[str, str]:
        if value.startswith("/"):
            return ("id", value[1:])
        return ("appId", value[len("(appId='") : -len("')")])

    def to_url(self, value: Any) -> str:
        kind, text = value
        return f"/{text}" if kind == "id" else f"(appId='{text}')"


def _rules() -> Map:
    r = Rule
    return Map(
        [
            r("/v1.0/applications", endpoint="applications", methods=["GET", "POST"]),
            r("/v1.0/applications<ref:ref>", endpoint="application", methods=["GET", "PATCH", "DELETE"]),
            r("/v1.0/servicePrincipals", endpoint="servicePrincipals", methods=["GET", "POST"]),
            r(
                "/v1.0/servicePrincipals<ref:ref>",
                endpoint="servicePrincipal",
                methods=["GET", "PATCH", "DELETE"],
            ),
            r(
                "/v1.0/servicePrincipals<ref:ref>/<any(appRoleAssignments,appRoleAssignedTo):nav>",
                endpoint="assignments",
                methods=["GET", "POST"],
            ),
            r(
                "/v1.0/servicePrincipals<ref:ref>/<any(appRoleAssignments,appRoleAssignedTo):nav>/<aid>",
                endpoint="assignment",
                methods=["GET", "DELETE"],
            ),
            r(
                "/v1.0/roleManagement/directory/roleAssignments",
                endpoint="roleAssignments",
                methods=["GET", "POST"],
            ),
            r(
                "/v1.0/roleManagement/directory/roleAssignments/<rid>",
                endpoint="roleAssignment",
                methods=["GET", "DELETE"],
            ),
            r("/v1.0/roleManagement/directory/roleDefinitions", endpoint="roleDefinitions", methods=["GET"]),
            r(
                "/v1.0/roleManagement/directory/roleDefinitions/<rid>",
                endpoint="roleDefinition",
                methods=["GET"],
            ),
            r(
                "/v1.0/roleManagement/directory/roleEligibilitySchedules",
                endpoint="roleEligibilitySchedules",
                methods=["GET"],
            ),
            r("/v1.0/organization", endpoint="organizations", methods=["GET"]),
            r("/v1.0/organization/<oid>", endpoint="organizationById", methods=["GET"]),
            r("/v1.0/domains", endpoint="domains", methods=["GET"]),
            r("/v1.0/domains/<did>", endpoint="domain", methods=["GET"]),
            r("/v1.0/$batch", endpoint="batch", methods=["POST"]),
        ],
        converters={"ref": ObjectRef},
        strict_slashes=False,
        merge_slashes=False,
    )


Handler = Callable[[GraphRequest], GraphResult]


class GraphService:
    """Graph v1.0 over one tenant state; ``handle`` answers one (possibly batched) request."""

    def __init__(self, state: TenantState, signer: TokenSigner) -> None:
        self.state = state
        self.signer = signer
        self.adapter = _rules().bind("graph.microsoft.com", "/")
        self.handlers: dict[str, dict[str, Handler]] = {
            "applications": {"GET": self.list_applications, "POST": self.create_application},
            "application": {
                "GET": self.get_application,
                "PATCH": self.update_application,
                "DELETE": self.delete_application,
            },
            "servicePrincipals": {"GET": self.list_service_principals, "POST": self.create_service_principal},
            "servicePrincipal": {
                "GET": self.get_service_principal,
                "PATCH": self.update_service_principal,
                "DELETE": self.delete_service_principal,
            },
            "assignments": {"GET": self.list_app_role_assignments, "POST": self.create_app_role_assignment},
            "assignment": {"GET": self.get_app_role_assignment, "DELETE": self.delete_app_role_assignment},
            "roleAssignments": {"GET": self.list_role_assignments, "POST": self.create_role_assignment},
            "roleAssignment": {"GET": self.get_role_assignment, "DELETE": self.delete_role_assignment},
            "roleDefinitions": {"GET": self.list_role_definitions},
            "roleDefinition": {"GET": self.get_role_definition},
            "roleEligibilitySchedules": {"GET": self.list_role_eligibility},
            "organizations": {"GET": self.list_organization},
            "organizationById": {"GET": self.get_organization},
            "domains": {"GET": self.list_domains},
            "domain": {"GET": self.get_domain},
        }
        self.count_batch_item: Callable[[], None] = lambda: None

    # entry point -------------------------------------------------------------------------------
    def handle(
        self,
        method: str,
        path: str,
        query: MultiDict[str, str],
        headers: Mapping[str, str],
        body: bytes,
        call: Call,
        *,
        in_batch: bool = False,
    ) -> GraphResult:
        """Route, authenticate, authorize and run one Graph request; errors become Graph errors."""
        try:
            try:
                endpoint, args = self.adapter.match(path, method)
            except NotFound:
                segment = path.split("/v1.0/", 1)[-1].split("/")[0] or path
                raise GraphError(404, "BadRequest", f"Resource not found for the segment '{segment}'.") from None
            except MethodNotAllowed:
                raise GraphError(
                    405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
                ) from None
            caller = self.authenticate(headers)
            for key in query:
                if key.startswith("$") and key not in SUPPORTED_OPTIONS:
                    raise GraphError(
                        400,
                        "Request_UnsupportedQuery" if key in ("$orderby", "$search", "$skip") else "BadRequest",
                        f"The query parameter '{key}' is not supported.",
                    )
            request = GraphRequest(method, path, query, headers, body, call, caller, dict(args))
            if endpoint == "batch":
                if in_batch:
                    raise bad_request("A $batch request cannot contain another $batch request.")
                return self.batch(request)
            with self.state.lock:
                return self.handlers[endpoint][method](request)
        except QueryError as exc:
            code = "Request_UnsupportedQuery" if exc.unsupported else "BadRequest"
            return self.error(GraphError(400, code, str(exc)), call)
        except GraphError as exc:
            return self.error(exc, call)

    def error(self, exc: GraphError, call: Call) -> GraphResult:
        return GraphResult(exc.status, error_body(exc.code, exc.message, call), dict(exc.headers))

    def authenticate(self, headers: Mapping[str, str]) -> Caller:
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            token = ""
        try:
            claims = self.signer.decode(token.strip(), audiences=GRAPH_AUDIENCES, tenant_id=self.state.tenant_id)
        except AccessTokenError as exc:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                str(exc),
                headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            ) from None
        roles = claims.get("roles") or []
        return Caller(str(claims.get("appid")), str(claims.get("oid")), frozenset(str(r) for r in roles))

    def require(self, caller: Caller, operation: str) -> None:
        """Raise 403 unless the token's roles satisfy the operation's permission sets."""
        for any_of in PERMISSIONS[operation]:
            if not caller.roles & any_of:
                raise denied()

    # shaping -----------------------------------------------------------------------------------
    def context(
        self,
        call: Call,
        entity_set: str,
        select: list[str] | None = None,
        *,
        entity: bool = False,
        expand: str | None = None,
    ) -> str:
        parts = list(select or [])
        if expand:
            parts.append(f"{expand}()")
        suffix = f"({','.join(parts)})" if parts else ""
        return f"{call.base_url}/v1.0/$metadata#{entity_set}{suffix}{'/$entity' if entity else ''}"

    def shape(self, collection: str, obj: Mapping[str, Any], select: list[str] | None) -> JsonObject:
        full = render(collection, obj)
        if collection in ("applications", "servicePrincipals") and not (select and "keyCredentials" in select):
            # "By default, this API doesn't return the public key value of the key ... unless
            # keyCredentials is specified in a $select query" (application-get.md).
            for cred in full.get("keyCredentials") or []:
                cred["key"] = None
        if select:
            return {name: full.get(name) for name in select}
        return full

    def select(self, request: GraphRequest, collection: str) -> list[str] | None:
        text = request.query.get("$select")
        if text is None:
            return None
        known = frozenset(TEMPLATES[collection]) | {"id"}
        return parse_select(text, known, ENTITY_TYPES[collection])

    def listing(
        self,
        request: GraphRequest,
        collection: str,
        objects: Iterable[JsonObject],
        entity_set: str,
        *,
        expand: Callable[[JsonObject, JsonObject], None] | None = None,
        expand_name: str | None = None,
    ) -> GraphResult:
        """A collection response with $filter, $select, $count, $top and nextLink paging."""
        select = self.select(request, collection)
        items = list(objects)
        filter_text = request.query.get("$filter")
        if filter_text is not None:
            pred = parse_filter(filter_text, FILTERABLE.get(collection, frozenset()), _RESOURCE_NAMES[collection])
            items = [obj for obj in items if pred(render(collection, obj))]
        top = parse_top(request.query.get("$top"))
        token = request.query.get("$skiptoken")
        offset = decode_skiptoken(token) if token is not None else 0
        page = items[offset : offset + top]
        values = []
        for obj in page:
            shaped = self.shape(collection, obj, select)
            if expand is not None:
                expand(obj, shaped)
            values.append(shaped)
        body: JsonObject = {"@odata.context": self.context(request.call, entity_set, select, expand=expand_name)}
        if request.query.get("$count", "").lower() == "true" and token is None:
            body["@odata.count"] = len(items)
        if offset + top < len(items):
            params = [(k, v) for k, v in request.query.items(multi=True) if k != "$skiptoken"]
            params.append(("$skiptoken", encode_skiptoken(offset + top)))
            body["@odata.nextLink"] = (
                f"{request.call.base_url}{request.path}?{urlencode(params, quote_via=quote, safe='$,()')}"
            )
        body["value"] = values
        return GraphResult(200, body)

    def single(self, request: GraphRequest, collection: str, obj: JsonObject, entity_set: str) -> GraphResult:
        select = self.select(request, collection)
        body = {"@odata.context": self.context(request.call, entity_set, select, entity=True)}
        body.update(self.shape(collection, obj, select))
        return GraphResult(200, body)

    def no_expand(self, request: GraphRequest, collection: str) -> None:
        expand = request.query.get("$expand")
        if expand is not None:
            raise QueryError(
                "Parsing OData Select and Expand failed: Could not find a property named "
                f"'{expand.split(',')[0].strip()}' on type '{ENTITY_TYPES[collection]}'."
            )

    # applications --------------------------------------------------------------------------------
    def find_application(self, request: GraphRequest) -> JsonObject:
        kind, value = request.args["ref"]
        app = self.state.application(app_id=value) if kind == "appId" else self.state.application(value)
        if app is None:
            raise not_found(value)
        return app

    def list_applications(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "applications.read")
        self.no_expand(request, "applications")
        return self.listing(request, "applications", self.state.data["applications"], "applications")

    def get_application(self, request: GraphRequest) -> GraphResult:
        self.no_expand(request, "applications")
        app = self._readable(request, lambda: self.find_application(request), "applications.read")
        return self.single(request, "applications", app, "applications")

    def _readable(self, request: GraphRequest, find: Callable[[], JsonObject], operation: str) -> JsonObject:
        """The object, if the caller may read it: with the permission, or because it is its own
        ("can retrieve its own application and service principal details without being granted
        any application permissions", serviceprincipal-get.md)."""
        try:
            self.require(request.caller, operation)
        except GraphError:
            try:
                obj = find()
            except GraphError:
                raise denied() from None
            if str(obj.get("appId", "")).lower() != request.caller.app_id.lower():
                raise
            return obj
        return find()

    def create_application(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "applications.write")
        body = request.json()
        self._check_properties("applications", body)
        if not isinstance(body.get("displayName"), str) or not body["displayName"]:
            raise bad_request("Property 'displayName' is required.")
        creds = body.get("keyCredentials") or []
        if isinstance(creds, list) and any(isinstance(c, dict) and c.get("keyId") for c in creds):
            raise bad_request("The property KeyId is not supported for Create Application flow.")
        app: JsonObject = {
            "id": new_guid(),
            "appId": new_guid(),
            "createdDateTime": graph_time(utcnow()),
            "publisherDomain": self.state.initial_domain,
            "displayName": body["displayName"],
        }
        for key, value in body.items():
            if key not in ("keyCredentials", "requiredResourceAccess", "displayName"):
                app[key] = value
        app["keyCredentials"] = self._key_credentials(creds, [])
        app["requiredResourceAccess"] = self._required_resource_access(body.get("requiredResourceAccess", []))
        with self.state.writing():
            self.state.data["applications"].append(app)
        result = self.shape("applications", app, None)
        result = {"@odata.context": self.context(request.call, "applications", entity=True), **result}
        return GraphResult(201, result, {"Location": f"{request.call.base_url}/v1.0/applications/{app['id']}"})

    def update_application(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "applications.write")
        app = self.find_application(request)
        body = request.json()
        self._check_properties("applications", body)
        changes = dict(body)
        if "keyCredentials" in changes:
            # PATCH replaces the whole collection ("by protocol replaces the contents of the
            # property with the new values", applications-how-to-add-certificate.md).
            changes["keyCredentials"] = self._key_credentials(changes["keyCredentials"], app["keyCredentials"])
        if "requiredResourceAccess" in changes:
            changes["requiredResourceAccess"] = self._required_resource_access(changes["requiredResourceAccess"])
        with self.state.writing():
            app.update(changes)
            sp = self.state.service_principal(app_id=app["appId"])
            if sp is not None and "signInAudience" in changes:
                sp["signInAudience"] = changes["signInAudience"]
        return GraphResult(204)

    def delete_application(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "applications.write")
        app = self.find_application(request)
        with self.state.writing():
            self.state.data["applications"].remove(app)
            sp = self.state.service_principal(app_id=app["appId"])
            if sp is not None:
                self._remove_service_principal(sp)
        return GraphResult(204)

    def _check_properties(self, collection: str, body: Mapping[str, Any]) -> None:
        known = TEMPLATES[collection]
        for key in body:
            if key.startswith("@odata."):
                continue
            if key not in known:
                raise GraphError(
                    400,
                    "BadRequest",
                    f"The property '{key}' does not exist on type '{ENTITY_TYPES[collection]}'. Make "
                    "sure to only use property names that are defined by the type or mark the type "
                    "as open type.",
                )
            if key in _READ_ONLY.get(collection, frozenset()):
                raise bad_request(f"Property '{key}' is read-only and cannot be set.")
        if collection == "applications" and "passwordCredentials" in body:
            # UNCONFIRMED wording; application-update.md: use addPassword / removePassword.
            raise bad_request("Property 'passwordCredentials' cannot be set with this request; use addPassword.")

    def _key_credentials(self, raw: object, existing: list[JsonObject]) -> list[JsonObject]:
        """The new keyCredentials collection. UNCONFIRMED (FACTS.md 9.1), chosen here: an entry
        with ``key: null`` and the keyId of an existing credential keeps that credential."""
        if not isinstance(raw, list):
            raise bad_request("Property 'keyCredentials' must be a collection.")
        by_id = {str(c.get("keyId", "")).lower(): c for c in existing}
        out: list[JsonObject] = []
        for entry in raw:
            if not isinstance(entry, dict):
                raise bad_request("Invalid keyCredential: expected an object.")
            usage = entry.get("usage", "Verify")
            if usage not in ("Sign", "Verify"):
                raise bad_request(
                    'The value for the property "usage" in one of your credentials is invalid. '
                    "Acceptable values are Sign, Verify."
                )
            kind = entry.get("type", "AsymmetricX509Cert")
            if kind not in ("AsymmetricX509Cert", "X509CertAndPassword", "Symmetric"):
                raise bad_request(
                    'The value for the property "type" in one of your credentials is invalid. '
                    "Acceptable values are AsymmetricX509Cert, Symmetric."
                )
            key_id = entry.get("keyId")
            if key_id is not None and not is_guid(key_id):
                raise bad_request(f"Invalid value '{key_id}' for property 'keyId': not a GUID.")
            old = by_id.get(str(key_id).lower()) if key_id else None
            key = entry.get("key")
            if key is None:
                if old is None:
                    raise bad_request("Invalid certificate: Key value is invalid certificate")
                out.append(dict(old))
                continue
            try:
                facts = certificate_facts(str(key))
            except ValueError:
                raise bad_request("Invalid certificate: Key value is invalid certificate") from None
            if old is not None and old.get("key") == key:
                kept = dict(old)
                kept.update({k: v for k, v in entry.items() if v is not None})
                out.append(kept)
                continue
            new_id = str(key_id or new_guid())
            overrides = {
                k: v
                for k, v in entry.items()
                if v is not None and k in ("displayName", "startDateTime", "endDateTime", "customKeyIdentifier")
            }
            cred = key_credential_for(facts.der, key_id=new_id, type=kind, usage=usage, **overrides)
            self.state.mark_new(new_id)
            out.append(cred)
        ids = [str(c["keyId"]).lower() for c in out]
        if len(set(ids)) != len(ids):
            raise bad_request("Duplicate keyId in keyCredentials.")
        return out

    def _required_resource_access(self, raw: object) -> list[JsonObject]:
        if not isinstance(raw, list):
            raise bad_request("Property 'requiredResourceAccess' must be a collection.")
        out: list[JsonObject] = []
        for item in raw:
            if not isinstance(item, dict) or not is_guid(item.get("resourceAppId")):
                raise bad_request("Invalid requiredResourceAccess: 'resourceAppId' must be a GUID.")
            access = item.get("resourceAccess")
            if not isinstance(access, list) or not all(
                isinstance(a, dict) and is_guid(a.get("id")) and a.get("type") in ("Role", "Scope") for a in access
            ):
                raise bad_request(
                    "Invalid requiredResourceAccess: each resourceAccess needs an 'id' GUID and 'type' Role or Scope."
                )
            out.append(
                {
                    "resourceAppId": item["resourceAppId"],
                    "resourceAccess": [{"id": a["id"], "type": a["type"]} for a in access],
                }
            )
        return out

    # service principals --------------------------------------------------------------------------
    def find_service_principal(self, request: GraphRequest) -> JsonObject:
        kind, value = request.args["ref"]
        sp = self.state.service_principal(app_id=value) if kind == "appId" else self.state.service_principal(value)
        if sp is None:
            raise not_found(value)
        return sp

    def list_service_principals(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "servicePrincipals.read")
        self.no_expand(request, "servicePrincipals")
        return self.listing(request, "servicePrincipals", self.state.data["servicePrincipals"], "servicePrincipals")

    def get_service_principal(self, request: GraphRequest) -> GraphResult:
        self.no_expand(request, "servicePrincipals")
        sp = self._readable(request, lambda: self.find_service_principal(request), "servicePrincipals.read")
        return self.single(request, "servicePrincipals", sp, "servicePrincipals")

    def create_service_principal(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "servicePrincipals.write")
        body = request.json()
        for key in body:
            if key not in _WRITABLE_SP and not key.startswith("@odata."):
                self._check_properties("servicePrincipals", {key: None})
                raise bad_request(f"Property '{key}' cannot be set when creating a service principal.")
        app_id = body.get("appId")
        if not is_guid(app_id):
            raise bad_request("Property 'appId' is required and must be a GUID.")
        if self.state.service_principal(app_id=str(app_id)) is not None:
            # UNCONFIRMED status and wording.
            raise GraphError(
                409,
                "Request_MultipleObjectsWithSameKeyValue",
                "Another object with the same value for property servicePrincipalNames already exists.",
            )
        app = self.state.application(app_id=str(app_id))
        if app is None:
            # UNCONFIRMED wording.
            raise bad_request(
                f"The appId '{app_id}' of the service principal does not reference a valid application object."
            )
        sp: JsonObject = {
            "id": new_guid(),
            "appId": app["appId"],
            "displayName": app.get("displayName"),
            "appDisplayName": app.get("displayName"),
            "appOwnerOrganizationId": self.state.tenant_id,
            "signInAudience": app.get("signInAudience", "AzureADMyOrg"),
            "servicePrincipalNames": [app["appId"], *app.get("identifierUris", [])],
            "appRoles": [dict(r) for r in app.get("appRoles", [])],
        }
        sp.update({k: v for k, v in body.items() if k != "appId" and not k.startswith("@odata.")})
        with self.state.writing():
            self.state.data["servicePrincipals"].append(sp)
        body_out = {
            "@odata.context": self.context(request.call, "servicePrincipals", entity=True),
            **self.shape("servicePrincipals", sp, None),
        }
        return GraphResult(201, body_out)

    def update_service_principal(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "servicePrincipals.write")
        sp = self.find_service_principal(request)
        body = request.json()
        for key in body:
            if key not in _WRITABLE_SP - {"appId"} and not key.startswith("@odata."):
                self._check_properties("servicePrincipals", {key: None})
                raise bad_request(f"Property '{key}' cannot be changed by the sandbox.")
        if "accountEnabled" in body and not isinstance(body["accountEnabled"], bool):
            raise bad_request("Property 'accountEnabled' must be true or false.")
        with self.state.writing():
            sp.update({k: v for k, v in body.items() if not k.startswith("@odata.")})
        return GraphResult(204)

    def delete_service_principal(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "servicePrincipals.write")
        sp = self.find_service_principal(request)
        with self.state.writing():
            self._remove_service_principal(sp)
        return GraphResult(204)

    def _remove_service_principal(self, sp: JsonObject) -> None:
        sp_id = sp["id"].lower()
        data = self.state.data
        data["servicePrincipals"].remove(sp)
        data["appRoleAssignments"] = [
            a
            for a in data["appRoleAssignments"]
            if a["principalId"].lower() != sp_id and a["resourceId"].lower() != sp_id
        ]
        for name in ("roleAssignments", "roleEligibilitySchedules"):
            data[name] = [a for a in data[name] if a["principalId"].lower() != sp_id]

    # app role assignments ------------------------------------------------------------------------
    def _assignments_of(self, sp: JsonObject, nav: str) -> list[JsonObject]:
        key = "principalId" if nav == "appRoleAssignments" else "resourceId"
        return [a for a in self.state.data["appRoleAssignments"] if a[key].lower() == sp["id"].lower()]

    def list_app_role_assignments(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "appRoleAssignments.read")
        self.no_expand(request, "appRoleAssignments")
        sp = self.find_service_principal(request)
        nav = request.args["nav"]
        return self.listing(
            request,
            "appRoleAssignments",
            self._assignments_of(sp, nav),
            f"servicePrincipals('{sp['id']}')/{nav}",
        )

    def get_app_role_assignment(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "appRoleAssignments.read")
        sp = self.find_service_principal(request)
        nav = request.args["nav"]
        found = next((a for a in self._assignments_of(sp, nav) if a["id"] == request.args["aid"]), None)
        if found is None:
            raise not_found(request.args["aid"])
        return self.single(request, "appRoleAssignments", found, f"servicePrincipals('{sp['id']}')/{nav}")

    def create_app_role_assignment(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "appRoleAssignments.write")
        sp = self.find_service_principal(request)
        nav = request.args["nav"]
        body = request.json()
        for key in ("principalId", "resourceId", "appRoleId"):
            if not is_guid(body.get(key)):
                raise bad_request(f"Property '{key}' is required and must be a GUID.")
        anchor = "principalId" if nav == "appRoleAssignments" else "resourceId"
        if str(body[anchor]).lower() != sp["id"].lower():
            raise bad_request(f"Property '{anchor}' must be the id of the service principal in the URL.")
        principal = self.state.service_principal(str(body["principalId"]))
        resource = self.state.service_principal(str(body["resourceId"]))
        if principal is None:
            raise not_found(str(body["principalId"]))
        if resource is None:
            raise not_found(str(body["resourceId"]))
        role_id = str(body["appRoleId"]).lower()
        if role_id not in {str(r.get("id")).lower() for r in resource.get("appRoles", [])}:
            # UNCONFIRMED wording.
            raise bad_request(f"Permission being assigned was not found on application '{resource['appId']}'.")
        for existing in self.state.data["appRoleAssignments"]:
            if (
                existing["principalId"].lower() == principal["id"].lower()
                and existing["resourceId"].lower() == resource["id"].lower()
                and existing["appRoleId"].lower() == role_id
            ):
                # UNCONFIRMED (FACTS.md 9.4): status and wording of a duplicate grant.
                raise bad_request("Permission being assigned already exists on the object")
        assignment: JsonObject = {
            "id": assignment_id(),
            "appRoleId": body["appRoleId"],
            "createdDateTime": graph_time(utcnow()),
            "principalDisplayName": principal.get("displayName"),
            "principalId": principal["id"],
            "principalType": "ServicePrincipal",
            "resourceDisplayName": resource.get("displayName"),
            "resourceId": resource["id"],
        }
        with self.state.writing():
            self.state.data["appRoleAssignments"].append(assignment)
            self.state.mark_new(assignment["id"])
        body_out = {
            "@odata.context": self.context(request.call, f"servicePrincipals('{sp['id']}')/{nav}", entity=True),
            **render("appRoleAssignments", assignment),
        }
        return GraphResult(201, body_out)

    def delete_app_role_assignment(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "appRoleAssignments.write")
        sp = self.find_service_principal(request)
        found = next((a for a in self._assignments_of(sp, request.args["nav"]) if a["id"] == request.args["aid"]), None)
        if found is None:
            raise not_found(request.args["aid"])
        with self.state.writing():
            self.state.data["appRoleAssignments"].remove(found)
        return GraphResult(204)

    # directory roles -----------------------------------------------------------------------------
    def _expand_role_definition(
        self, request: GraphRequest, graph_type: str = "unifiedRoleAssignment"
    ) -> Callable[[JsonObject, JsonObject], None] | None:
        """roleDefinition and principal: relationships of role assignments and of role schedules alike."""
        expand = request.query.get("$expand")
        if expand is None:
            return None
        names = [e.strip() for e in expand.split(",") if e.strip()]
        for name in names:
            if name not in ("roleDefinition", "principal"):
                raise QueryError(
                    "Parsing OData Select and Expand failed: Could not find a property named "
                    f"'{name}' on type 'microsoft.graph.{graph_type}'."
                )

        def expander(obj: JsonObject, shaped: JsonObject) -> None:
            if "roleDefinition" in names:
                definition = self.state.role_definition(obj["roleDefinitionId"])
                shaped["roleDefinition"] = render("roleDefinitions", definition) if definition else None
            if "principal" in names:
                sp = self.state.service_principal(obj["principalId"])
                shaped["principal"] = (
                    {"@odata.type": "#microsoft.graph.servicePrincipal", **self.shape("servicePrincipals", sp, None)}
                    if sp
                    else None
                )

        return expander

    def list_role_assignments(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "roleAssignments.read")
        expander = self._expand_role_definition(request)
        return self.listing(
            request,
            "roleAssignments",
            self.state.data["roleAssignments"],
            "roleManagement/directory/roleAssignments",
            expand=expander,
            expand_name=request.query.get("$expand"),
        )

    def _role_assignment(self, rid: str) -> JsonObject:
        found = next((a for a in self.state.data["roleAssignments"] if a["id"] == rid), None)
        if found is None:
            raise not_found(rid)
        return found

    def get_role_assignment(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "roleAssignments.read")
        found = self._role_assignment(request.args["rid"])
        expander = self._expand_role_definition(request)
        result = self.single(request, "roleAssignments", found, "roleManagement/directory/roleAssignments")
        if expander is not None:
            expander(found, result.body)
        return result

    def create_role_assignment(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "roleAssignments.write")
        body = request.json()
        for key in ("roleDefinitionId", "principalId"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise bad_request(f"Property '{key}' is required.")
        scope = body.get("directoryScopeId")
        if scope is None and body.get("appScopeId") is None:
            raise bad_request("Either directoryScopeId or appScopeId must be specified.")
        if scope is not None and (not isinstance(scope, str) or not scope.startswith("/")):
            raise bad_request("Property 'directoryScopeId' must be '/' or a scope path.")
        definition = self.state.role_definition(body["roleDefinitionId"])
        if definition is None:
            raise not_found(body["roleDefinitionId"])
        principal = self.state.service_principal(body["principalId"])
        if principal is None:
            raise not_found(body["principalId"])
        for existing in self.state.data["roleAssignments"]:
            if (
                existing["principalId"].lower() == principal["id"].lower()
                and existing["roleDefinitionId"].lower() == definition["id"].lower()
                and existing.get("directoryScopeId") == scope
            ):
                # UNCONFIRMED status and wording.
                raise GraphError(
                    409,
                    "Request_MultipleObjectsWithSameKeyValue",
                    "A conflicting object with one or more of the specified property values is "
                    "present in the directory.",
                )
        assignment: JsonObject = {
            "id": assignment_id() + "-1",
            "principalId": principal["id"],
            "roleDefinitionId": definition["id"],
            "directoryScopeId": scope,
            "appScopeId": body.get("appScopeId"),
        }
        with self.state.writing():
            self.state.data["roleAssignments"].append(assignment)
            self.state.mark_new(assignment["id"])
        body_out = {
            "@odata.context": self.context(request.call, "roleManagement/directory/roleAssignments", entity=True),
            **render("roleAssignments", assignment),
        }
        return GraphResult(201, body_out)

    def delete_role_assignment(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "roleAssignments.write")
        found = self._role_assignment(request.args["rid"])
        with self.state.writing():
            self.state.data["roleAssignments"].remove(found)
        return GraphResult(204)

    def list_role_definitions(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "roleDefinitions.read")
        self.no_expand(request, "roleDefinitions")
        return self.listing(
            request,
            "roleDefinitions",
            self.state.data["roleDefinitions"],
            "roleManagement/directory/roleDefinitions",
        )

    def get_role_definition(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "roleDefinitions.read")
        definition = self.state.role_definition(request.args["rid"])
        if definition is None:
            raise not_found(request.args["rid"])
        return self.single(request, "roleDefinitions", definition, "roleManagement/directory/roleDefinitions")

    def list_role_eligibility(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "roleEligibility.read")
        # unifiedRoleScheduleBase has the same roleDefinition/principal relationships as an assignment.
        expander = self._expand_role_definition(request, "unifiedRoleEligibilitySchedule")
        return self.listing(
            request,
            "roleEligibilitySchedules",
            self.state.data["roleEligibilitySchedules"],
            "roleManagement/directory/roleEligibilitySchedules",
            expand=expander,
            expand_name=request.query.get("$expand"),
        )

    # organization and domains --------------------------------------------------------------------
    def list_organization(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "organization.read")
        return self.listing(request, "organization", self.state.data["organization"], "organization")

    def get_organization(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "organization.read")
        if request.args["oid"].lower() != self.state.tenant_id.lower():
            raise not_found(request.args["oid"])
        return self.single(request, "organization", self.state.organization, "organization")

    def list_domains(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "domains.read")
        return self.listing(request, "domains", self.state.data["domains"], "domains")

    def get_domain(self, request: GraphRequest) -> GraphResult:
        self.require(request.caller, "domains.read")
        wanted = request.args["did"].lower()
        found = next((d for d in self.state.data["domains"] if str(d["id"]).lower() == wanted), None)
        if found is None:
            raise not_found(request.args["did"])
        return self.single(request, "domains", found, "domains")

    # $batch -------------------------------------------------------------------------------------
    def batch(self, request: GraphRequest) -> GraphResult:
        """JSON batching (concepts/json-batching.md): up to 20 requests, dependsOn, 424."""
        doc = request.json()
        items = doc.get("requests")
        if not isinstance(items, list) or not items:
            raise bad_request("Invalid batch payload: 'requests' must be a non-empty array.", "BadRequest")
        if len(items) > MAX_BATCH:
            raise bad_request(f"The batch contains {len(items)} requests; the limit is {MAX_BATCH}.", "BadRequest")
        by_id: dict[str, JsonObject] = {}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
                raise bad_request("Invalid batch payload: every request needs an 'id' string.", "BadRequest")
            if not isinstance(item.get("method"), str) or not isinstance(item.get("url"), str):
                raise bad_request(
                    f"Invalid batch payload: request '{item['id']}' needs 'method' and 'url'.", "BadRequest"
                )
            key = item["id"].lower()
            if key in by_id:
                raise bad_request(f"Batch request ids must be unique; '{item['id']}' repeats.", "BadRequest")
            by_id[key] = item
        for item in items:
            deps = item.get("dependsOn", [])
            if not isinstance(deps, list) or not all(isinstance(d, str) and d.lower() in by_id for d in deps):
                raise bad_request(
                    f"Invalid batch payload: dependsOn of request '{item['id']}' names an unknown id.",
                    "BadRequest",
                )
        results: dict[str, GraphResult] = {}
        visiting: set[str] = set()

        def run(item: JsonObject) -> GraphResult:
            key = item["id"].lower()
            if key in results:
                return results[key]
            if key in visiting:
                raise bad_request("Invalid batch payload: dependsOn forms a cycle.", "BadRequest")
            visiting.add(key)
            failed = [d for d in item.get("dependsOn", []) if run(by_id[d.lower()]).status >= 400]
            if failed:
                result = self.error(
                    GraphError(424, "FailedDependency", f"Dependent request '{failed[0]}' failed."),
                    request.call,
                )
            else:
                result = self._batch_item(item, request)
            results[key] = result
            return result

        responses = []
        for item in items:
            result = run(item)
            entry: JsonObject = {"id": item["id"], "status": result.status}
            headers = dict(result.headers)
            if result.body is not None:
                headers.setdefault("Content-Type", "application/json")
                entry["body"] = result.body
            entry["headers"] = headers
            responses.append(entry)
        return GraphResult(200, {"responses": responses})

    def _batch_item(self, item: JsonObject, outer: GraphRequest) -> GraphResult:
        self.count_batch_item()
        url = item["url"]
        if urlsplit(url).scheme:
            return self.error(
                bad_request("Invalid request URL: batch URLs must be relative.", "BadRequest"), outer.call
            )
        url = url.lstrip("/")
        if url.lower().startswith("v1.0/"):
            url = url[len("v1.0/") :]
        path, _, query_text = url.partition("?")
        query: MultiDict[str, str] = MultiDict(parse_qsl(query_text, keep_blank_values=True))
        headers = {k: str(v) for k, v in (item.get("headers") or {}).items()}
        auth = outer.headers.get("Authorization") or outer.headers.get("authorization")
        if auth:
            headers["Authorization"] = auth
        body_value = item.get("body")
        if body_value is None:
            body = b""
        elif not any(k.lower() == "content-type" for k in headers):
            return self.error(
                bad_request("Content-Type header must be specified for a request with a body.", "BadRequest"),
                outer.call,
            )
        elif isinstance(body_value, str):
            try:
                body = base64.b64decode(body_value, validate=True)
            except binascii.Error:
                body = body_value.encode("utf-8")
        else:
            body = json.dumps(body_value).encode("utf-8")
        return self.handle(item["method"].upper(), f"/v1.0/{path}", query, headers, body, outer.call, in_batch=True)
