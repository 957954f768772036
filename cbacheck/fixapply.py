"""Applying a fix plan on request: confirmation, idempotent writes with before/after state, journal, waiting."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import requests

from cbacheck import certs, wellknown
from cbacheck.config import Settings
from cbacheck.errors import CbaCheckError, CertificateError, CredentialError, FixError, FixRefused, GraphError
from cbacheck.facts import (
    AppRegistration,
    CertFacts,
    KeyCredential,
    ServicePrincipal,
    TenantFacts,
    TokenAttempt,
    Unavailable,
)
from cbacheck.fixplan import (
    Action,
    AddKeyCredential,
    AddRequiredResourceAccess,
    AssignDirectoryRole,
    CreateApplication,
    CreateCertificate,
    CreateServicePrincipal,
    EnableServicePrincipal,
    GrantAppRole,
    ManualStep,
    Ref,
    RemoveKeyCredentials,
    failed_ids,
    order,
    plan,
    redact,
    resolve_ref,
    token_roles,
    token_wids,
)
from cbacheck.graph import GraphClient, GraphResponse

APPLIED: Final = "applied"
ALREADY_DONE: Final = "already-done"
FAILED: Final = "failed"
SKIPPED_DEPENDENCY_FAILED: Final = "skipped-dependency-failed"
MANUAL: Final = "manual"
# Waits for an earlier action's effect to be proven (e.g. the old key goes only after the new one
# got a token); apply_and_verify runs it again once the proof is in.
WAITING_FOR_VERIFICATION: Final = "waiting-for-verification"
DONE_STATUSES: Final = frozenset({APPLIED, ALREADY_DONE})

VERIFIED: Final = "verified"
PENDING_PROPAGATION: Final = "pending propagation"
BROKEN: Final = "broken"

FIRST_DELAY_S: Final = 2.0
MAX_DELAY_S: Final = 30.0
DEFAULT_JOURNAL_NAME: Final = "fix-journal.jsonl"
CREATED_BY_FIX: Final = "created by the fix create-certificate"

A = TypeVar("A", bound=Action)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionResult:
    """What applying one action did: state before, the request (secrets elided), the answer, state after."""

    action_id: str
    kind: str
    status: str
    mends: tuple[str, ...] = ()
    before: Any = None
    request: Mapping[str, Any] | None = None
    response_status: int | None = None
    request_id: str = ""
    after: Any = None
    error: str = ""
    error_code: str = ""
    started_at: str = ""
    finished_at: str = ""
    output: Mapping[str, Any] = field(default_factory=dict)  # ids and paths later actions and probes use

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    def as_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "kind": self.kind,
            "status": self.status,
            "mends": list(self.mends),
            "before": self.before,
            "request": dict(self.request) if self.request is not None else None,
            "response_status": self.response_status,
            "request_id": self.request_id,
            "after": self.after,
            "error": self.error,
            "error_code": self.error_code,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "output": dict(self.output),
        }


def _report_output(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs fit for the journal and the reports: the certificate bytes are described, not copied."""
    shown = {name: value for name, value in outputs.items() if name != "der_base64"}
    return dict(redact(shown))


# --- journal ---------------------------------------------------------------------------------------


