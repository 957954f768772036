"""Applying a fix plan on request: confirmation, idempotent writes with before/after state, then the wait."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests

from cbacheck.collect import collect
from cbacheck.collect.graph import GraphClient
from cbacheck.collect.transport import build_session
from cbacheck.config import Settings
from cbacheck.errors import CbaCheckError, CredentialError, FixError, FixRefused, GraphError
from cbacheck.facts import CertFacts, TenantFacts
from cbacheck.fixers.actions import Action, ManualStep, redact
from cbacheck.fixers.handlers import ApplyContext, Handler, ProbeContext, Reading, handler_for
from cbacheck.fixers.journal import Journal, journal_path
from cbacheck.fixers.outcomes import (
    ALREADY_DONE,
    APPLIED,
    FAILED,
    MANUAL,
    SKIPPED_DEPENDENCY_FAILED,
    WAITING_FOR_VERIFICATION,
    ActionResult,
    now_stamp,
    report_output,
)
from cbacheck.fixers.planners import failed_ids, order, plan
from cbacheck.fixers.planning import NO_OPT_INS, OptIns
from cbacheck.fixers.verify import (
    VERIFIED,
    FactsPerRound,
    Probe,
    ProbeResult,
    TokenWith,
    token_with_certificate,
    verdicts,
    wait_for_propagation,
)

# Settings a manual step names once the apply has made a new certificate or app: the re-check uses
# them, and the automation must be switched to them.
SWITCHED_SETTINGS: Final = ("app_id", "cert")


def confirm_apply(actions: Sequence[Action], *, assume_yes: bool, interactive: bool, ask: Callable[[str], str]) -> None:
    """Go on only with a yes: --yes, or an answer at a terminal. Raises FixError otherwise."""
    changes = [action for action in actions if action.automated]
    if not changes or assume_yes:
        return
    count = len(changes)
    noun = "change" if count == 1 else "changes"
    if not interactive:
        raise FixRefused(f"refusing to apply {count} {noun} without confirmation: run at a terminal or pass --yes")
    try:
        answer = ask(f"Apply these {count} {noun} to the tenant? Type yes to go on: ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise FixRefused(f"not applied: the answer was {answer.strip()!r}, not yes; nothing was changed")


def admin_graph_client(settings: Settings, session: requests.Session) -> GraphClient:
    """A Graph client signed in as the admin identity; FixError naming the settings when there is none."""
    from cbacheck.collect import tokens  # msal and azure-identity load only when a fix is applied

    try:
        provider = tokens.graph_token_provider(settings, session, "admin")
    except CredentialError as err:
        raise FixError(f"nothing was changed: {err}") from err
    cloud = settings.cloud_endpoints
    # The token is for the cloud's Graph resource even when graph_url points at a private endpoint.
    return GraphClient(cloud.graph_url, provider, session, batching=False, scope=f"{cloud.graph_resource}/.default")


def _described_with_values(action: Action, ctx: ApplyContext) -> dict[str, Any]:
    """The action's description with symbolic references replaced by the values now known."""
    text = json.dumps(action.describe())
    for action_id, produced in ctx.outputs.items():
        for name, value in produced.items():
            if isinstance(value, str) and name != "der_base64":
                text = text.replace("{" + f"{action_id}.{name}" + "}", value)
    described: dict[str, Any] = json.loads(text)
    return described


def apply_plan(
    actions: Sequence[Action],
    graph: GraphClient,
    settings: Settings,
    *,
    journal: Journal,
    progress: Callable[[str], None],
    verified: Iterable[str] = (),
) -> list[ActionResult]:
    """Apply the actions in dependency order, each once; only on request, never inside a check.

    Before each write the object is read again: an effect already present is "already-done"
    (so a re-run after an interruption converges). A failure skips only the actions depending on
    it. `verified` names actions whose effect has been proven (see RemoveKeyCredentials).
    """
    tenant = settings.tenant or ""
    proven = set(verified)
    ctx = ApplyContext(graph, settings, dict(journal.outputs(tenant)), journal)
    results: dict[str, ActionResult] = {}
    for action in order(actions):
        started_at = now_stamp()
        result = _apply_one(action, ctx, results, proven, journal, progress, started_at)
        results[action.id] = result
        journal.finished(result, tenant)
        progress(f"{action.id}: {result.status}" + (f" ({result.error.splitlines()[0]})" if result.error else ""))
    return list(results.values())


def _apply_one(
    action: Action,
    ctx: ApplyContext,
    results: Mapping[str, ActionResult],
    proven: set[str],
    journal: Journal,
    progress: Callable[[str], None],
    started_at: str,
) -> ActionResult:
    base = ActionResult(action.id, action.kind, MANUAL, action.mends, started_at=started_at)
    blocked = [dep for dep in action.depends_on if dep in results and not results[dep].done]
    if blocked:
        reasons = "; ".join(f"{dep} {results[dep].status}" for dep in blocked)
        return dataclasses.replace(
            base, status=SKIPPED_DEPENDENCY_FAILED, error=f"not attempted: {reasons}", finished_at=now_stamp()
        )
    if isinstance(action, ManualStep):
        return _manual_result(action, ctx, base)
    waiting = [dep for dep in getattr(action, "requires_verified", ()) if dep not in proven]
    if waiting:
        return dataclasses.replace(
            base,
            status=WAITING_FOR_VERIFICATION,
            request=_described_with_values(action, ctx),
            error=f"waits until {', '.join(waiting)} is proven to work",
            finished_at=now_stamp(),
        )
    return _write(action, ctx, base, journal, progress)


