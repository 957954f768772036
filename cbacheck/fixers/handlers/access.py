"""Handlers for access: the Exchange permission on the app, admin consent, and the directory role."""

from __future__ import annotations

from collections.abc import Callable

from cbacheck import wellknown
from cbacheck.collect.parse import MalformedFact, parse_app_role_grants, parse_role_assignments
from cbacheck.errors import FixError
from cbacheck.facts import TokenAttempt
from cbacheck.fixers.actions import AddRequiredResourceAccess, AssignDirectoryRole, GrantAppRole
from cbacheck.fixers.handlers.base import ApplyContext, Handler, ProbeContext, Reading, Sent
from cbacheck.fixers.verify import Probe


def _claim_probe(
    action_id: str,
    ctx: ProbeContext,
    waiting_for: str,
    claim: str,
    present: Callable[[TokenAttempt], bool],
    profile: str = "",
) -> Probe:
    """A probe that waits for the app's token (a profile's, when named) to carry the granted role (consent and roles
    reach tokens late)."""

    def in_token(round_number: int) -> str | None:
        token, missing = ctx.token(round_number, profile)
        if token is None:
            return missing
        return None if present(token) else f"token {claim} are {list(getattr(token, claim))}"

    return Probe(action_id, waiting_for, in_token)


class AddRequiredResourceAccessHandler(Handler[AddRequiredResourceAccess]):
    def read(self, action: AddRequiredResourceAccess, ctx: ApplyContext) -> Reading:
        app, entries = ctx.read_application(ctx.value(action.app_object_id), "requiredResourceAccess")
        done = app.requests_app_role(action.resource_app_id, action.app_role_id)
        return Reading(done, {"requiredResourceAccess": entries}, app=app)

    def perform(self, action: AddRequiredResourceAccess, ctx: ApplyContext, before: Reading) -> Sent:
        entries = [dict(entry) for entry in before.state["requiredResourceAccess"]]
        wanted = {"id": action.app_role_id, "type": "Role"}
        for entry in entries:
            if entry.get("resourceAppId") == action.resource_app_id:
                entry["resourceAccess"] = [*(entry.get("resourceAccess") or []), wanted]
                break
        else:
            entries.append({"resourceAppId": action.resource_app_id, "resourceAccess": [wanted]})
        path = f"/applications/{ctx.value(action.app_object_id)}"
        return ctx.send("PATCH", path, {"requiredResourceAccess": entries})

    def probe(self, action: AddRequiredResourceAccess, ctx: ProbeContext) -> Probe | None:
        def configured(round_number: int) -> str | None:
            app = ctx.app(round_number)
            if app is None:
                return "the application is not visible"
            # The same rule as CBA-PERM-002: a delegated Scope entry is not the application permission.
            if app.requests_app_role(action.resource_app_id, action.app_role_id):
                return None
            return "requiredResourceAccess does not list it (as an application permission, type Role) yet"

        return Probe(action.id, f"{wellknown.EXCHANGE_MANAGE_AS_APP} in requiredResourceAccess", configured)


class GrantAppRoleHandler(Handler[GrantAppRole]):
    def read(self, action: GrantAppRole, ctx: ApplyContext) -> Reading:
        principal = ctx.value(action.principal_id)
        raw = ctx.graph.get_all(f"/servicePrincipals/{principal}/appRoleAssignments").value
        try:
            grants = parse_app_role_grants(raw)
        except MalformedFact as err:
            raise FixError(f"the app's appRoleAssignments cannot be read: {err}") from err
        match = [g for g in grants if g.resource_id == action.resource_id and g.app_role_id == action.app_role_id]
        outputs = {"id": match[0].id} if match else {}
        return Reading(bool(match), {"appRoleAssignments": raw}, outputs)

    def perform(self, action: GrantAppRole, ctx: ApplyContext, before: Reading) -> Sent:
        principal = ctx.value(action.principal_id)
        body = {"principalId": principal, "resourceId": action.resource_id, "appRoleId": action.app_role_id}
        return ctx.send("POST", f"/servicePrincipals/{principal}/appRoleAssignments", body)

    def probe(self, action: GrantAppRole, ctx: ProbeContext) -> Probe | None:
        if not action.token_carries_role:
            return None  # the re-check reads the grant from Graph
        return _claim_probe(
            action.id,
            ctx,
            f"{action.app_role_name} to appear in the token",
            "roles",
            lambda token: action.app_role_name in token.roles,
            action.token_profile,
        )


class AssignDirectoryRoleHandler(Handler[AssignDirectoryRole]):
    def read(self, action: AssignDirectoryRole, ctx: ApplyContext) -> Reading:
        principal = ctx.value(action.principal_id)
        raw = ctx.graph.get_all(
            "/roleManagement/directory/roleAssignments", {"$filter": f"principalId eq '{principal}'"}
        ).value
        try:
            assignments = parse_role_assignments(raw, "active")
        except MalformedFact as err:
            raise FixError(f"the service principal's role assignments cannot be read: {err}") from err
        # The same rule as CBA-ROLE-001: active, at tenant scope "/", not limited to an administrative unit.
        match = [a for a in assignments if a.grants_tenant_wide({action.role_definition_id.lower()})]
        outputs = {"id": match[0].id} if match else {}
        return Reading(bool(match), {"roleAssignments": raw}, outputs)

    def perform(self, action: AssignDirectoryRole, ctx: ApplyContext, before: Reading) -> Sent:
        body = {
            "@odata.type": "#microsoft.graph.unifiedRoleAssignment",
            "roleDefinitionId": action.role_definition_id,
            "principalId": ctx.value(action.principal_id),
            "directoryScopeId": "/",
        }
        return ctx.send("POST", "/roleManagement/directory/roleAssignments", body)

    def probe(self, action: AssignDirectoryRole, ctx: ProbeContext) -> Probe | None:
        return _claim_probe(
            action.id,
            ctx,
            f"{action.role_name} to appear in the token's wids",
            "wids",
            lambda token: action.role_definition_id.lower() in token.wids,
        )