class Journal:
    """Append-only JSON lines: each action started and finished, so an interrupted apply can resume.

    A process killed mid-write leaves at most one partial last line; reading skips it, since the
    state re-read before each write (not the journal) decides what is still to do.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, default=str)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def started(self, action: Action, tenant: str, request: Mapping[str, Any]) -> None:
        self._append(
            {"event": "started", "at": _now(), "tenant": tenant, "action": action.id, "request": redact(request)}
        )

    def finished(self, result: ActionResult, tenant: str) -> None:
        self._append(
            {
                "event": "finished",
                "at": _now(),
                "tenant": tenant,
                "action": result.action_id,
                "result": result.as_dict(),
            }
        )

    def records(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise FixError(f"cannot read the fix journal {str(self.path)!r}: {err.strerror or err}") from err
        records: list[dict[str, Any]] = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def outputs(self, tenant: str) -> dict[str, dict[str, Any]]:
        """Outputs of actions finished as applied or already done in this tenant, newest last."""
        found: dict[str, dict[str, Any]] = {}
        for record in self.records():
            result = record.get("result")
            if (
                record.get("event") == "finished"
                and record.get("tenant") == tenant
                and isinstance(result, dict)
                and result.get("status") in DONE_STATUSES
                and isinstance(result.get("output"), dict)
            ):
                found[str(record["action"])] = dict(result["output"])
        return found

    def unfinished(self, tenant: str) -> set[str]:
        """Actions whose write was started but never recorded as finished (the process was interrupted)."""
        open_actions: set[str] = set()
        for record in self.records():
            if record.get("tenant") != tenant:
                continue
            if record.get("event") == "started":
                open_actions.add(str(record.get("action")))
            elif record.get("event") == "finished":
                open_actions.discard(str(record.get("action")))
        return open_actions


def journal_path(settings: Settings) -> Path:
    """The journal setting, or fix-journal.jsonl in the report folder."""
    return settings.journal or settings.report_dir / DEFAULT_JOURNAL_NAME


# --- confirmation and the admin identity ---------------------------------------------------------------


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
    from cbacheck import tokens  # msal and azure-identity load only when a fix is applied

    try:
        provider = tokens.graph_token_provider(settings, session, "admin")
    except CredentialError as err:
        raise FixError(f"nothing was changed: {err}") from err
    cloud = settings.cloud_endpoints
    # The token is for the cloud's Graph resource even when graph_url points at a private endpoint.
    return GraphClient(cloud.graph_url, provider, session, batching=False, scope=f"{cloud.graph_resource}/.default")


# --- applying -----------------------------------------------------------------------------------------


@dataclass
class _Reading:
    """An object as read just before or after a write, and whether the action's effect is present."""

    done: bool
    state: Any
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Sent:
    request: dict[str, Any]
    status: int | None
    request_id: str
    outputs: dict[str, Any]


@dataclass
class _Context:
    graph: GraphClient
    settings: Settings
    outputs: dict[str, dict[str, Any]]
    unfinished: set[str]

    def value(self, value: str | Ref) -> str:
        return resolve_ref(value, self.outputs)

    def send(self, method: str, path: str, body: Any) -> _Sent:
        response = self.graph.send(method, path, body)
        answer = _body(response)
        # The ids of what a POST created are what later actions' references resolve to.
        created = {name: answer[name] for name in ("id", "appId") if answer.get(name)}
        return _Sent(
            {"method": method, "path": path, "body": redact(body)}, response.status, response.source.request_id, created
        )


class _Handler(Generic[A]):
    """Reads an action's object and makes its write."""

    def read(self, action: A, ctx: _Context) -> _Reading:
        raise NotImplementedError

    def perform(self, action: A, ctx: _Context, before: _Reading) -> _Sent:
        raise NotImplementedError


def _body(response: GraphResponse) -> dict[str, Any]:
    return response.body if isinstance(response.body, dict) else {}


def _key_matches(entry: Mapping[str, Any], sha1_hex: str) -> bool:
    key = KeyCredential(
        key_id=str(entry.get("keyId", "")),
        type=str(entry.get("type", "")),
        usage=str(entry.get("usage", "")),
        display_name=str(entry.get("displayName", "")),
        start=None,
        end=None,
        custom_key_identifier=entry.get("customKeyIdentifier"),
        key_der=_decode(entry.get("key")),
    )
    return key.matches_thumbprint(sha1_hex)


