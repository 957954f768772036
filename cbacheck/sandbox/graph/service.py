"""Graph v1.0 of the sandbox: routing, authorization and OData shaping around the tenant's operations.

``handle`` takes method, path, query, headers and body rather than a werkzeug Request because
``$batch`` runs its items through the same entry point without an HTTP request of their own.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Mapping
from typing import Final

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import MethodNotAllowed, NotFound

from cbacheck.sandbox.entra.signer import TokenSigner
from cbacheck.sandbox.faults import SandboxFault
from cbacheck.sandbox.graph import batch
from cbacheck.sandbox.graph.errors import GraphFault
from cbacheck.sandbox.graph.permissions import authenticate, graph_audiences, readable, require
from cbacheck.sandbox.graph.routes import graph_routes
from cbacheck.sandbox.graph.shaping import (
    Expander,
    GraphRequest,
    GraphResult,
    created,
    listing,
    no_expand,
    shape,
    single,
)
from cbacheck.sandbox.odata import QueryError
from cbacheck.sandbox.response import Call
from cbacheck.sandbox.schema import render
from cbacheck.sandbox.state import TenantState
from cbacheck.sandbox.values import JsonObject

log = logging.getLogger("cbacheck.sandbox")

SUPPORTED_OPTIONS: Final = frozenset({"$select", "$filter", "$top", "$expand", "$skiptoken", "$count"})
# Not implemented by the sandbox, though Graph knows them (UNCONFIRMED: the code Graph answers).
_NOT_IMPLEMENTED: Final = frozenset({"$orderby", "$search", "$skip"})

Handler = Callable[[GraphRequest], GraphResult]
_KEY_FILTER: Final = re.compile(r"^\s*(appId|id)\s+eq\s+'([^']*)'\s*$")


class GraphService:
    """Graph v1.0 over one tenant state; ``handle`` answers one (possibly batched) request."""

    def __init__(self, state: TenantState, signer: TokenSigner) -> None:
        self.state = state
        self.signer = signer
        self.adapter = graph_routes().bind("graph.microsoft.com", "/")
        self.handlers: dict[str, dict[str, Handler]] = {
            "applications": {"GET": self.list_applications, "POST": self.create_application},
            "application": {
                "GET": self.get_application,
                "PATCH": self.update_application,
                "DELETE": self.delete_application,
            },
            "applicationRelation": {"GET": self.list_application_relation},
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
            "signInActivities": {"GET": self.list_sign_in_activities},
            "appManagementPolicy": {"GET": self.get_app_management_policy},
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
            endpoint, args = self._route(path, method)
            caller = authenticate(self.signer, self.state.tenant_id, headers, graph_audiences(self.state.cloud))
            _check_options(query)
            request = GraphRequest(method, path, query, headers, body, call, caller, dict(args))
            if endpoint == "batch":
                if in_batch:
                    raise GraphFault("nested_batch")
                return batch.run(self, request)
            with self.state.lock:
                return self.handlers[endpoint][method](request)
        except QueryError as exc:
            fault = GraphFault("query_unsupported" if exc.unsupported else "query_invalid", message=exc)
            return GraphResult.error(fault, call)
        except SandboxFault as exc:
            return GraphResult.error(GraphFault.of(exc), call)
        except GraphFault as exc:
            return GraphResult.error(exc, call)

    def _route(self, path: str, method: str) -> tuple[str, Mapping[str, object]]:
        try:
            endpoint, args = self.adapter.match(path, method)
        except NotFound:
            segment = path.split("/v1.0/", 1)[-1].split("/")[0] or path
            known = [rule.rule for rule in self.adapter.map.iter_rules()]
            log.debug(
                "sandbox: no Graph route %s %s; nearest: %s", method, path, difflib.get_close_matches(path, known)
            )
            raise GraphFault("no_segment", segment=segment) from None
        except MethodNotAllowed:
            raise GraphFault("method_not_allowed") from None
        return str(endpoint), args

    def _candidates(self, request: GraphRequest, collection: str) -> list[JsonObject]:
        """The objects a filter can match: through the state's index for `appId eq '...'` or `id eq '...'` (the
        filter still runs on them, so the answer is the same), so a large tenant is not rendered per query."""
        match = _KEY_FILTER.match(request.query.get("$filter", ""))
        if match is None:
            return self.state.data[collection]
        key, value = match.group(1), match.group(2)
        find = self.state.application if collection == "applications" else self.state.service_principal
        found = find(app_id=value) if key == "appId" else find(value)
        return [found] if found is not None else []

    # applications --------------------------------------------------------------------------------
    def _application(self, request: GraphRequest) -> JsonObject:
        kind, value = request.args["ref"]
        return self.state.find_application(app_id=value) if kind == "appId" else self.state.find_application(value)

    def list_applications(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "applications.read")
        no_expand(request, "applications")
        return listing(request, "applications", self._candidates(request, "applications"), "applications")

    def get_application(self, request: GraphRequest) -> GraphResult:
        no_expand(request, "applications")
        app = readable(request.caller, "applications.read", lambda: self._application(request))
        return single(request, "applications", app, "applications")

    def create_application(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "applications.write")
        app = self.state.create_application(request.json())
        location = {"Location": f"{request.call.base_url}/v1.0/applications/{app['id']}"}
        return created(request.call, "applications", "applications", app, location)

    def update_application(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "applications.write")
        self.state.update_application(self._application(request), request.json())
        return GraphResult(204)

    def delete_application(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "applications.write")
        self.state.delete_application(self._application(request))
        return GraphResult(204)

    def list_application_relation(self, request: GraphRequest) -> GraphResult:
        """GET /applications/{id}/owners (https://learn.microsoft.com/graph/api/application-list-owners) or
        /federatedIdentityCredentials (https://learn.microsoft.com/graph/api/application-list-federatedidentitycredentials).
        The sandbox answers every item in one page and ignores $select (docs/sandbox.md)."""
        require(request.caller, "applications.read")
        app, relation = self._application(request), str(request.args["relation"])
        items = self.state.relations[relation].get(str(app["id"]).lower(), [])
        entity = "directoryObjects" if relation == "owners" else f"applications('{app['id']}')/{relation}"
        context = f"{request.call.base_url}/v1.0/$metadata#{entity}"
        return GraphResult(200, {"@odata.context": context, "value": [dict(item) for item in items]})

    # service principals --------------------------------------------------------------------------
    def _service_principal(self, request: GraphRequest) -> JsonObject:
        kind, value = request.args["ref"]
        if kind == "appId":
            return self.state.find_service_principal(app_id=value)
        return self.state.find_service_principal(value)

    def list_service_principals(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "servicePrincipals.read")
        no_expand(request, "servicePrincipals")
        candidates = self._candidates(request, "servicePrincipals")
        return listing(request, "servicePrincipals", candidates, "servicePrincipals")

    def get_service_principal(self, request: GraphRequest) -> GraphResult:
        no_expand(request, "servicePrincipals")
        sp = readable(request.caller, "servicePrincipals.read", lambda: self._service_principal(request))
        return single(request, "servicePrincipals", sp, "servicePrincipals")

    def create_service_principal(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "servicePrincipals.write")
        sp = self.state.create_service_principal(request.json())
        return created(request.call, "servicePrincipals", "servicePrincipals", sp)

    def update_service_principal(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "servicePrincipals.write")
        self.state.update_service_principal(self._service_principal(request), request.json())
        return GraphResult(204)

    def delete_service_principal(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "servicePrincipals.write")
        self.state.delete_service_principal(self._service_principal(request))
        return GraphResult(204)

    # app role assignments ------------------------------------------------------------------------
    def list_app_role_assignments(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "appRoleAssignments.read")
        no_expand(request, "appRoleAssignments")
        sp, nav = self._service_principal(request), request.args["nav"]
        objects = self.state.app_role_assignments(sp, nav)
        return listing(request, "appRoleAssignments", objects, f"servicePrincipals('{sp['id']}')/{nav}")

    def get_app_role_assignment(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "appRoleAssignments.read")
        sp, nav = self._service_principal(request), request.args["nav"]
        found = self.state.find_app_role_assignment(sp, nav, request.args["aid"])
        return single(request, "appRoleAssignments", found, f"servicePrincipals('{sp['id']}')/{nav}")

    def create_app_role_assignment(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "appRoleAssignments.write")
        sp, nav = self._service_principal(request), request.args["nav"]
        assignment = self.state.grant_app_role(sp, nav, request.json())
        return created(request.call, f"servicePrincipals('{sp['id']}')/{nav}", "appRoleAssignments", assignment)

    def delete_app_role_assignment(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "appRoleAssignments.write")
        sp, nav = self._service_principal(request), request.args["nav"]
        self.state.revoke_app_role(self.state.find_app_role_assignment(sp, nav, request.args["aid"]))
        return GraphResult(204)

    # directory roles -----------------------------------------------------------------------------
    def _role_expander(self, request: GraphRequest, graph_type: str = "unifiedRoleAssignment") -> Expander | None:
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
                    {"@odata.type": "#microsoft.graph.servicePrincipal", **shape("servicePrincipals", sp, None)}
                    if sp
                    else None
                )

        return expander

    def list_role_assignments(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "roleAssignments.read")
        expander = self._role_expander(request)
        objects = self.state.data["roleAssignments"]
        return listing(request, "roleAssignments", objects, "roleManagement/directory/roleAssignments", expand=expander)

    def get_role_assignment(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "roleAssignments.read")
        found = self.state.find_role_assignment(request.args["rid"])
        expander = self._role_expander(request)
        result = single(request, "roleAssignments", found, "roleManagement/directory/roleAssignments")
        if expander is not None:
            expander(found, result.body)
        return result

    def create_role_assignment(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "roleAssignments.write")
        assignment = self.state.assign_directory_role(request.json())
        return created(request.call, "roleManagement/directory/roleAssignments", "roleAssignments", assignment)

    def delete_role_assignment(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "roleAssignments.write")
        self.state.remove_role_assignment(self.state.find_role_assignment(request.args["rid"]))
        return GraphResult(204)

    def list_role_definitions(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "roleDefinitions.read")
        no_expand(request, "roleDefinitions")
        objects = self.state.data["roleDefinitions"]
        return listing(request, "roleDefinitions", objects, "roleManagement/directory/roleDefinitions")

    def get_role_definition(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "roleDefinitions.read")
        definition = self.state.find_role_definition(request.args["rid"])
        return single(request, "roleDefinitions", definition, "roleManagement/directory/roleDefinitions")

    def list_role_eligibility(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "roleEligibility.read")
        if not self.state.pim_licensed:
            raise GraphFault("pim_license_required")
        # unifiedRoleScheduleBase has the same roleDefinition/principal relationships as an assignment.
        expander = self._role_expander(request, "unifiedRoleEligibilitySchedule")
        objects = self.state.data["roleEligibilitySchedules"]
        entity_set = "roleManagement/directory/roleEligibilitySchedules"
        return listing(request, "roleEligibilitySchedules", objects, entity_set, expand=expander)

    # organization and domains --------------------------------------------------------------------
    def list_organization(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "organization.read")
        return listing(request, "organization", self.state.data["organization"], "organization")

    def get_organization(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "organization.read")
        if request.args["oid"].lower() != self.state.tenant_id.lower():
            raise GraphFault("not_found", object_id=request.args["oid"])
        return single(request, "organization", self.state.organization, "organization")

    def list_domains(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "domains.read")
        return listing(request, "domains", self.state.data["domains"], "domains")

    def get_domain(self, request: GraphRequest) -> GraphResult:
        require(request.caller, "domains.read")
        return single(request, "domains", self.state.find_domain(request.args["did"]), "domains")

    # reports and policies ----------------------------------------------------------------------
    def list_sign_in_activities(self, request: GraphRequest) -> GraphResult:
        """GET /beta/reports/servicePrincipalSignInActivities
        (https://learn.microsoft.com/graph/api/reportroot-list-serviceprincipalsigninactivities): every item in one
        page, no $filter/$top (UNCONFIRMED, docs/sandbox.md choice 34)."""
        require(request.caller, "signInActivities.read")
        context = f"{request.call.base_url}/beta/$metadata#reports/servicePrincipalSignInActivities"
        items = [dict(item) for item in self.state.sign_in_activities]
        return GraphResult(200, {"@odata.context": context, "value": items})

    def get_app_management_policy(self, request: GraphRequest) -> GraphResult:
        """GET /policies/defaultAppManagementPolicy (https://learn.microsoft.com/graph/api/tenantappmanagementpolicy-get)."""
        require(request.caller, "appManagementPolicy.read")
        context = f"{request.call.base_url}/v1.0/$metadata#policies/defaultAppManagementPolicy/$entity"
        return GraphResult(200, {"@odata.context": context, **self.state.app_management_policy})


def _check_options(query: MultiDict[str, str]) -> None:
    """Only the OData options the sandbox implements; the others are named in the 400."""
    for key in query:
        if key.startswith("$") and key not in SUPPORTED_OPTIONS:
            raise GraphFault("unsupported_option" if key in _NOT_IMPLEMENTED else "unknown_option", option=key)