def _manual_result(action: ManualStep, ctx: ApplyContext, base: ActionResult) -> ActionResult:
    """A manual step is never sent: it is reported with the value it names, now known."""
    output: dict[str, Any] = {}
    if action.setting:
        try:
            output = {"setting": action.setting, "value": ctx.value(action.value)}
        except FixError as err:
            output = {"setting": action.setting, "value": "", "note": str(err)}
    request = _described_with_values(action, ctx)
    return dataclasses.replace(base, request=request, output=output, finished_at=now_stamp())


def _write(
    action: Action, ctx: ApplyContext, base: ActionResult, journal: Journal, progress: Callable[[str], None]
) -> ActionResult:
    """Read, write only when the effect is missing, read again; a refusal is re-read before it counts as failed."""
    handler = handler_for(action)
    before: Reading | None = None
    try:
        before = handler.read(action, ctx)
        if before.done:
            ctx.outputs[action.id] = {**ctx.outputs.get(action.id, {}), **before.outputs}
            state = redact(before.state)
            return dataclasses.replace(
                base,
                status=ALREADY_DONE,
                before=state,
                after=state,
                output=report_output(ctx.outputs[action.id]),
                finished_at=now_stamp(),
            )
        request = _described_with_values(action, ctx)
        journal.started(action, ctx.settings.tenant or "", request)
        progress(f"{action.id}: {request.get('method', '')} {request.get('path', '')}".rstrip())
        sent = handler.perform(action, ctx, before)
        created = {key: value for key, value in sent.outputs.items() if value}
        if sent.status is not None:
            journal.answered(action, ctx.tenant, sent.status, sent.request_id, created)
        ctx.outputs[action.id] = {**before.outputs, **created}
        after = handler.read(action, ctx)
        ctx.outputs[action.id] = {**ctx.outputs[action.id], **{k: v for k, v in after.outputs.items() if v}}
        return dataclasses.replace(
            base,
            status=APPLIED,
            before=redact(before.state),
            request=sent.request,
            response_status=sent.status,
            request_id=sent.request_id,
            after=redact(after.state),
            output=report_output(ctx.outputs[action.id]),
            finished_at=now_stamp(),
        )
    except GraphError as err:
        return _failed_or_raced(action, ctx, handler, base, before, err, err.code, err.status, err.request_id)
    except CbaCheckError as err:
        return _failed_or_raced(action, ctx, handler, base, before, err, type(err).__name__, None, "")


def _failed_or_raced(
    action: Action,
    ctx: ApplyContext,
    handler: Handler[Any],
    base: ActionResult,
    before: Reading | None,
    err: CbaCheckError,
    code: str,
    status: int | None,
    request_id: str,
) -> ActionResult:
    after_state: Any = None
    if before is not None:
        # A write that lost a race (or a duplicate Graph refuses) leaves the effect present: read again
        # before calling it a failure, so a re-run never reports broken what is in place.
        try:
            after = handler.read(action, ctx)
        except CbaCheckError:
            after = None
        if after is not None:
            after_state = redact(after.state)
            if after.done:
                ctx.outputs[action.id] = {**ctx.outputs.get(action.id, {}), **after.outputs}
                return dataclasses.replace(
                    base,
                    status=ALREADY_DONE,
                    before=redact(before.state),
                    after=after_state,
                    response_status=status,
                    request_id=request_id,
                    error=f"the write was refused but its effect is present: {err}",
                    error_code=code,
                    output=report_output(ctx.outputs[action.id]),
                    finished_at=now_stamp(),
                )
    return dataclasses.replace(
        base,
        status=FAILED,
        before=redact(before.state) if before is not None else None,
        request=_described_with_values(action, ctx),
        response_status=status,
        request_id=request_id,
        after=after_state,
        error=str(err),
        error_code=code,
        finished_at=now_stamp(),
    )


def settings_after(settings: Settings, results: Iterable[ActionResult]) -> Settings:
    """Settings with the values manual steps name once their actions ran (new app_id, new certificate)."""
    changes: dict[str, Any] = {}
    for result in results:
        setting = result.output.get("setting")
        value = result.output.get("value")
        if result.status == MANUAL and setting in SWITCHED_SETTINGS and value:
            changes[str(setting)] = Path(str(value)) if setting == "cert" else str(value)
    if not changes:
        return settings
    sources = {**settings.sources, **dict.fromkeys(changes, "fix")}
    return dataclasses.replace(settings, **changes, sources=sources)