def _decode(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _key_credentials(ctx: _Context, object_id: str) -> list[dict[str, Any]]:
    # $select=keyCredentials is what makes Graph return each key's bytes (FACTS.md 1.1), which the
    # PATCH must send back or the key is lost.
    answer = ctx.graph.get(f"/applications/{object_id}", {"$select": "keyCredentials"})
    keys = _body(answer).get("keyCredentials")
    if not isinstance(keys, list):
        raise FixError(f"GET /applications/{object_id}?$select=keyCredentials answered without a keyCredentials list")
    return [dict(key) for key in keys if isinstance(key, dict)]


def _keys_without_bytes(keys: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(key.get("keyId", "?")) for key in keys if not key.get("key")]


class _CreateCertificateHandler(_Handler[CreateCertificate]):
    def read(self, action: CreateCertificate, ctx: _Context) -> _Reading:
        password = ctx.settings.cert_password if action.encrypt_key else None
        # A certificate an interrupted run already made (its path is in the journal) is reused, so a
        # resumed rotation does not upload a second new key; one near expiry or already in use is not.
        earlier = ctx.outputs.get(action.id, {}).get("pem_path")
        candidates = [Path(str(earlier))] if earlier else []
        if action.out_dir.is_dir():
            candidates.extend(sorted(action.out_dir.glob("*.pem")))
        for pem in candidates:
            reading = self._usable(pem, password, ctx.settings)
            if reading is not None:
                return reading
        files = sorted(p.name for p in action.out_dir.iterdir()) if action.out_dir.is_dir() else []
        return _Reading(False, {"folder": str(action.out_dir), "files": files})

    @staticmethod
    def _usable(pem: Path, password: str | None, settings: Settings) -> _Reading | None:
        cer = pem.with_suffix(".cer")
        if settings.cert is not None and pem.resolve() == settings.cert.resolve():
            return None
        try:
            facts = certs.read_certificate(pem, password, CREATED_BY_FIX)
        except CertificateError:
            return None
        days_left = (facts.not_after - facts.read_at).days
        if not (facts.private_key_matches and cer.is_file() and days_left >= settings.expiry_days):
            return None
        return _Reading(
            True,
            {"folder": str(pem.parent), "files": [str(cer), str(pem)], "sha1": facts.sha1_thumbprint},
            {
                "pem_path": str(pem),
                "cer_path": str(cer),
                "der_base64": facts.der_base64,
                "sha1_thumbprint": facts.sha1_thumbprint,
                "not_after": facts.not_after.isoformat(),
            },
        )

    def perform(self, action: CreateCertificate, ctx: _Context, before: _Reading) -> _Sent:
        password = ctx.settings.cert_password if action.encrypt_key else None
        try:
            created = certs.generate_certificate(
                action.subject, action.out_dir, days=action.days, key_size=action.key_size, password=password
            )
        except CbaCheckError as err:
            raise FixError(f"cannot create the certificate in {str(action.out_dir)!r}: {err}") from err
        return _Sent(
            action.describe(),
            None,
            "",
            {
                "pem_path": str(created.pem_path),
                "cer_path": str(created.cer_path),
                "der_base64": created.der_base64,
                "sha1_thumbprint": created.sha1_thumbprint,
                "not_after": created.not_after.isoformat(),
            },
        )


class _CreateApplicationHandler(_Handler[CreateApplication]):
    def read(self, action: CreateApplication, ctx: _Context) -> _Reading:
        known = ctx.outputs.get(action.id, {}).get("id")
        if known:
            try:
                answer = ctx.graph.get(f"/applications/{known}", {"$select": "id,appId,displayName"})
            except GraphError as err:
                if err.status != 404:
                    raise
            else:
                body = _body(answer)
                return _Reading(True, body, {"id": body.get("id", known), "appId": body.get("appId", "")})
        if action.id in ctx.unfinished:
            # The last run sent the POST but stopped before recording its answer: adopt what it made
            # instead of registering a second app.
            escaped = action.display_name.replace("'", "''")
            answer = ctx.graph.get_all(
                "/applications", {"$filter": f"displayName eq '{escaped}'", "$select": "id,appId,displayName"}
            )
            found = answer.value
            if len(found) == 1:
                return _Reading(True, found[0], {"id": found[0].get("id"), "appId": found[0].get("appId")})
            if len(found) > 1:
                ids = ", ".join(str(item.get("appId")) for item in found)
                raise FixError(
                    f"an interrupted run may have created {action.display_name!r}, and {len(found)} apps carry that "
                    f"name ({ids}); set app_id to the right one and run again"
                )
        return _Reading(False, None)

    def perform(self, action: CreateApplication, ctx: _Context, before: _Reading) -> _Sent:
        return ctx.send("POST", "/applications", action.body())


class _CreateServicePrincipalHandler(_Handler[CreateServicePrincipal]):
    def read(self, action: CreateServicePrincipal, ctx: _Context) -> _Reading:
        app_id = ctx.value(action.app_id)
        answer = ctx.graph.get_all(
            "/servicePrincipals", {"$filter": f"appId eq '{app_id}'", "$select": "id,appId,accountEnabled"}
        )
        found = answer.value
        if found:
            return _Reading(True, found[0], {"id": found[0].get("id")})
        return _Reading(False, None)

    def perform(self, action: CreateServicePrincipal, ctx: _Context, before: _Reading) -> _Sent:
        return ctx.send("POST", "/servicePrincipals", {"appId": ctx.value(action.app_id)})


class _EnableServicePrincipalHandler(_Handler[EnableServicePrincipal]):
    def read(self, action: EnableServicePrincipal, ctx: _Context) -> _Reading:
        body = _body(
            ctx.graph.get(f"/servicePrincipals/{action.service_principal_id}", {"$select": "id,accountEnabled"})
        )
        return _Reading(body.get("accountEnabled") is True, body, {"id": action.service_principal_id})

    def perform(self, action: EnableServicePrincipal, ctx: _Context, before: _Reading) -> _Sent:
        return ctx.send("PATCH", f"/servicePrincipals/{action.service_principal_id}", {"accountEnabled": True})


class _AddKeyCredentialHandler(_Handler[AddKeyCredential]):
    def read(self, action: AddKeyCredential, ctx: _Context) -> _Reading:
        object_id = ctx.value(action.app_object_id)
        der_base64 = ctx.value(action.certificate)
        sha1 = _sha1_of(der_base64)
        keys = _key_credentials(ctx, object_id)
        present = [key for key in keys if _key_matches(key, sha1)]
        outputs = {"sha1_thumbprint": sha1, "app_object_id": object_id}
        if present:
            outputs["key_id"] = str(present[0].get("keyId", ""))
        return _Reading(bool(present), {"keyCredentials": keys}, outputs)

    def perform(self, action: AddKeyCredential, ctx: _Context, before: _Reading) -> _Sent:
        keys = list(before.state["keyCredentials"])
        missing = _keys_without_bytes(keys)
        if missing:
            raise FixError(
                f"Graph returned key(s) {', '.join(missing)} without their bytes; a PATCH would delete them, "
                "so nothing was sent. Upload the certificate in the portal instead."
            )
        new = action.new_key(ctx.value(action.certificate))
        return ctx.send("PATCH", f"/applications/{ctx.value(action.app_object_id)}", {"keyCredentials": [*keys, new]})


def _sha1_of(der_base64: str) -> str:
    der = _decode(der_base64)
    if der is None:
        raise FixError("the certificate to upload is not valid base64 DER")
    return hashlib.sha1(der).hexdigest().upper()


def _has_role_access(entries: Iterable[Mapping[str, Any]], resource_app_id: str, role_id: str) -> bool:
    for entry in entries:
        if entry.get("resourceAppId") != resource_app_id:
            continue
        for access in entry.get("resourceAccess") or []:
            if isinstance(access, dict) and access.get("id") == role_id and access.get("type") == "Role":
                return True
    return False


class _AddRequiredResourceAccessHandler(_Handler[AddRequiredResourceAccess]):
    def read(self, action: AddRequiredResourceAccess, ctx: _Context) -> _Reading:
        object_id = ctx.value(action.app_object_id)
        answer = ctx.graph.get(f"/applications/{object_id}", {"$select": "requiredResourceAccess"})
        entries = _body(answer).get("requiredResourceAccess")
        if not isinstance(entries, list):
            raise FixError(f"GET /applications/{object_id} answered without a requiredResourceAccess list")
        entries = [dict(entry) for entry in entries if isinstance(entry, dict)]
        done = _has_role_access(entries, action.resource_app_id, action.app_role_id)
        return _Reading(done, {"requiredResourceAccess": entries})

    def perform(self, action: AddRequiredResourceAccess, ctx: _Context, before: _Reading) -> _Sent:
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


class _GrantAppRoleHandler(_Handler[GrantAppRole]):
    def read(self, action: GrantAppRole, ctx: _Context) -> _Reading:
        principal = ctx.value(action.principal_id)
        grants = ctx.graph.get_all(f"/servicePrincipals/{principal}/appRoleAssignments").value
        match = [
            g for g in grants if g.get("resourceId") == action.resource_id and g.get("appRoleId") == action.app_role_id
        ]
        outputs = {"id": match[0].get("id")} if match else {}
        return _Reading(bool(match), {"appRoleAssignments": grants}, outputs)

    def perform(self, action: GrantAppRole, ctx: _Context, before: _Reading) -> _Sent:
        principal = ctx.value(action.principal_id)
        body = {"principalId": principal, "resourceId": action.resource_id, "appRoleId": action.app_role_id}
        return ctx.send("POST", f"/servicePrincipals/{principal}/appRoleAssignments", body)


class _AssignDirectoryRoleHandler(_Handler[AssignDirectoryRole]):
    def read(self, action: AssignDirectoryRole, ctx: _Context) -> _Reading:
        principal = ctx.value(action.principal_id)
        assignments = ctx.graph.get_all(
            "/roleManagement/directory/roleAssignments", {"$filter": f"principalId eq '{principal}'"}
        ).value
        match = [
            a
            for a in assignments
            if str(a.get("roleDefinitionId", "")).lower() == action.role_definition_id
            and a.get("directoryScopeId") == "/"
            and not a.get("appScopeId")
        ]
        outputs = {"id": match[0].get("id")} if match else {}
        return _Reading(bool(match), {"roleAssignments": assignments}, outputs)

    def perform(self, action: AssignDirectoryRole, ctx: _Context, before: _Reading) -> _Sent:
        body = {
            "@odata.type": "#microsoft.graph.unifiedRoleAssignment",
            "roleDefinitionId": action.role_definition_id,
            "principalId": ctx.value(action.principal_id),
            "directoryScopeId": "/",
        }
        return ctx.send("POST", "/roleManagement/directory/roleAssignments", body)


class _RemoveKeyCredentialsHandler(_Handler[RemoveKeyCredentials]):
    def read(self, action: RemoveKeyCredentials, ctx: _Context) -> _Reading:
        keys = _key_credentials(ctx, action.app_object_id)
        still = [key for key in keys if key.get("keyId") in action.key_ids]
        return _Reading(not still, {"keyCredentials": keys})

    def perform(self, action: RemoveKeyCredentials, ctx: _Context, before: _Reading) -> _Sent:
        kept = [key for key in before.state["keyCredentials"] if key.get("keyId") not in action.key_ids]
        missing = _keys_without_bytes(kept)
        if missing:
            raise FixError(
                f"Graph returned key(s) {', '.join(missing)} without their bytes; a PATCH would delete them too, "
                "so nothing was sent. Remove the keys in the portal instead."
            )
        return ctx.send("PATCH", f"/applications/{action.app_object_id}", {"keyCredentials": kept})


_HANDLERS: Final[dict[type[Action], _Handler[Any]]] = {
    CreateCertificate: _CreateCertificateHandler(),
    CreateApplication: _CreateApplicationHandler(),
    CreateServicePrincipal: _CreateServicePrincipalHandler(),
    EnableServicePrincipal: _EnableServicePrincipalHandler(),
    AddKeyCredential: _AddKeyCredentialHandler(),
    AddRequiredResourceAccess: _AddRequiredResourceAccessHandler(),
    GrantAppRole: _GrantAppRoleHandler(),
    AssignDirectoryRole: _AssignDirectoryRoleHandler(),
    RemoveKeyCredentials: _RemoveKeyCredentialsHandler(),
}


def _described_with_values(action: Action, ctx: _Context) -> dict[str, Any]:
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
    ctx = _Context(graph, settings, dict(journal.outputs(tenant)), journal.unfinished(tenant))
    results: dict[str, ActionResult] = {}
    for action in order(actions):
        started_at = _now()
        result = _apply_one(action, ctx, results, proven, journal, progress, started_at)
        results[action.id] = result
        journal.finished(result, tenant)
        progress(f"{action.id}: {result.status}" + (f" ({result.error.splitlines()[0]})" if result.error else ""))
    return list(results.values())


def _apply_one(
    action: Action,
    ctx: _Context,
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
            base, status=SKIPPED_DEPENDENCY_FAILED, error=f"not attempted: {reasons}", finished_at=_now()
        )
    if isinstance(action, ManualStep):
        output: dict[str, Any] = {}
        if action.setting:
            try:
                output = {"setting": action.setting, "value": ctx.value(action.value)}
            except FixError as err:
                output = {"setting": action.setting, "value": "", "note": str(err)}
        return dataclasses.replace(base, request=_described_with_values(action, ctx), output=output, finished_at=_now())
    waiting = [dep for dep in getattr(action, "requires_verified", ()) if dep not in proven]
    if waiting:
        return dataclasses.replace(
            base,
            status=WAITING_FOR_VERIFICATION,
            request=_described_with_values(action, ctx),
            error=f"waits until {', '.join(waiting)} is proven to work",
            finished_at=_now(),
        )
    handler = _HANDLERS[type(action)]
    before: _Reading | None = None
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
                output=_report_output(ctx.outputs[action.id]),
                finished_at=_now(),
            )
        request = _described_with_values(action, ctx)
        journal.started(action, ctx.settings.tenant or "", request)
        progress(f"{action.id}: {request.get('method', '')} {request.get('path', '')}".rstrip())
        sent = handler.perform(action, ctx, before)
        created = {key: value for key, value in sent.outputs.items() if value}
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
            output=_report_output(ctx.outputs[action.id]),
            finished_at=_now(),
        )
    except GraphError as err:
        return _failed_or_raced(action, ctx, handler, base, before, err, err.code, err.status, err.request_id)
    except CbaCheckError as err:
        return _failed_or_raced(action, ctx, handler, base, before, err, type(err).__name__, None, "")


