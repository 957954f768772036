"""Handlers for directory objects: register the application, create or enable its service principal."""

from __future__ import annotations

from cbacheck.errors import FixError, GraphError
from cbacheck.fixers.actions import CreateApplication, CreateServicePrincipal, EnableServicePrincipal
from cbacheck.fixers.handlers.base import ApplyContext, Handler, ProbeContext, Reading, Sent, body_of
from cbacheck.fixers.verify import Probe


class CreateApplicationHandler(Handler[CreateApplication]):
    def read(self, action: CreateApplication, ctx: ApplyContext) -> Reading:
        known = ctx.outputs.get(action.id, {}).get("id")
        if known:
            try:
                answer = ctx.graph.get(f"/applications/{known}", {"$select": "id,appId,displayName"})
            except GraphError as err:
                if err.status != 404:
                    raise
            else:
                body = body_of(answer)
                return Reading(True, body, {"id": body.get("id", known), "appId": body.get("appId", "")})
        if action.id in ctx.unfinished:
            return self._adopt_interrupted(action, ctx)
        return Reading(False, None)

    @staticmethod
    def _adopt_interrupted(action: CreateApplication, ctx: ApplyContext) -> Reading:
        # The last run sent the POST but stopped before recording its answer: adopt what it made
        # instead of registering a second app.
        escaped = action.display_name.replace("'", "''")
        answer = ctx.graph.get_all(
            "/applications", {"$filter": f"displayName eq '{escaped}'", "$select": "id,appId,displayName"}
        )
        found = answer.value
        if len(found) == 1:
            return Reading(True, found[0], {"id": found[0].get("id"), "appId": found[0].get("appId")})
        if len(found) > 1:
            ids = ", ".join(str(item.get("appId")) for item in found)
            raise FixError(
                f"an interrupted run may have created {action.display_name!r}, and {len(found)} apps carry that "
                f"name ({ids}); set app_id to the right one and run again"
            )
        return Reading(False, None)

    def perform(self, action: CreateApplication, ctx: ApplyContext, before: Reading) -> Sent:
        return ctx.send("POST", "/applications", action.body())

    def probe(self, action: CreateApplication, ctx: ProbeContext) -> Probe | None:
        def app_exists(round_number: int) -> str | None:
            return None if ctx.app(round_number) is not None else "the new application is not visible yet"

        return Probe(action.id, "the new application to be visible", app_exists)


def _service_principal_probe(action_id: str, ctx: ProbeContext) -> Probe:
    def sp_enabled(round_number: int) -> str | None:
        sp = ctx.service_principal(round_number)
        if sp is None:
            return "the service principal is not visible yet"
        return None if sp.account_enabled else "the service principal is still disabled"

    return Probe(action_id, "the service principal to exist and be enabled", sp_enabled)


class CreateServicePrincipalHandler(Handler[CreateServicePrincipal]):
    def read(self, action: CreateServicePrincipal, ctx: ApplyContext) -> Reading:
        app_id = ctx.value(action.app_id)
        answer = ctx.graph.get_all(
            "/servicePrincipals", {"$filter": f"appId eq '{app_id}'", "$select": "id,appId,accountEnabled"}
        )
        found = answer.value
        if found:
            return Reading(True, found[0], {"id": found[0].get("id")})
        return Reading(False, None)

    def perform(self, action: CreateServicePrincipal, ctx: ApplyContext, before: Reading) -> Sent:
        return ctx.send("POST", "/servicePrincipals", {"appId": ctx.value(action.app_id)})

    def probe(self, action: CreateServicePrincipal, ctx: ProbeContext) -> Probe | None:
        return _service_principal_probe(action.id, ctx)


class EnableServicePrincipalHandler(Handler[EnableServicePrincipal]):
    def read(self, action: EnableServicePrincipal, ctx: ApplyContext) -> Reading:
        body = body_of(
            ctx.graph.get(f"/servicePrincipals/{action.service_principal_id}", {"$select": "id,accountEnabled"})
        )
        return Reading(body.get("accountEnabled") is True, body, {"id": action.service_principal_id})

    def perform(self, action: EnableServicePrincipal, ctx: ApplyContext, before: Reading) -> Sent:
        return ctx.send("PATCH", f"/servicePrincipals/{action.service_principal_id}", {"accountEnabled": True})

    def probe(self, action: EnableServicePrincipal, ctx: ProbeContext) -> Probe | None:
        return _service_principal_probe(action.id, ctx)