def effect_probes(
    actions: Sequence[Action],
    results: Sequence[ActionResult],
    *,
    settings: Settings,
    collect: Callable[[], TenantFacts],
    token_with: TokenWith,
) -> list[Probe]:
    """A probe per action that changed (or found) something, checking its effect where it counts."""
    ctx = ProbeContext(
        settings=settings,
        outputs={result.action_id: dict(result.output) for result in results},
        facts=FactsPerRound(collect),
        token_with=token_with,
    )
    done = {result.action_id for result in results if result.done}
    probes: list[Probe] = []
    for action in actions:
        if action.id not in done or isinstance(action, ManualStep):
            continue
        probe = handler_for(action).probe(action, ctx)
        if probe is not None:
            probes.append(probe)
    return probes


@dataclass(frozen=True)
class FixRun:
    """Everything `--fix apply` did, for the console and the reports."""

    actions: tuple[Action, ...]
    results: tuple[ActionResult, ...]
    probes: tuple[ProbeResult, ...]
    settings: Settings  # with the values the fixes changed (a new app_id or certificate)

    def verdicts(self) -> dict[str, str]:
        return verdicts(self.results, self.probes)

    def applied_rows(self) -> list[dict[str, Any]]:
        """One row per action for the results file: before, request, response, after, and what verify saw."""
        probes = {probe.action_id: probe.as_dict() for probe in self.probes}
        verdict = self.verdicts()
        return [
            {**result.as_dict(), "verdict": verdict[result.action_id], "verification": probes.get(result.action_id)}
            for result in self.results
        ]

    def switches_needed(self) -> list[str]:
        """Manual steps the outcome still depends on: the automation must switch to a new certificate or app id.

        Until a person has done them, the configured setup is not the one cbacheck proved after the apply.
        """
        return [
            f"{result.action_id}: set {result.output['setting']} = {result.output['value']} where the automation runs"
            for result in self.results
            if result.status == MANUAL
            and result.output.get("setting") in SWITCHED_SETTINGS
            and result.output.get("value")
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": [action.as_dict() for action in self.actions],
            "results": [result.as_dict() for result in self.results],
            "verification": [probe.as_dict() for probe in self.probes],
            "verdicts": self.verdicts(),
        }


def apply_and_verify(
    actions: Sequence[Action],
    graph: GraphClient,
    settings: Settings,
    *,
    journal: Journal,
    progress: Callable[[str], None],
    collect: Callable[[Settings], TenantFacts],
    token_with: Callable[[Settings], TokenWith],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> FixRun:
    """Apply the plan, wait (bounded by propagation_timeout_s) for each effect, then run what waited for proof."""
    results = apply_plan(actions, graph, settings, journal=journal, progress=progress)
    after = settings_after(settings, results)

    def probe_and_wait(done: Sequence[ActionResult]) -> list[ProbeResult]:
        probes = effect_probes(
            actions, done, settings=settings, collect=lambda: collect(after), token_with=token_with(after)
        )
        if not probes:
            return []
        return wait_for_propagation(
            probes, timeout_s=settings.propagation_timeout_s, progress=progress, sleep=sleep, clock=clock
        )

    probe_results = probe_and_wait(results)
    waiting = {result.action_id for result in results if result.status == WAITING_FOR_VERIFICATION}
    deferred = [action for action in actions if action.id in waiting]
    if deferred:
        proven = {probe.action_id for probe in probe_results if probe.status == VERIFIED}
        second = apply_plan(deferred, graph, settings, journal=journal, progress=progress, verified=proven)
        by_id = {result.action_id: result for result in (*results, *second)}
        results = [by_id[result.action_id] for result in results]
        probe_results.extend(probe_and_wait(second))
    return FixRun(tuple(order(actions)), tuple(results), tuple(probe_results), after)


def fix_on_request(
    requirements: Sequence[Mapping[str, Any]],
    settings: Settings,
    tenant_facts: TenantFacts | None,
    cert_facts: CertFacts | None,
    *,
    interactive: bool,
    ask: Callable[[str], str],
    progress: Callable[[str], None],
    opt_ins: OptIns = NO_OPT_INS,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> FixRun:
    """`--fix apply` after evaluation: plan from the results, check the admin identity, ask, apply, wait, verify.

    `opt_ins` are the writes the command line allowed beyond the default plan. Raises FixError, before
    anything changes, when there is no admin identity, the journal cannot be trusted, or no yes.
    """
    actions = plan(settings, tenant_facts, cert_facts, failed_ids(requirements), opt_ins)
    if not any(action.automated for action in actions):
        return FixRun(tuple(actions), (), (), settings)
    active = session or build_session(settings)
    graph = admin_graph_client(settings, active)
    journal = Journal(journal_path(settings))
    journal.check()
    confirm_apply(actions, assume_yes=settings.yes, interactive=interactive, ask=ask)
    return apply_and_verify(
        actions,
        graph,
        settings,
        journal=journal,
        progress=progress,
        collect=lambda current: collect(current, session=active),
        token_with=lambda current: token_with_certificate(current, active),
        sleep=sleep,
        clock=clock,
    )
