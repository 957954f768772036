"""The live tenant of the sandbox and its operations (the model, apart from HTTP, as moto keeps it).

Every rule of a write lives here: what a new object gets, what counts as a duplicate, what is
removed with what. Refusals raise SandboxFault subclasses; graph/errors.py turns them into Graph's
error envelope.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cbacheck.sandbox import payloads
from cbacheck.sandbox.faults import Conflict, InvalidRequest, ObjectNotFound
from cbacheck.sandbox.schema import (
    APP_MANAGEMENT_POLICY,
    COLLECTIONS,
    COMPLIANCE,
    DEFAULT_APP_MANAGEMENT_POLICY,
    EXCHANGE_COLLECTIONS,
    RELATIONS,
    SIGN_IN_ACTIVITIES,
)
from cbacheck.sandbox.values import (
    JsonObject,
    assignment_id,
    graph_time,
    is_guid,
    new_guid,
    utcnow,
)

__all__ = ["JsonObject", "TenantState", "utcnow"]

# Service plans that license PIM: Microsoft Entra ID P2 (AAD_PREMIUM_P2) and Microsoft Entra ID
# Governance (Entra_Identity_Governance), by servicePlanId
# (https://learn.microsoft.com/entra/identity/users/licensing-service-plan-reference); PIM needs one
# ("Licensing" in https://learn.microsoft.com/graph/api/resources/privilegedidentitymanagementv3-overview).
PIM_SERVICE_PLANS = frozenset({"eec0eb4f-6444-4f95-aba0-50c24d67f998", "e866a266-3cff-43a3-acca-0c90a7e00c8b"})


class TenantState:
    """The tenant's objects behind one lock, with indexes and the time each grant takes effect."""

    def __init__(
        self,
        data: JsonObject,
        *,
        propagation_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.RLock()
        self.data: dict[str, list[JsonObject]] = {name: data[name] for name in COLLECTIONS}
        self.builtins: dict[str, bool] = dict(data.get("builtins", {}))
        # The Microsoft cloud the tenant is in: its resource names and initial-domain suffix (docs/sandbox.md).
        self.cloud: str = str(data.get("cloud") or "global")
        exchange = data.get("exchange") or {}
        self.exchange: dict[str, list[JsonObject]] = {
            name: list(exchange.get(name, [])) for name in EXCHANGE_COLLECTIONS
        }
        compliance = data.get(COMPLIANCE) or {}
        self.compliance: dict[str, list[JsonObject]] = {
            name: list(compliance.get(name, [])) for name in EXCHANGE_COLLECTIONS
        }
        self.relations: dict[str, dict[str, list[JsonObject]]] = {
            name: {k.lower(): list(v) for k, v in (data.get(name) or {}).items()} for name in RELATIONS
        }
        self.sign_in_activities: list[JsonObject] = list(data.get(SIGN_IN_ACTIVITIES) or [])
        self.app_management_policy: JsonObject = dict(data.get(APP_MANAGEMENT_POLICY) or DEFAULT_APP_MANAGEMENT_POLICY)
        self.propagation_s = propagation_s
        self.clock = clock
        # Object id (or keyId) -> wall-clock time from which token issuance sees it. Objects
        # loaded from the document are in effect at once; the map is never part of a dump.
        self._effective_at: dict[str, float] = {}
        self._reindex()

    # indexes
    def _reindex(self) -> None:
        self._apps_by_id = {a["id"].lower(): a for a in self.data["applications"]}
        self._apps_by_app_id = {a["appId"].lower(): a for a in self.data["applications"]}
        self._sps_by_id = {s["id"].lower(): s for s in self.data["servicePrincipals"]}
        self._sps_by_app_id = {s["appId"].lower(): s for s in self.data["servicePrincipals"]}

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the lock for a change, then rebuild the indexes."""
        with self.lock:
            try:
                yield
            finally:
                self._reindex()

    # tenant identity
    @property
    def organization(self) -> JsonObject:
        return self.data["organization"][0]

    @property
    def tenant_id(self) -> str:
        return str(self.organization["id"])

    @property
    def initial_domain(self) -> str:
        return next(str(d["id"]) for d in self.data["domains"] if d.get("isInitial"))

    @property
    def display_name(self) -> str:
        return str(self.organization.get("displayName") or self.initial_domain)

    @property
    def pim_licensed(self) -> bool:
        """The organization's assignedPlans hold an enabled P2 or Governance plan, as Graph exposes licences.

        https://learn.microsoft.com/graph/api/resources/assignedplan (capabilityStatus "Enabled").
        """
        return any(
            isinstance(plan, dict)
            and str(plan.get("servicePlanId", "")).lower() in PIM_SERVICE_PLANS
            and plan.get("capabilityStatus") == "Enabled"
            for plan in self.organization.get("assignedPlans") or []
        )

    def domain_names(self) -> list[str]:
        return [str(d["id"]) for d in self.data["domains"]]

    def resolve_tenant(self, value: str) -> bool:
        """True when value names this tenant: its id or any of its domains (case-insensitive)."""
        value = value.lower()
        return value == self.tenant_id.lower() or any(value == name.lower() for name in self.domain_names())

    # lookups
    def application(self, object_id: str | None = None, *, app_id: str | None = None) -> JsonObject | None:
        if app_id is not None:
            return self._apps_by_app_id.get(app_id.lower())
        return self._apps_by_id.get((object_id or "").lower())

    def service_principal(self, object_id: str | None = None, *, app_id: str | None = None) -> JsonObject | None:
        if app_id is not None:
            return self._sps_by_app_id.get(app_id.lower())
        return self._sps_by_id.get((object_id or "").lower())

    def role_definition(self, role_id: str) -> JsonObject | None:
        role_id = role_id.lower()
        return next(
            (
                d
                for d in self.data["roleDefinitions"]
                if d["id"].lower() == role_id or str(d.get("templateId", "")).lower() == role_id
            ),
            None,
        )

    def service_principal_for_resource(self, resource: str) -> JsonObject | None:
        """The resource SP a token request names: by appId or by one of its servicePrincipalNames."""
        wanted = resource.lower().rstrip("/")
        for sp in self.data["servicePrincipals"]:
            if sp["appId"].lower() == wanted:
                return sp
            names = sp.get("servicePrincipalNames") or []
            if any(str(n).lower().rstrip("/") == wanted for n in names):
                return sp
        # Then the wildcard names (Microsoft Exchange Online Protection lists https://*.protection.outlook.com).
        for sp in self.data["servicePrincipals"]:
            if any(wildcard_name_matches(str(n), wanted) for n in sp.get("servicePrincipalNames") or []):
                return sp
        return None

    # propagation
    def mark_new(self, object_id: str) -> None:
        """Record that object_id was just created: token issuance sees it after propagation_s."""
        self._effective_at[object_id.lower()] = self.clock() + self.propagation_s

    def in_effect(self, object_id: str) -> bool:
        """True when token issuance may use the object (it has propagated)."""
        due = self._effective_at.get(object_id.lower())
        return due is None or self.clock() >= due

    # granted roles, as token issuance sees them
    def granted_app_roles(self, principal_sp: JsonObject, resource_sp: JsonObject) -> list[str]:
        """Values of the app roles of resource_sp granted to principal_sp that are in effect."""
        values = {str(r["id"]).lower(): str(r.get("value")) for r in resource_sp.get("appRoles", [])}
        out: list[str] = []
        for ara in self.data["appRoleAssignments"]:
            if (
                ara["principalId"].lower() == principal_sp["id"].lower()
                and ara["resourceId"].lower() == resource_sp["id"].lower()
                and self.in_effect(ara["id"])
            ):
                value = values.get(ara["appRoleId"].lower())
                if value and value not in out:
                    out.append(value)
        return out

    def active_directory_roles(self, principal_sp: JsonObject) -> list[str]:
        """Role template ids of active tenant-wide ("/") role assignments in effect."""
        out: list[str] = []
        for ra in self.data["roleAssignments"]:
            if (
                ra["principalId"].lower() == principal_sp["id"].lower()
                and ra.get("directoryScopeId", "/") == "/"
                and self.in_effect(ra["id"])
            ):
                definition = self.role_definition(ra["roleDefinitionId"])
                template = str(definition.get("templateId") or definition["id"]) if definition else ""
                if template and template not in out:
                    out.append(template)
        return out

    # operations: applications -------------------------------------------------------------------
    def find_application(self, object_id: str | None = None, *, app_id: str | None = None) -> JsonObject:
        """The application by object id or appId; ObjectNotFound otherwise."""
        app = self.application(object_id, app_id=app_id)
        if app is None:
            raise ObjectNotFound(str(app_id if app_id is not None else object_id))
        return app

    def create_application(self, body: Mapping[str, Any]) -> JsonObject:
        """A new application from a POST body; keyCredentials may not name a keyId on create."""
        props = payloads.settable("applications", body)
        name = payloads.display_name(props, required=True)
        creds = props.get("keyCredentials") or []
        if any(isinstance(c, dict) and c.get("keyId") for c in creds):
            raise InvalidRequest("key_id_on_create")
        app: JsonObject = {
            "id": new_guid(),
            "appId": new_guid(),
            "createdDateTime": graph_time(utcnow()),
            "publisherDomain": self.initial_domain,
        }
        app.update(props)
        app["displayName"] = name
        with self.writing():
            app["keyCredentials"] = payloads.key_credentials(creds, [], on_new_key=self.mark_new)
            app["requiredResourceAccess"] = payloads.required_resource_access(props.get("requiredResourceAccess", []))
            self.data["applications"].append(app)
        return app

    def update_application(self, app: JsonObject, body: Mapping[str, Any]) -> None:
        """PATCH: keyCredentials and requiredResourceAccess replace the whole collection.

        "by protocol replaces the contents of the property with the new values"
        (https://learn.microsoft.com/graph/applications-how-to-add-certificate).
        """
        changes = payloads.settable("applications", body)
        payloads.display_name(changes, required=False)
        with self.writing():
            if "keyCredentials" in changes:
                changes["keyCredentials"] = payloads.key_credentials(
                    changes["keyCredentials"], app["keyCredentials"], on_new_key=self.mark_new
                )
            if "requiredResourceAccess" in changes:
                changes["requiredResourceAccess"] = payloads.required_resource_access(changes["requiredResourceAccess"])
            app.update(changes)
            sp = self.service_principal(app_id=app["appId"])
            if sp is not None and "signInAudience" in changes:
                sp["signInAudience"] = changes["signInAudience"]

    def delete_application(self, app: JsonObject) -> None:
        """Remove the application and its service principal with that principal's grants and roles."""
        with self.writing():
            self.data["applications"].remove(app)
            sp = self.service_principal(app_id=app["appId"])
            if sp is not None:
                self._remove_service_principal(sp)

    # operations: service principals -------------------------------------------------------------
    def find_service_principal(self, object_id: str | None = None, *, app_id: str | None = None) -> JsonObject:
        """The service principal by object id or appId; ObjectNotFound otherwise."""
        sp = self.service_principal(object_id, app_id=app_id)
        if sp is None:
            raise ObjectNotFound(str(app_id if app_id is not None else object_id))
        return sp

    def create_service_principal(self, body: Mapping[str, Any]) -> JsonObject:
        """The service principal of an existing application (POST {"appId": ...})."""
        props = _service_principal_properties(body, payloads.WRITABLE_SP, "sp_property_not_settable")
        app_id = props.get("appId")
        if not is_guid(app_id):
            raise InvalidRequest("invalid_value", name="appId", expected="a GUID (it is required)")
        if self.service_principal(app_id=str(app_id)) is not None:
            # UNCONFIRMED status and wording (graph/errors.py row duplicate_service_principal).
            raise Conflict("duplicate_service_principal")
        app = self.application(app_id=str(app_id))
        if app is None:
            raise InvalidRequest("app_for_sp_missing", app_id=app_id)
        sp: JsonObject = {
            "id": new_guid(),
            "appId": app["appId"],
            "displayName": app.get("displayName"),
            "appDisplayName": app.get("displayName"),
            "appOwnerOrganizationId": self.tenant_id,
            "signInAudience": app.get("signInAudience", "AzureADMyOrg"),
            "servicePrincipalNames": [app["appId"], *app.get("identifierUris", [])],
            "appRoles": [dict(r) for r in app.get("appRoles", [])],
        }
        sp.update({k: v for k, v in props.items() if k != "appId"})
        with self.writing():
            self.data["servicePrincipals"].append(sp)
        return sp

    def update_service_principal(self, sp: JsonObject, body: Mapping[str, Any]) -> None:
        """PATCH the few properties the sandbox lets change (accountEnabled, tags, notes, ...)."""
        props = _service_principal_properties(body, payloads.WRITABLE_SP - {"appId"}, "sp_property_not_changeable")
        with self.writing():
            sp.update(props)

    def delete_service_principal(self, sp: JsonObject) -> None:
        with self.writing():
            self._remove_service_principal(sp)

    def _remove_service_principal(self, sp: JsonObject) -> None:
        sp_id = sp["id"].lower()
        data = self.data
        data["servicePrincipals"].remove(sp)
        data["appRoleAssignments"] = [
            a
            for a in data["appRoleAssignments"]
            if a["principalId"].lower() != sp_id and a["resourceId"].lower() != sp_id
        ]
        for name in ("roleAssignments", "roleEligibilitySchedules"):
            data[name] = [a for a in data[name] if a["principalId"].lower() != sp_id]

    # operations: app role assignments -----------------------------------------------------------
    def app_role_assignments(self, sp: JsonObject, nav: str) -> list[JsonObject]:
        """appRoleAssignments (sp is the principal) or appRoleAssignedTo (sp is the resource)."""
        key = "principalId" if nav == "appRoleAssignments" else "resourceId"
        return [a for a in self.data["appRoleAssignments"] if a[key].lower() == sp["id"].lower()]

    def find_app_role_assignment(self, sp: JsonObject, nav: str, assignment: str) -> JsonObject:
        found = next((a for a in self.app_role_assignments(sp, nav) if a["id"] == assignment), None)
        if found is None:
            raise ObjectNotFound(assignment)
        return found

    def grant_app_role(self, sp: JsonObject, nav: str, body: Mapping[str, Any]) -> JsonObject:
        """A new app role assignment; the principal or resource in the body must be sp (the URL's)."""
        for key in ("principalId", "resourceId", "appRoleId"):
            if not is_guid(body.get(key)):
                raise InvalidRequest("invalid_value", name=key, expected="a GUID (it is required)")
        anchor = "principalId" if nav == "appRoleAssignments" else "resourceId"
        if str(body[anchor]).lower() != sp["id"].lower():
            raise InvalidRequest("anchor_mismatch", name=anchor)
        principal = self.find_service_principal(str(body["principalId"]))
        resource = self.find_service_principal(str(body["resourceId"]))
        role_id = str(body["appRoleId"]).lower()
        if role_id not in {str(r.get("id")).lower() for r in resource.get("appRoles", [])}:
            raise InvalidRequest("app_role_not_found", app_id=resource["appId"])
        for existing in self.data["appRoleAssignments"]:
            if (
                existing["principalId"].lower() == principal["id"].lower()
                and existing["resourceId"].lower() == resource["id"].lower()
                and existing["appRoleId"].lower() == role_id
            ):
                raise InvalidRequest("duplicate_app_role_assignment")
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
        with self.writing():
            self.data["appRoleAssignments"].append(assignment)
            self.mark_new(assignment["id"])
        return assignment

    def revoke_app_role(self, assignment: JsonObject) -> None:
        with self.writing():
            self.data["appRoleAssignments"].remove(assignment)

    # operations: directory roles ----------------------------------------------------------------
    def find_role_assignment(self, assignment: str) -> JsonObject:
        found = next((a for a in self.data["roleAssignments"] if a["id"] == assignment), None)
        if found is None:
            raise ObjectNotFound(assignment)
        return found

    def find_role_definition(self, role_id: str) -> JsonObject:
        definition = self.role_definition(role_id)
        if definition is None:
            raise ObjectNotFound(role_id)
        return definition

    def assign_directory_role(self, body: Mapping[str, Any]) -> JsonObject:
        """A new active directory role assignment, tenant-wide ("/") or at a scope path."""
        for key in ("roleDefinitionId", "principalId"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise InvalidRequest("required_property", name=key)
        scope, app_scope = body.get("directoryScopeId"), body.get("appScopeId")
        if scope is None and app_scope is None:
            raise InvalidRequest("scope_required")
        if scope is not None and (not isinstance(scope, str) or not scope.startswith("/")):
            raise InvalidRequest("invalid_scope")
        if app_scope is not None and not isinstance(app_scope, str):
            raise InvalidRequest("invalid_value", name="appScopeId", expected="a string")
        definition = self.find_role_definition(body["roleDefinitionId"])
        principal = self.find_service_principal(body["principalId"])
        for existing in self.data["roleAssignments"]:
            if (
                existing["principalId"].lower() == principal["id"].lower()
                and existing["roleDefinitionId"].lower() == definition["id"].lower()
                and existing.get("directoryScopeId") == scope
            ):
                raise Conflict("duplicate_role_assignment")
        assignment: JsonObject = {
            "id": assignment_id() + "-1",
            "principalId": principal["id"],
            "roleDefinitionId": definition["id"],
            "directoryScopeId": scope,
            "appScopeId": app_scope,
        }
        with self.writing():
            self.data["roleAssignments"].append(assignment)
            self.mark_new(assignment["id"])
        return assignment

    def remove_role_assignment(self, assignment: JsonObject) -> None:
        with self.writing():
            self.data["roleAssignments"].remove(assignment)

    def find_domain(self, name: str) -> JsonObject:
        wanted = name.lower()
        found = next((d for d in self.data["domains"] if str(d["id"]).lower() == wanted), None)
        if found is None:
            raise ObjectNotFound(name)
        return found

    # dump
    def dump(self) -> JsonObject:
        """The current state as a state document (Graph JSON), loadable again as it is."""
        with self.lock:
            doc: JsonObject = {name: copy.deepcopy(self.data[name]) for name in COLLECTIONS}
            off = {k: v for k, v in self.builtins.items() if not v}
            if off:
                doc["builtins"] = off
            if self.cloud != "global":
                doc["cloud"] = self.cloud
            if any(self.exchange.values()):
                doc["exchange"] = copy.deepcopy(self.exchange)
            if any(self.compliance.values()):
                doc[COMPLIANCE] = copy.deepcopy(self.compliance)
            for name, related in self.relations.items():
                if related:
                    doc[name] = copy.deepcopy(related)
            if self.sign_in_activities:
                doc[SIGN_IN_ACTIVITIES] = copy.deepcopy(self.sign_in_activities)
            if self.app_management_policy != DEFAULT_APP_MANAGEMENT_POLICY:
                doc[APP_MANAGEMENT_POLICY] = copy.deepcopy(self.app_management_policy)
            return doc


def _service_principal_properties(body: Mapping[str, Any], writable: frozenset[str], refusal: str) -> JsonObject:
    """The body's properties, each a servicePrincipal property the sandbox lets this request set."""
    props = payloads.settable("servicePrincipals", body)
    for key in props:
        if key not in writable:
            raise InvalidRequest(refusal, name=key)
    if "accountEnabled" in props and not isinstance(props["accountEnabled"], bool):
        raise InvalidRequest("invalid_value", name="accountEnabled", expected="true or false")
    return props


def wildcard_name_matches(name: str, resource: str) -> bool:
    """A servicePrincipalName like https://*.protection.outlook.com names https://eur05b.ps.compliance....

    How Entra matches a wildcard name (one label or several) is UNCONFIRMED (docs/sandbox.md): here the
    "*" stands for one or more DNS labels, and the rest must match exactly.
    """
    pattern = name.lower().rstrip("/")
    if "*." not in pattern:
        return False
    head, _, tail = pattern.partition("*.")
    if not resource.startswith(head) or not resource.endswith("." + tail):
        return False
    labels = resource[len(head) : -len(tail) - 1]
    return bool(labels) and all(part.isalnum() or "-" in part for part in labels.split(".")) and "/" not in labels