def _failed_or_raced(
    action: Action,
    ctx: _Context,
    handler: _Handler[Any],
    base: ActionResult,
    before: _Reading | None,
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
                    output=_report_output(ctx.outputs[action.id]),
                    finished_at=_now(),
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
        finished_at=_now(),
    )


def settings_after(settings: Settings, results: Iterable[ActionResult]) -> Settings:
    """Settings with the values manual steps name once their actions ran (new app_id, new certificate)."""
    changes: dict[str, Any] = {}
    for result in results:
        setting = result.output.get("setting")
        value = result.output.get("value")
        if result.status == MANUAL and setting in ("app_id", "cert") and value:
            changes[str(setting)] = Path(str(value)) if setting == "cert" else str(value)
    if not changes:
        return settings
    sources = {**settings.sources, **dict.fromkeys(changes, "fix")}
    return dataclasses.replace(settings, **changes, sources=sources)


# --- verifying and waiting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One applied action's effect, checked in the effective state; `check(round)` is None once visible."""

    action_id: str
    waiting_for: str
    check: Callable[[int], str | None]


@dataclass(frozen=True)
class ProbeResult:
    action_id: str
    status: str  # "verified" or "pending propagation"
    waited_s: float
    waiting_for: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "status": self.status,
            "waited_s": round(self.waited_s, 1),
            "waiting_for": self.waiting_for,
            "detail": self.detail,
        }


