"""What every handler shares: the apply context it reads and writes through, and the probe context it checks in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cbacheck.collect.graph import GraphClient, GraphResponse
from cbacheck.collect.parse import MalformedFact, parse_application
from cbacheck.config import Settings
from cbacheck.errors import FixError
from cbacheck.facts import AppRegistration, ServicePrincipal, TokenAttempt, Unavailable
from cbacheck.fixers.actions import Action, Ref, redact, resolve_ref
from cbacheck.fixers.journal import Journal
from cbacheck.fixers.verify import FactsPerRound, Probe, TokenWith, token_missing

A = TypeVar("A", bound=Action)


@dataclass
class Reading:
    """An object as read just before or after a write, and whether the action's effect is present."""

    done: bool
    state: Any  # the JSON as Graph returned it (redacted before it is shown)
    outputs: dict[str, Any] = field(default_factory=dict)
    app: AppRegistration | None = None  # the same answer parsed, for the handlers' own decisions


@dataclass(frozen=True)
class Sent:
    """A write as sent (secrets elided) and what came back."""

    request: dict[str, Any]
    status: int | None
    request_id: str
    outputs: dict[str, Any]


def body_of(response: GraphResponse) -> dict[str, Any]:
    return response.body if isinstance(response.body, dict) else {}


@dataclass
class ApplyContext:
    """The admin's Graph client, the settings, the outputs of the actions already run, and the journal."""

    graph: GraphClient
    settings: Settings
    outputs: dict[str, dict[str, Any]]
    journal: Journal

    @property
    def tenant(self) -> str:
        return self.settings.tenant or ""

    def value(self, value: str | Ref) -> str:
        return resolve_ref(value, self.outputs)

    def send(self, method: str, path: str, body: Any) -> Sent:
        response = self.graph.send(method, path, body)
        answer = body_of(response)
        # The ids of what a POST created are what later actions' references resolve to.
        created = {name: answer[name] for name in ("id", "appId") if answer.get(name)}
        return Sent(
            {"method": method, "path": path, "body": redact(body)}, response.status, response.source.request_id, created
        )

    def read_application(self, object_id: str, collection: str) -> tuple[AppRegistration, list[dict[str, Any]]]:
        """The application as the fact parser sees it, and the named collection exactly as Graph returned it.

        The raw entries are what a PATCH sends back: a PATCH replaces the collection, so an entry left
        out is deleted (https://learn.microsoft.com/graph/api/application-update).
        """
        path = f"/applications/{object_id}"
        answer = self.graph.get(path, {"$select": f"id,appId,{collection}"})
        body = body_of(answer)
        entries = body.get(collection)
        if not isinstance(entries, list):
            raise FixError(f"GET {path}?$select={collection} answered without a {collection} list")
        try:
            app = parse_application(body, answer.source)
        except MalformedFact as err:
            raise FixError(f"GET {path} answered with an application cbacheck cannot read: {err}") from err
        return app, [dict(entry) for entry in entries if isinstance(entry, dict)]


@dataclass(frozen=True)
class ProbeContext:
    """What a probe checks against: the facts of the current round, the actions' outputs, and token attempts."""

    settings: Settings
    outputs: Mapping[str, Mapping[str, Any]]
    facts: FactsPerRound
    token_with: TokenWith

    def app(self, round_number: int) -> AppRegistration | None:
        app = self.facts(round_number).app
        return app if isinstance(app, AppRegistration) else None

    def service_principal(self, round_number: int) -> ServicePrincipal | None:
        sp = self.facts(round_number).app_sp
        return sp if isinstance(sp, ServicePrincipal) else None

    def token(self, round_number: int, profile: str = "") -> tuple[TokenAttempt | None, str | None]:
        """The app's token this round (the named profile's when given), and why it has none (None when it has one)."""
        facts = self.facts(round_number)
        token = facts.profile_tokens.get(profile, facts.token) if profile else facts.token
        if isinstance(token, Unavailable):
            return None, str(token)
        missing = token_missing(token)
        return (None, missing) if missing else (token, None)


class Handler(Generic[A]):
    """One action's whole story: read its object, make its write, and probe its effect where it counts."""

    def read(self, action: A, ctx: ApplyContext) -> Reading:
        raise NotImplementedError

    def perform(self, action: A, ctx: ApplyContext, before: Reading) -> Sent:
        raise NotImplementedError

    def probe(self, action: A, ctx: ProbeContext) -> Probe | None:
        """The check that the effect shows in the effective state (None: nothing to wait for)."""
        return None
