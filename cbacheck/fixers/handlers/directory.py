"""Handlers for directory objects: register the application, create or enable its service principal."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from cbacheck.collect.parse import MalformedFact, parse_time
from cbacheck.errors import FixError, GraphError
from cbacheck.fixers.actions import CreateApplication, CreateServicePrincipal, EnableServicePrincipal
from cbacheck.fixers.handlers.base import ApplyContext, Handler, ProbeContext, Reading, Sent, body_of
from cbacheck.fixers.journal import CreatedApplication
from cbacheck.fixers.verify import Probe

# The local clock (the journal's times) and Entra's (createdDateTime) may disagree by this much.
CLOCK_SKEW: Final = timedelta(minutes=5)


class AdoptionRefused(FixError):
    """A resumed apply cannot prove an application is the one cbacheck's own request created."""


class CreateApplicationHandler(Handler[CreateApplication]):
    """Registers the app; a resumed apply adopts only what cbacheck's own recorded request created.

    A display name or tag proves nothing (app owners can write them), so an app is adopted only by
    the id Graph answered to cbacheck's POST, recorded in the journal, and only when the app's
    createdDateTime falls within that request.
    """

    def read(self, action: CreateApplication, ctx: ApplyContext) -> Reading:
        own = ctx.outputs.get(action.id, {}).get("id")  # answered to this run's POST
        if own:
            body = body_of(ctx.graph.get(f"/applications/{own}", {"$select": "id,appId,displayName"}))
            return Reading(True, body, {"id": body.get("id", own), "appId": body.get("appId", "")})
        unanswered = ctx.journal.unanswered_creates(ctx.tenant)
        if unanswered:
            raise AdoptionRefused(
                f"an interrupted run sent POST /applications at {unanswered[-1]} and its answer was never "
                f"recorded, so cbacheck cannot tell which application it registered. In the portal, look for an "
                f"app registration named {action.display_name!r} created then: set app_id to its appId (or delete "
                f"it), then move the journal {str(ctx.journal.path)!r} aside and run again."
            )
        for created in reversed(ctx.journal.created_applications(ctx.tenant)):
            reading = self._adopt(created, ctx)
            if reading is not None:
                return reading
        return Reading(False, None)

    @staticmethod
    def _adopt(created: CreatedApplication, ctx: ApplyContext) -> Reading | None:
        """The recorded app when it is still the one cbacheck created; None when it is gone."""
        path = f"/applications/{created.object_id}"
        try:
            answer = ctx.graph.get(path, {"$select": "id,appId,displayName,createdDateTime"})
        except GraphError as err:
            if err.status == 404:
                return None  # deleted since: nothing to adopt
            raise
        body = body_of(answer)
        try:
            made = parse_time(body.get("createdDateTime"))
        except MalformedFact:
            made = None
        earliest, latest = created.requested_at - CLOCK_SKEW, created.answered_at + CLOCK_SKEW
        if body.get("appId") != created.app_id or made is None or not earliest <= made <= latest:
            raise AdoptionRefused(
                f"the journal names application {created.object_id} as created by cbacheck at "
                f"{created.requested_at.isoformat()}, but Graph shows appId {body.get('appId')!r} created "
                f"{body.get('createdDateTime')!r}; cbacheck adopts only the app its own request created. "
                "Set app_id to the app the automation should use, or move the journal aside and run again."
            )
        return Reading(True, body, {"id": body.get("id", created.object_id), "appId": created.app_id})

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