def wait_for_propagation(
    probes: Sequence[Probe],
    *,
    timeout_s: float,
    progress: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[ProbeResult]:
    """Check each probe until its effect shows or the timeout passes, backing off 2, 4, 8 ... 30 s.

    A new key, consent or role can take minutes to reach tokens; an effect not seen in time is
    "pending propagation", which is not the same as broken (a request that failed).
    """
    started = clock()
    pending = list(probes)
    finished: dict[str, ProbeResult] = {}
    last_missing: dict[str, str] = {}
    delay = FIRST_DELAY_S
    round_number = 0
    while True:
        for probe in list(pending):
            try:
                missing = probe.check(round_number)
            except CbaCheckError as err:
                missing = f"could not check: {err}"
            if missing is None:
                finished[probe.action_id] = ProbeResult(probe.action_id, VERIFIED, clock() - started, probe.waiting_for)
                pending.remove(probe)
            else:
                last_missing[probe.action_id] = missing
        elapsed = clock() - started
        if not pending or elapsed >= timeout_s:
            break
        pause = min(delay, MAX_DELAY_S, timeout_s - elapsed)
        waiting = "; ".join(probe.waiting_for for probe in pending)
        progress(f"waiting for {waiting} ({int(elapsed)} s of {int(timeout_s)} s)")
        sleep(pause)
        delay = min(delay * 2, MAX_DELAY_S)
        round_number += 1
    waited = clock() - started
    for probe in pending:
        finished[probe.action_id] = ProbeResult(
            probe.action_id, PENDING_PROPAGATION, waited, probe.waiting_for, last_missing.get(probe.action_id, "")
        )
    return [finished[probe.action_id] for probe in probes]


class FactsPerRound:
    """Collects tenant facts at most once per probing round, however many probes read them."""

    def __init__(self, collect: Callable[[], TenantFacts]) -> None:
        self.collect = collect
        self._round: int | None = None
        self._facts: TenantFacts | None = None

    def __call__(self, round_number: int) -> TenantFacts:
        if self._facts is None or self._round != round_number:
            self._facts = self.collect()
            self._round = round_number
        return self._facts


TokenWith = Callable[[Path, str | None], TokenAttempt | Unavailable]


def token_with_certificate(settings: Settings, session: requests.Session) -> TokenWith:
    """A function asking for the app's Exchange token with a given certificate file (for key probes)."""
    from cbacheck import tokens

    def attempt(path: Path, password: str | None) -> TokenAttempt | Unavailable:
        try:
            material: certs.SigningMaterial | CertificateError = certs.load_signing_material(
                path, password, CREATED_BY_FIX
            )
        except CertificateError as err:
            material = err
        return tokens.attempt_app_token(settings, session, material)

    return attempt


def _token_missing(attempt: TokenAttempt | Unavailable) -> str | None:
    if isinstance(attempt, Unavailable):
        return str(attempt)
    if attempt.acquired:
        return None
    code = f"AADSTS{attempt.aadsts}: " if attempt.aadsts else ""
    return f"no token yet: {code}{attempt.error_description or attempt.error}"


def _app_fact(facts: TenantFacts) -> AppRegistration | None:
    return facts.app if isinstance(facts.app, AppRegistration) else None


def _sp_fact(facts: TenantFacts) -> ServicePrincipal | None:
    return facts.app_sp if isinstance(facts.app_sp, ServicePrincipal) else None


def effect_probes(
    actions: Sequence[Action],
    results: Sequence[ActionResult],
    *,
    settings: Settings,
    collect: Callable[[], TenantFacts],
    token_with: TokenWith,
) -> list[Probe]:
    """A probe per action that changed (or found) something, checking its effect where it counts."""
    facts = FactsPerRound(collect)
    by_id = {result.action_id: result for result in results}
    outputs = {result.action_id: dict(result.output) for result in results}
    probes: list[Probe] = []
    for action in actions:
        result = by_id.get(action.id)
        if result is None or not result.done:
            continue
        probe = _probe_for(action, result, outputs, settings, facts, token_with)
        if probe is not None:
            probes.append(probe)
    return probes


def _probe_for(
    action: Action,
    result: ActionResult,
    outputs: Mapping[str, Mapping[str, Any]],
    settings: Settings,
    facts: FactsPerRound,
    token_with: TokenWith,
) -> Probe | None:
    if isinstance(action, CreateApplication):

        def app_exists(round_number: int) -> str | None:
            return None if _app_fact(facts(round_number)) is not None else "the new application is not visible yet"

        return Probe(action.id, "the new application to be visible", app_exists)
    if isinstance(action, CreateServicePrincipal | EnableServicePrincipal):

        def sp_enabled(round_number: int) -> str | None:
            sp = _sp_fact(facts(round_number))
            if sp is None:
                return "the service principal is not visible yet"
            return None if sp.account_enabled else "the service principal is still disabled"

        return Probe(action.id, "the service principal to exist and be enabled", sp_enabled)
    if isinstance(action, AddKeyCredential):
        return _key_probe(action, outputs, settings, token_with)
    if isinstance(action, AddRequiredResourceAccess):

        def configured(round_number: int) -> str | None:
            app = _app_fact(facts(round_number))
            if app is None:
                return "the application is not visible"
            if app.requests_app_role(action.resource_app_id, action.app_role_id):
                return None
            return "requiredResourceAccess does not list it (as an application permission, type Role) yet"

        return Probe(action.id, f"{wellknown.EXCHANGE_MANAGE_AS_APP} in requiredResourceAccess", configured)
    if isinstance(action, GrantAppRole):

        def in_roles(round_number: int) -> str | None:
            token, missing = _acquired_token(facts(round_number))
            if missing:
                return missing
            roles = token_roles(token)
            return None if action.app_role_name in roles else f"token roles are {list(roles)}"

        return Probe(action.id, f"{action.app_role_name} to appear in the token", in_roles)
    if isinstance(action, AssignDirectoryRole):

        def in_wids(round_number: int) -> str | None:
            token, missing = _acquired_token(facts(round_number))
            if missing:
                return missing
            wids = token_wids(token)
            return None if action.role_definition_id in wids else f"token wids are {list(wids)}"

        return Probe(action.id, f"{action.role_name} to appear in the token's wids", in_wids)
    if isinstance(action, RemoveKeyCredentials):

        def removed(round_number: int) -> str | None:
            app = _app_fact(facts(round_number))
            if app is None:
                return "the application is not visible"
            left = [key.key_id for key in app.key_credentials if key.key_id in action.key_ids]
            return None if not left else f"key(s) {', '.join(left)} still listed"

        return Probe(action.id, "the removed keys to disappear", removed)
    return None  # CreateCertificate: its files were read back right after the write


def _acquired_token(tenant: TenantFacts) -> tuple[TokenAttempt | Unavailable, str | None]:
    """The app's token attempt this round, and why it has no token (None when it has one)."""
    token = tenant.token
    return token, (_token_missing(token) if not isinstance(token, Unavailable) else str(token))


def _key_probe(
    action: AddKeyCredential, outputs: Mapping[str, Mapping[str, Any]], settings: Settings, token_with: TokenWith
) -> Probe | None:
    if isinstance(action.certificate, Ref):
        created = outputs.get(action.certificate.action_id, {})
        path_text = created.get("pem_path")
        if not path_text:
            return None
        new_path = Path(str(path_text))
    elif settings.cert is not None:
        new_path = settings.cert
    else:
        return None
    password = settings.cert_password
    old_path = settings.cert if action.prove_old_certificate and settings.cert != new_path else None

    def both_sign_in(round_number: int) -> str | None:
        missing = _token_missing(token_with(new_path, password))
        if missing:
            return f"new key: {missing}"
        if old_path is not None:
            old_missing = _token_missing(token_with(old_path, password))
            if old_missing:
                return f"old key: {old_missing}"
        return None

    what = "the new key to get a token" + (" (and the old one still to work)" if old_path is not None else "")
    return Probe(action.id, what, both_sign_in)


def verdicts(results: Sequence[ActionResult], probe_results: Sequence[ProbeResult]) -> dict[str, str]:
    """Per action: verified, pending propagation, broken (the request failed), or its apply status."""
    probed = {probe.action_id: probe.status for probe in probe_results}
    out: dict[str, str] = {}
    for result in results:
        if result.status == FAILED:
            out[result.action_id] = BROKEN
        elif result.action_id in probed:
            out[result.action_id] = probed[result.action_id]
        elif result.done:
            out[result.action_id] = VERIFIED
        else:
            out[result.action_id] = result.status
    return out


# --- the whole fix: apply, wait, finish what waited for proof ---------------------------------------------


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
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> FixRun:
    """`--fix apply` after evaluation: plan from the results, check the admin identity, ask, apply, wait, verify.

    Raises FixError, before anything changes, when there is no admin identity or no yes.
    """
    from cbacheck.collection import collect
    from cbacheck.transport import build_session

    actions = plan(settings, tenant_facts, cert_facts, failed_ids(requirements))
    if not any(action.automated for action in actions):
        return FixRun(tuple(actions), (), (), settings)
    active = session or build_session(settings)
    graph = admin_graph_client(settings, active)
    confirm_apply(actions, assume_yes=settings.yes, interactive=interactive, ask=ask)
    return apply_and_verify(
        actions,
        graph,
        settings,
        journal=Journal(journal_path(settings)),
        progress=progress,
        collect=lambda current: collect(current, session=active),
        token_with=lambda current: token_with_certificate(current, active),
        sleep=sleep,
        clock=clock,
    )
