"""Validation of a state document: one function per collection, each naming the file and the element."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Final

from cbacheck import wellknown
from cbacheck.sandbox.faults import SandboxStateError
from cbacheck.sandbox.firstparty import (
    BUILTIN_FLAGS,
    builtin_eop_sp,
    builtin_exchange_sp,
    builtin_graph_sp,
    builtin_role_definitions,
    in_cloud,
)
from cbacheck.sandbox.rbac import (
    ACCESS_RIGHTS,
    APPLICATION_ROLES,
    COMPLIANCE_TABLES,
    DEFAULT_WRITE_SCOPE,
    EXCHANGE_TABLES,
    RbacTables,
    access_policy,
    application_scope_fields,
    management_scope,
)
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
    DEFAULT_ACCESS_ROLE,
    JsonObject,
    assignment_id,
    certificate_facts,
    is_guid,
    key_credential_from_facts,
    parse_time,
    stable_guid,
)

KNOWN_TOP_LEVEL: Final = (
    frozenset(COLLECTIONS)
    | {"builtins", "exchange", COMPLIANCE, "cloud", "@odata.context", SIGN_IN_ACTIVITIES, APP_MANAGEMENT_POLICY}
    | set(RELATIONS)
)
# The largest state the sandbox loads (a 10,000-application tenant is about 12 MiB) and the deepest
# nesting it accepts (Graph JSON nests a few levels; deeper input only threatens the recursion limit).
MAX_STATE_BYTES: Final = 64 * 2**20
MAX_DEPTH: Final = 32
# An organization given without assignedPlans holds these: Exchange Online (Plan 2), Entra ID P1 and
# P2 (servicePlanIds: https://learn.microsoft.com/entra/identity/users/licensing-service-plan-reference),
# so PIM answers as in a licensed tenant; a scenario lists its own plans to model another (no-p2).
DEFAULT_ASSIGNED_PLANS: Final = (
    {
        "assignedDateTime": "2021-03-01T09:00:00Z",
        "capabilityStatus": "Enabled",
        "service": "exchange",
        "servicePlanId": "efb87545-963c-4e0d-99df-69c6916d9eb0",
    },
    {
        "assignedDateTime": "2021-03-01T09:00:00Z",
        "capabilityStatus": "Enabled",
        "service": "AADPremiumService",
        "servicePlanId": "41781fb2-bc02-4b7c-bd55-b576c07bb09d",
    },
    {
        "assignedDateTime": "2021-03-01T09:00:00Z",
        "capabilityStatus": "Enabled",
        "service": "AADPremiumService",
        "servicePlanId": "eec0eb4f-6444-4f95-aba0-50c24d67f998",
    },
)
NEXT_STEP: Final = "Fix that element, or write a fresh file with 'cbacheck sandbox --dump FILE'."


class _Check:
    """Validation helpers that raise SandboxStateError naming the source and the element path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> SandboxStateError:
        return SandboxStateError(f"{self.source}: {path}: {problem}. {NEXT_STEP}")

    def obj(self, value: object, path: str) -> JsonObject:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a JSON object, found {_kind(value)}")
        return value

    def items(self, value: object, path: str) -> list[JsonObject]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a JSON array of objects, found {_kind(value)}")
        return [self.obj(item, f"{path}[{i}]") for i, item in enumerate(value)]

    def string(self, obj: JsonObject, key: str, path: str, *, required: bool = True) -> str | None:
        value = obj.get(key)
        if value is None:
            if required:
                raise self.fail(f"{path}.{key}", "missing (a string is required)")
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(f"{path}.{key}", f"expected a non-empty string, found {_kind(value)}")
        return value

    def guid(self, obj: JsonObject, key: str, path: str, *, required: bool = True) -> str | None:
        value = self.string(obj, key, path, required=required)
        if value is not None and not is_guid(value):
            raise self.fail(f"{path}.{key}", f"{value!r} is not a GUID")
        return value

    def boolean(self, obj: JsonObject, key: str, path: str) -> None:
        if key in obj and obj[key] is not None and not isinstance(obj[key], bool):
            raise self.fail(f"{path}.{key}", f"expected true or false, found {_kind(obj[key])}")

    def time(self, obj: JsonObject, key: str, path: str) -> datetime | None:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{path}.{key}", f"expected an ISO 8601 time, found {_kind(value)}")
        try:
            return parse_time(value)
        except ValueError:
            raise self.fail(f"{path}.{key}", f"{value!r} is not an ISO 8601 time") from None

    def unique(self, objs: Iterable[JsonObject], key: str, path: str) -> None:
        seen: set[str] = set()
        for i, obj in enumerate(objs):
            value = str(obj.get(key, "")).lower()
            if value in seen:
                raise self.fail(f"{path}[{i}].{key}", f"duplicate value {obj.get(key)!r}")
            seen.add(value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def validate_key_credential(check: _Check, cred: JsonObject, path: str, owner: str) -> JsonObject:
    """Check one keyCredential and fill in what Graph computes (thumbprint, window, keyId)."""
    kind = cred.get("type", "AsymmetricX509Cert")
    if kind not in ("AsymmetricX509Cert", "X509CertAndPassword", "Symmetric"):
        raise check.fail(f"{path}.type", f"{kind!r} is not one of AsymmetricX509Cert, Symmetric")
    usage = cred.get("usage", "Verify")
    if usage not in ("Verify", "Sign"):
        raise check.fail(f"{path}.usage", f"{usage!r} is not one of Sign, Verify")
    if "key" in cred and cred["key"] is None:
        return _key_without_bytes(check, cred, path, owner, kind, usage)
    key = check.string(cred, "key", path)
    assert key is not None
    if kind == "Symmetric":
        return {"type": kind, "usage": usage, **cred}
    try:
        facts = certificate_facts(key)
    except ValueError as exc:
        raise check.fail(f"{path}.key", f"{exc}; expected base64 of a DER certificate") from None
    key_id = check.guid(cred, "keyId", path, required=False) or stable_guid(owner, facts.sha1_hex)
    check.time(cred, "startDateTime", path)
    check.time(cred, "endDateTime", path)
    full = key_credential_from_facts(facts, key, key_id, {k: v for k, v in cred.items() if v is not None})
    full["type"], full["usage"], full["keyId"] = kind, usage, key_id
    return full


def _key_without_bytes(check: _Check, cred: JsonObject, path: str, owner: str, kind: str, usage: str) -> JsonObject:
    """A keyCredential with ``key: null``, as Graph returns it without $select=keyCredentials.

    https://learn.microsoft.com/graph/api/resources/keycredential. It is kept as given: shown by
    Graph and matched by its thumbprint (customKeyIdentifier), but with no certificate it can verify
    no assertion (entra/assertion.py says so in the log).
    """
    thumbprint = check.string(cred, "customKeyIdentifier", path, required=False)
    key_id = check.guid(cred, "keyId", path, required=False) or stable_guid(owner, str(thumbprint), path)
    check.time(cred, "startDateTime", path)
    check.time(cred, "endDateTime", path)
    return {**cred, "type": kind, "usage": usage, "keyId": key_id, "key": None}


def validate(doc: object, source: str) -> JsonObject:
    """Validate a state document and return it normalized (lists everywhere, derived fields)."""
    check = _Check(source)
    root = check.obj(doc, "$")
    for key in root:
        if key not in KNOWN_TOP_LEVEL:
            raise check.fail(f"$.{key}", f"unknown key; expected some of {', '.join(COLLECTIONS)}")
    data: JsonObject = {name: check.items(root.get(name, []), f"$.{name}") for name in COLLECTIONS}
    builtins = check.obj(root.get("builtins", {}), "$.builtins")
    for flag, value in builtins.items():
        if flag not in BUILTIN_FLAGS or not isinstance(value, bool):
            raise check.fail(f"$.builtins.{flag}", f"expected one of {BUILTIN_FLAGS} = true|false")
    cloud = root.get("cloud", "global")
    if cloud not in wellknown.CLOUDS:
        raise check.fail("$.cloud", f"expected one of {', '.join(wellknown.CLOUDS)}")
    data["cloud"] = cloud
    tenant_id = _organization_and_domains(check, data)
    _applications(check, data["applications"])
    _service_principals(check, data, tenant_id, builtins)
    _role_definitions(check, data["roleDefinitions"], builtins)
    sps = {sp["id"].lower(): sp for sp in data["servicePrincipals"]}
    _app_role_assignments(check, data["appRoleAssignments"], sps)
    for name in ("roleAssignments", "roleEligibilitySchedules"):
        _directory_roles(check, name, data[name], data["roleDefinitions"], sps)
    for i, mbx in enumerate(data["mailboxes"]):
        check.string(mbx, "PrimarySmtpAddress", f"$.mailboxes[{i}]")
    data["builtins"] = {flag: builtins.get(flag, True) for flag in BUILTIN_FLAGS}
    data["exchange"] = _exchange(check, root.get("exchange", {}))
    data[COMPLIANCE] = _exchange(check, root.get(COMPLIANCE, {}), COMPLIANCE, COMPLIANCE_TABLES)
    for relation in RELATIONS:
        data[relation] = _relation(check, relation, root.get(relation, {}), data["applications"])
    data[SIGN_IN_ACTIVITIES] = check.items(root.get(SIGN_IN_ACTIVITIES, []), f"$.{SIGN_IN_ACTIVITIES}")
    for i, item in enumerate(data[SIGN_IN_ACTIVITIES]):
        check.string(item, "appId", f"$.{SIGN_IN_ACTIVITIES}[{i}]")
    policy = check.obj(root.get(APP_MANAGEMENT_POLICY, {}), f"$.{APP_MANAGEMENT_POLICY}")
    data[APP_MANAGEMENT_POLICY] = {**DEFAULT_APP_MANAGEMENT_POLICY, **policy}
    return data


def _organization_and_domains(check: _Check, data: JsonObject) -> str:
    """The one organization and the domains; each list is filled in from the other when empty."""
    orgs = data["organization"]
    if len(orgs) != 1:
        raise check.fail("$.organization", f"expected exactly one organization, found {len(orgs)}")
    org = orgs[0]
    tenant_id = check.guid(org, "id", "$.organization[0]")
    assert tenant_id is not None
    check.string(org, "displayName", "$.organization[0]", required=False)
    if "assignedPlans" not in org:
        org["assignedPlans"] = [dict(plan) for plan in DEFAULT_ASSIGNED_PLANS]
    for i, plan in enumerate(check.items(org["assignedPlans"], "$.organization[0].assignedPlans")):
        check.guid(plan, "servicePlanId", f"$.organization[0].assignedPlans[{i}]")
        check.string(plan, "capabilityStatus", f"$.organization[0].assignedPlans[{i}]")
    verified = check.items(org.get("verifiedDomains", []), "$.organization[0].verifiedDomains")
    for i, dom in enumerate(verified):
        check.string(dom, "name", f"$.organization[0].verifiedDomains[{i}]")
    for i, dom in enumerate(data["domains"]):
        check.string(dom, "id", f"$.domains[{i}]")
        for flag in ("isInitial", "isDefault", "isVerified"):
            check.boolean(dom, flag, f"$.domains[{i}]")
    check.unique(data["domains"], "id", "$.domains")
    if not data["domains"]:
        data["domains"] = [
            {"id": d["name"], "isInitial": bool(d.get("isInitial")), "isDefault": bool(d.get("isDefault"))}
            for d in verified
        ]
    if not verified:
        org["verifiedDomains"] = [
            {
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": bool(d.get("isDefault")),
                "isInitial": bool(d.get("isInitial")),
                "name": d["id"],
                "type": "Managed",
            }
            for d in data["domains"]
            if d.get("isVerified", True)
        ]
    if not any(d.get("isInitial") for d in data["domains"]):
        raise check.fail("$.domains", "no domain has isInitial: true (the *.onmicrosoft.com one)")
    return tenant_id


def _key_credentials(check: _Check, owner: JsonObject, path: str) -> list[JsonObject]:
    creds = check.items(owner.get("keyCredentials", []), f"{path}.keyCredentials")
    out = [validate_key_credential(check, c, f"{path}.keyCredentials[{j}]", owner["id"]) for j, c in enumerate(creds)]
    check.unique(out, "keyId", f"{path}.keyCredentials")
    return out


def _applications(check: _Check, apps: list[JsonObject]) -> None:
    for i, app in enumerate(apps):
        path = f"$.applications[{i}]"
        check.guid(app, "id", path)
        check.guid(app, "appId", path)
        check.string(app, "displayName", path, required=False)
        check.time(app, "createdDateTime", path)
        app["keyCredentials"] = _key_credentials(check, app, path)
        check.items(app.get("passwordCredentials", []), f"{path}.passwordCredentials")
        for j, rra in enumerate(check.items(app.get("requiredResourceAccess", []), f"{path}.requiredResourceAccess")):
            rpath = f"{path}.requiredResourceAccess[{j}]"
            check.guid(rra, "resourceAppId", rpath)
            for k, access in enumerate(check.items(rra.get("resourceAccess"), f"{rpath}.resourceAccess")):
                check.guid(access, "id", f"{rpath}.resourceAccess[{k}]")
                if access.get("type") not in ("Role", "Scope"):
                    raise check.fail(f"{rpath}.resourceAccess[{k}].type", "expected Role or Scope")
        app.setdefault("displayName", app["appId"])
    check.unique(apps, "id", "$.applications")
    check.unique(apps, "appId", "$.applications")


def _service_principals(check: _Check, data: JsonObject, tenant_id: str, builtins: Mapping[str, bool]) -> None:
    sps: list[JsonObject] = data["servicePrincipals"]
    for i, sp in enumerate(sps):
        path = f"$.servicePrincipals[{i}]"
        check.guid(sp, "id", path)
        check.guid(sp, "appId", path)
        check.boolean(sp, "accountEnabled", path)
        sp["keyCredentials"] = _key_credentials(check, sp, path)
        for j, role in enumerate(check.items(sp.get("appRoles", []), f"{path}.appRoles")):
            check.guid(role, "id", f"{path}.appRoles[{j}]")
            check.string(role, "value", f"{path}.appRoles[{j}]")
    cloud = str(data["cloud"])
    if builtins.get("exchangeServicePrincipal", True) and not _has_app(sps, wellknown.EXCHANGE_ONLINE_APP_ID):
        sps.append(in_cloud(builtin_exchange_sp(tenant_id), cloud))
    if builtins.get("eopServicePrincipal", True) and not _has_app(sps, wellknown.EOP_APP_ID):
        sps.append(in_cloud(builtin_eop_sp(tenant_id), cloud))
    if builtins.get("graphServicePrincipal", True) and not _has_app(sps, wellknown.MICROSOFT_GRAPH_APP_ID):
        sps.append(in_cloud(builtin_graph_sp(tenant_id), cloud))
    check.unique(sps, "id", "$.servicePrincipals")
    check.unique(sps, "appId", "$.servicePrincipals")
    apps_by_app_id = {a["appId"].lower(): a for a in data["applications"]}
    for sp in sps:
        app = apps_by_app_id.get(sp["appId"].lower())
        sp.setdefault("displayName", app["displayName"] if app else sp["appId"])
        sp.setdefault("appDisplayName", sp["displayName"])
        sp.setdefault("appOwnerOrganizationId", tenant_id if app else None)
        if app is not None:
            sp.setdefault("signInAudience", app.get("signInAudience", "AzureADMyOrg"))


def _role_definitions(check: _Check, definitions: list[JsonObject], builtins: Mapping[str, bool]) -> None:
    for i, d in enumerate(definitions):
        check.guid(d, "id", f"$.roleDefinitions[{i}]")
        check.string(d, "displayName", f"$.roleDefinitions[{i}]")
        d.setdefault("templateId", d["id"])
    if builtins.get("roleDefinitions", True):
        known = {d["id"].lower() for d in definitions}
        definitions.extend(d for d in builtin_role_definitions() if d["id"].lower() not in known)
    check.unique(definitions, "id", "$.roleDefinitions")


def _app_role_assignments(check: _Check, assignments: list[JsonObject], sps: Mapping[str, JsonObject]) -> None:
    for i, ara in enumerate(assignments):
        path = f"$.appRoleAssignments[{i}]"
        principal = _reference(check, ara, "principalId", path, sps)
        resource = _reference(check, ara, "resourceId", path, sps)
        role_id = check.guid(ara, "appRoleId", path)
        assert role_id is not None
        role_ids = {str(r.get("id", "")).lower() for r in resource.get("appRoles", [])}
        if role_id.lower() != DEFAULT_ACCESS_ROLE and role_id.lower() not in role_ids:
            raise check.fail(
                f"{path}.appRoleId",
                f"{role_id!r} is not an app role of resource {resource['displayName']!r}",
            )
        check.time(ara, "createdDateTime", path)
        ara.setdefault("id", assignment_id())
        ara.setdefault("principalType", "ServicePrincipal")
        ara.setdefault("principalDisplayName", principal["displayName"])
        ara.setdefault("resourceDisplayName", resource["displayName"])
    check.unique(assignments, "id", "$.appRoleAssignments")


def _directory_roles(
    check: _Check,
    name: str,
    assignments: list[JsonObject],
    definitions: list[JsonObject],
    sps: Mapping[str, JsonObject],
) -> None:
    """Active role assignments and eligibility schedules: a principal, a definition and a scope."""
    known = {d["id"].lower() for d in definitions} | {str(d.get("templateId", "")).lower() for d in definitions}
    for i, ra in enumerate(assignments):
        path = f"$.{name}[{i}]"
        check.string(ra, "id", path)
        _reference(check, ra, "principalId", path, sps)
        role_id = check.guid(ra, "roleDefinitionId", path)
        if role_id is not None and role_id.lower() not in known:
            raise check.fail(f"{path}.roleDefinitionId", f"no role definition {role_id!r}")
        scope = ra.setdefault("directoryScopeId", "/")
        if not isinstance(scope, str) or not scope.startswith("/"):
            raise check.fail(f"{path}.directoryScopeId", "expected '/' or '/<scope path>'")
    check.unique(assignments, "id", f"$.{name}")


def _exchange(check: _Check, value: object, key: str = "exchange", tables: RbacTables = EXCHANGE_TABLES) -> JsonObject:
    """The Exchange (or Security & Compliance) RBAC objects, in the shape the cmdlets print them (PascalCase)."""
    root = check.obj(value, f"$.{key}")
    for collection in root:
        if collection not in EXCHANGE_COLLECTIONS:
            expected = ", ".join(EXCHANGE_COLLECTIONS)
            raise check.fail(f"$.{key}.{collection}", f"unknown key; expected some of {expected}")
    out: JsonObject = {name: check.items(root.get(name, []), f"$.{key}.{name}") for name in EXCHANGE_COLLECTIONS}
    roles = _management_roles(check, out["managementRoles"], key, tables.role_cmdlets)
    for i, sp in enumerate(out["servicePrincipals"]):
        path = f"$.{key}.servicePrincipals[{i}]"
        check.guid(sp, "AppId", path)
        check.guid(sp, "ObjectId", path)
        check.string(sp, "DisplayName", path, required=False)
        sp.setdefault("DisplayName", sp["AppId"])
        sp.setdefault("Identity", sp["ObjectId"])
        sp.setdefault("Name", sp["ObjectId"])
    check.unique(out["servicePrincipals"], "ObjectId", f"$.{key}.servicePrincipals")
    for i, group in enumerate(out["roleGroups"]):
        path = f"$.{key}.roleGroups[{i}]"
        name = check.string(group, "Name", path)
        group.setdefault("Roles", list(tables.builtin_groups.get(str(name), ())))
        for field in ("Roles", "Members"):
            group[field] = _strings(check, group.get(field, []), f"{path}.{field}")
        _known_roles(check, group["Roles"], roles, f"{path}.Roles")
        group.setdefault("Identity", name)
        group.setdefault("DisplayName", name)
    check.unique(out["roleGroups"], "Name", f"$.{key}.roleGroups")
    groups = {str(g["Name"]).lower() for g in out["roleGroups"]} | {g.lower() for g in tables.builtin_groups}
    scopes = _management_scopes(check, out["managementScopes"])
    _access_policies(check, out["applicationAccessPolicies"])
    for i, ra in enumerate(out["managementRoleAssignments"]):
        path = f"$.{key}.managementRoleAssignments[{i}]"
        role = check.string(ra, "Role", path)
        assignee = check.string(ra, "RoleAssignee", path)
        _known_roles(check, [str(role)], roles | set(APPLICATION_ROLES), f"{path}.Role")
        kind = ra.setdefault("RoleAssigneeType", "RoleGroup" if str(assignee).lower() in groups else "ServicePrincipal")
        if kind not in ("RoleGroup", "ServicePrincipal"):
            raise check.fail(f"{path}.RoleAssigneeType", "expected RoleGroup or ServicePrincipal")
        if role in APPLICATION_ROLES:
            _application_assignment(check, ra, scopes, path)
        check.boolean(ra, "Enabled", path)
        ra.setdefault("Enabled", True)
        ra.setdefault("RecipientWriteScope", DEFAULT_WRITE_SCOPE)
        ra.setdefault("CustomRecipientWriteScope", None)
        ra.setdefault("RecipientAdministrativeUnitScope", None)
        ra.setdefault("RoleAssigneeName", assignee)
        ra.setdefault("Name", f"{role}-{assignee}")
        ra.setdefault("Identity", ra["Name"])
    check.unique(out["managementRoleAssignments"], "Name", f"$.{key}.managementRoleAssignments")
    return out


def _management_scopes(check: _Check, scopes: list[JsonObject]) -> set[str]:
    """RBAC for Applications' recipient scopes: a Name and a RecipientFilter (Get-ManagementScope's shape)."""
    for i, scope in enumerate(scopes):
        path = f"$.exchange.managementScopes[{i}]"
        name = check.string(scope, "Name", path)
        scope.update({**management_scope(str(name), str(check.string(scope, "RecipientFilter", path))), **scope})
    check.unique(scopes, "Name", "$.exchange.managementScopes")
    return {str(s["Name"]).lower() for s in scopes}


def _access_policies(check: _Check, policies: list[JsonObject]) -> None:
    """Application Access Policies: an AppId (a GUID or *), an AccessRight and a ScopeName."""
    for i, policy in enumerate(policies):
        path = f"$.exchange.applicationAccessPolicies[{i}]"
        app_id, right, scope = (str(check.string(policy, key, path)) for key in ("AppId", "AccessRight", "ScopeName"))
        if right not in ACCESS_RIGHTS:
            raise check.fail(f"{path}.AccessRight", f"expected one of {', '.join(ACCESS_RIGHTS)}")
        policy.update({**access_policy(app_id, right, scope), **policy})


def _application_assignment(check: _Check, ra: JsonObject, scopes: set[str], path: str) -> None:
    """An Application role goes only to a service principal pointer; its scope must exist."""
    if ra["RoleAssigneeType"] != "ServicePrincipal":
        raise check.fail(f"{path}.RoleAssigneeType", "Application roles are assignable only to service principals")
    scope = ra.get("CustomResourceScope")
    if scope is not None and str(scope).lower() not in scopes:
        raise check.fail(f"{path}.CustomResourceScope", f"no management scope {scope!r} in $.exchange.managementScopes")
    ra.update(application_scope_fields(ra))


def _relation(check: _Check, name: str, value: object, apps: list[JsonObject]) -> JsonObject:
    """An application relationship (owners, federatedIdentityCredentials): application object id -> objects."""
    root = check.obj(value, f"$.{name}")
    known = {str(a["id"]).lower() for a in apps}
    out: JsonObject = {}
    for app_id, items in root.items():
        if app_id.lower() not in known:
            raise check.fail(f"$.{name}.{app_id}", "expected the object id of an application in $.applications")
        out[app_id.lower()] = check.items(items, f"$.{name}.{app_id}")
        for i, item in enumerate(out[app_id.lower()]):
            check.string(item, "id", f"$.{name}.{app_id}[{i}]")
    return out


def _management_roles(
    check: _Check, roles: list[JsonObject], key: str, role_cmdlets: Mapping[str, frozenset[str]]
) -> set[str]:
    """Custom roles: a Name, a built-in Parent and a subset of the parent's cmdlets (New-ManagementRole -Parent)."""
    for i, role in enumerate(roles):
        path = f"$.{key}.managementRoles[{i}]"
        check.string(role, "Name", path)
        parent = check.string(role, "Parent", path)
        if parent not in role_cmdlets:
            raise check.fail(f"{path}.Parent", f"expected one of {', '.join(role_cmdlets)}")
        role["Cmdlets"] = _strings(check, role.get("Cmdlets", []), f"{path}.Cmdlets")
        extra = set(role["Cmdlets"]) - role_cmdlets[str(parent)]
        if extra:
            raise check.fail(f"{path}.Cmdlets", f"{sorted(extra)} are not cmdlets of the parent role {parent!r}")
    check.unique(roles, "Name", f"$.{key}.managementRoles")
    return {str(r["Name"]) for r in roles} | set(role_cmdlets)


def _strings(check: _Check, value: object, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise check.fail(path, "expected a JSON array of strings")
    return list(value)


def _known_roles(check: _Check, names: list[str], known: set[str], path: str) -> None:
    for name in names:
        if name not in known:
            raise check.fail(path, f"no management role {name!r} (known: {', '.join(sorted(known))})")


def _has_app(sps: Iterable[JsonObject], app_id: str) -> bool:
    return any(str(sp.get("appId", "")).lower() == app_id for sp in sps)


def _reference(check: _Check, obj: JsonObject, key: str, path: str, sps: Mapping[str, JsonObject]) -> JsonObject:
    value = check.guid(obj, key, path)
    assert value is not None
    sp = sps.get(value.lower())
    if sp is None:
        raise check.fail(f"{path}.{key}", f"no service principal with id {value!r}")
    return sp


def load_state_file(path: Path) -> JsonObject:
    """Read and validate a state file; problems raise SandboxStateError naming the file."""
    source = f"state file '{path}'"
    return validate(read_json_file(path, source), source)


def read_json_file(path: Path, source: str) -> object:
    """The JSON document in a regular, UTF-8 file of at most MAX_STATE_BYTES, nested at most MAX_DEPTH deep.

    O_NONBLOCK makes opening a FIFO return at once, so it is refused instead of waiting for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxStateError(f"{source}: cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise SandboxStateError(f"{source}: not a regular file. Give the path of a JSON file.")
        try:
            raw = handle.read(MAX_STATE_BYTES + 1)
        except OSError as exc:
            raise SandboxStateError(f"{source}: cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_STATE_BYTES:
        raise SandboxStateError(f"{source}: larger than {MAX_STATE_BYTES // 2**20} MiB, the most the sandbox loads.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SandboxStateError(f"{source}: not UTF-8 (byte {exc.start}). Save it as UTF-8 JSON.") from None
    try:
        doc = json.loads(text)
        too_deep = _deeper_than(doc, MAX_DEPTH)
    except json.JSONDecodeError as exc:
        raise SandboxStateError(
            f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}. "
            "Fix the file, or write a fresh one with 'cbacheck sandbox --dump FILE'."
        ) from None
    except RecursionError:
        too_deep = True
    if too_deep:
        raise SandboxStateError(f"{source}: nested deeper than {MAX_DEPTH} levels; Graph JSON never is.")
    return doc


def _deeper_than(doc: object, limit: int) -> bool:
    """True when arrays and objects nest more than limit levels (checked without recursion)."""
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
