"""Microsoft Graph client: requests, paging, JSON $batch, writes, and GraphError naming the permission a 403 means."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import requests

from cbacheck.collect.transport import MAX_RETRY_AFTER_S, send, stats_of, trusted_target, writes_session
from cbacheck.errors import GraphError
from cbacheck.facts import Source

# https://learn.microsoft.com/graph/json-batching: at most 20 requests per $batch.
BATCH_LIMIT = 20
EXCERPT_CHARS = 200

# Least-privileged application permission each read needs (https://learn.microsoft.com/graph/permissions-reference);
# the first matching prefix wins.
READ_PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("roleManagement/directory/roleEligibilit", "RoleManagement.Read.Directory"),
    ("roleManagement/", "RoleManagement.Read.Directory"),
    ("applications", "Application.Read.All"),
    ("servicePrincipals", "Application.Read.All"),
    ("appRoleAssignments", "Application.Read.All"),
    # By id, Organization.Read.All is documented (organization-get); the list names Directory.Read.All.
    ("organization/", "Organization.Read.All"),
    ("organization", "Organization.Read.All or Directory.Read.All"),
    ("domains", "Domain.Read.All"),
)
# Writes the fixers make, mapped to the admin permission that allows them (wellknown.ADMIN_PERMISSIONS).
WRITE_PERMISSIONS: tuple[tuple[str, str], ...] = (
    # Granting an app role needs both (https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignments).
    ("appRoleAssign", "AppRoleAssignment.ReadWrite.All and Application.Read.All"),
    ("roleManagement/", "RoleManagement.ReadWrite.Directory"),
    ("applications", "Application.ReadWrite.All"),
    ("servicePrincipals", "Application.ReadWrite.All"),
)


class TokenProvider(Protocol):
    """Gives a bearer token for a scope; implementations cache tokens for the run."""

    def token(self, scope: str) -> str: ...


@dataclass(frozen=True)
class GraphResponse:
    """One Graph answer: status, parsed JSON body, headers, and the request that produced it."""

    status: int
    body: Any
    headers: Mapping[str, str]
    source: Source

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> GraphError:
        """The GraphError this answer stands for (for batch items, which do not raise on their own)."""
        return error_from_answer(self.source.method, self.source.url, self.status, self.body, self.headers)

    def raise_for_error(self) -> GraphResponse:
        if not self.ok:
            raise self.error()
        return self

    @property
    def value(self) -> list[Any]:
        """The `value` collection of a list answer ([] when there is none)."""
        items = self.body.get("value") if isinstance(self.body, dict) else None
        return list(items) if isinstance(items, list) else []


@dataclass(frozen=True)
class BatchRequest:
    """One request inside a JSON $batch; `url` is relative to the version root ("/applications(...)")."""

    id: str
    url: str
    method: str = "GET"
    body: Any = None
    depends_on: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.id, "method": self.method, "url": self.url}
        headers = dict(self.headers)
        if self.body is not None:
            item["body"] = self.body
            headers.setdefault("Content-Type", "application/json")
        if headers:
            item["headers"] = headers
        if self.depends_on:
            item["dependsOn"] = list(self.depends_on)
        return item


def permission_for(method: str, path: str) -> str:
    """The Graph application permission a 403 on this request most likely means ("" when unknown)."""
    route = urlsplit(path).path
    for marker in ("/v1.0/", "/beta/"):
        if marker in route:
            route = route.split(marker, 1)[1]
    route = route.lstrip("/")
    table = READ_PERMISSIONS if method.upper() == "GET" else WRITE_PERMISSIONS
    for prefix, permission in table:
        if route.startswith(prefix) or f"/{prefix}" in route:
            return permission
    return ""


def excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:EXCERPT_CHARS] + ("..." if len(flat) > EXCERPT_CHARS else "")


def error_from_answer(method: str, url: str, status: int, body: Any, headers: Mapping[str, str]) -> GraphError:
    """GraphError from Graph's error envelope, or InvalidResponse when there is none.

    The envelope: https://learn.microsoft.com/graph/errors
    """
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        shown = body if isinstance(body, str) else json.dumps(body)[:EXCERPT_CHARS] if body is not None else ""
        return GraphError(
            method,
            url,
            status,
            "InvalidResponse",
            f"the answer is not Graph's error JSON: {excerpt(shown)!r}" if shown else "the answer has no body",
            request_id=headers.get("request-id", ""),
            client_request_id=headers.get("client-request-id", ""),
            hint=hint_for(method, url, status),
            body=body,
        )
    inner = error.get("innerError") or error.get("innererror") or {}
    inner = inner if isinstance(inner, dict) else {}
    return GraphError(
        method,
        url,
        status,
        str(error.get("code", "")) or "UnknownError",
        str(error.get("message", "")),
        request_id=str(inner.get("request-id") or headers.get("request-id", "")),
        client_request_id=str(inner.get("client-request-id") or headers.get("client-request-id", "")),
        date=str(inner.get("date", "")),
        hint=hint_for(method, url, status),
        body=body,
    )


def hint_for(method: str, url: str, status: int | None) -> str:
    if status == 403:
        permission = permission_for(method, url)
        if permission:
            who = "the auditor" if method.upper() == "GET" else "the admin identity"
            noun = "permissions" if " and " in permission else "permission"
            return f"{who} needs the Graph application {noun} {permission} (with admin consent) for this request."
        return "the signed-in identity lacks a Graph permission for this request."
    if status == 401:
        return "Graph refused the token: check the auditor's credential and that it was issued for Microsoft Graph."
    if status == 429:
        return "Graph is throttling this tenant; wait a minute and run again."
    if status is not None and status >= 500:
        return "Graph had a server error; run again later."
    return ""


def _lower_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


class GraphClient:
    """Microsoft Graph v1.0 over one requests.Session, recording every request in the session's log.

    `base_url` is the Graph root ("https://graph.microsoft.com"); "/v1.0" is added unless the URL
    already ends in a version. `scope` defaults to "<origin of base_url>/.default".
    """

    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        session: requests.Session,
        *,
        batching: bool = True,
        scope: str | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        if not root.endswith(("/v1.0", "/beta")):
            root += "/v1.0"
        self.base_url = root
        parts = urlsplit(root)
        self.scope = scope or f"{parts.scheme}://{parts.netloc}/.default"
        self.token_provider = token_provider
        self.session = session
        self.batching = batching
        self.stats = stats_of(session)

    # --- public API -----------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, str] | None = None) -> GraphResponse:
        """GET one resource; non-2xx raises GraphError."""
        return self._request("GET", self._url(path, params)).raise_for_error()

    def get_all(self, path: str, params: Mapping[str, str] | None = None) -> GraphResponse:
        """GET a collection, following `@odata.nextLink` (same origin over https only), every page's `value` merged."""
        first = self.get(path, params)
        return self.follow_pages(first)

    def follow_pages(self, first: GraphResponse) -> GraphResponse:
        """Merge the pages after `first` (which may come from a batch) into one answer.

        A nextLink carries the bearer token and its answer becomes a fact, so it is followed only
        where `transport.trusted_target` allows; any other link makes the whole list unverifiable.
        """
        items = first.value
        page = first
        seen: set[str] = set()
        while isinstance(page.body, dict) and isinstance(page.body.get("@odata.nextLink"), str):
            next_link = page.body["@odata.nextLink"]
            if next_link in seen:  # a server looping on one page would otherwise never end
                raise GraphError("GET", next_link, page.status, "InvalidResponse", "the same nextLink came back twice")
            if not trusted_target(self.base_url, next_link):
                raise GraphError(
                    "GET",
                    first.source.url,
                    page.status,
                    "UntrustedNextLink",
                    f"the next page is at {next_link!r}, outside {self.base_url} over https; it was not followed",
                    hint="check graph_url and any proxy between cbacheck and Graph.",
                )
            seen.add(next_link)
            page = self._request("GET", next_link).raise_for_error()
            items.extend(page.value)
        body = dict(first.body) if isinstance(first.body, dict) else {}
        body.pop("@odata.nextLink", None)
        body["value"] = items
        return GraphResponse(first.status, body, first.headers, first.source)

    def send(self, method: str, path: str, body: Any = None) -> GraphResponse:
        """A write (POST, PATCH, DELETE); never repeated once sent; non-2xx raises GraphError."""
        return self._request(method.upper(), self._url(path, None), body=body, writes=True).raise_for_error()

    def batch(self, requests_: Sequence[BatchRequest]) -> dict[str, GraphResponse]:
        """Run requests as JSON $batch (20 per round trip), keyed by id; items carry their own status.

        A 429 on an item is retried once after its Retry-After. With batching off, each request is
        sent on its own, in dependency order. Only a failure of the $batch request itself raises.
        """
        ids = [r.id for r in requests_]
        if len({i.lower() for i in ids}) != len(ids):
            raise ValueError(f"batch request ids must be unique: {ids}")
        if not self.batching:
            return self._one_by_one(requests_)
        answers: dict[str, GraphResponse] = {}
        for chunk in chunk_batch(requests_):
            answers.update(self._batch_round_trip(chunk))
        return answers

    # --- internals ------------------------------------------------------------------------------

    def _url(self, path: str, params: Mapping[str, str] | None) -> str:
        url = path if path.startswith(("https://", "http://")) else f"{self.base_url}/{path.lstrip('/')}"
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, safe="$'(),=")
        return url

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_provider.token(self.scope)}", "Accept": "application/json"}

    def _request(self, method: str, url: str, *, body: Any = None, writes: bool = False) -> GraphResponse:
        session = writes_session(self.session) if writes else self.session
        headers = self._headers()
        self.stats.count("graph_round_trips")
        self.stats.count("graph_requests")
        sent = send(session, method, url, headers=headers, json=body)
        if sent.response is None:
            assert sent.failure is not None
            raise self._no_answer(method, url, sent.failure) from sent.failure
        return self._answer(method, url, sent.response, sent.source)

    def _no_answer(self, method: str, url: str, err: requests.RequestException) -> GraphError:
        host = urlsplit(url).netloc
        if isinstance(err, requests.Timeout):
            what = "timed out"
        elif isinstance(err, requests.ConnectionError):
            # Read timeouts that outlast the retries arrive as ConnectionError(MaxRetryError(ReadTimeoutError)).
            what = "timed out" if "timed out" in str(err).lower() else "could not connect"
        else:
            what = "failed"
        return GraphError(
            method,
            url,
            None,
            "NoResponse",
            f"{what}: no answer from {host} ({type(err).__name__}, {self.stats.retries} retries in this run)",
            hint=(
                f"check the network path to {host} (proxy, firewall, DNS), that graph_url is right, "
                "and raise timeout_s if the tenant is slow."
            ),
        )

    def _answer(self, method: str, url: str, response: requests.Response, source: Source) -> GraphResponse:
        headers = _lower_headers(response.headers)
        if response.is_redirect:
            # Not followed by the session (another origin, or not https): its answer would decide a fact.
            raise GraphError(
                method,
                url,
                response.status_code,
                "Redirected",
                f"Graph redirected to {headers.get('location', '')!r}, which cbacheck does not follow "
                "(only the same origin over https)",
                request_id=source.request_id,
                hint="check graph_url and any proxy between cbacheck and Graph.",
            )
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except ValueError as err:
                raise GraphError(
                    method,
                    url,
                    response.status_code,
                    "InvalidResponse",
                    f"the answer is not JSON: {excerpt(response.text)!r}",
                    request_id=source.request_id,
                    hint="check that graph_url points at Microsoft Graph (not a proxy or login page).",
                    body=excerpt(response.text),
                ) from err
        return GraphResponse(response.status_code, body, headers, source)

    def _batch_round_trip(self, chunk: Sequence[BatchRequest]) -> dict[str, GraphResponse]:
        answers = self._post_batch(chunk)
        throttled = [r for r in chunk if answers[r.id].status == 429]
        if throttled:
            waits = [retry_after_s(answers[r.id].headers) for r in throttled]
            self.stats.count("retries")
            self.stats.pause(max(waits))
            answers.update(self._post_batch(throttled, retry=True))
        return answers

    def _post_batch(self, chunk: Sequence[BatchRequest], *, retry: bool = False) -> dict[str, GraphResponse]:
        batch_ids = {r.id for r in chunk}
        items = []
        for request in chunk:
            item = request.as_json()
            # On the retry of throttled items, drop dependencies that already ran in the first batch.
            if retry and request.depends_on:
                kept = [d for d in request.depends_on if d in batch_ids]
                if kept:
                    item["dependsOn"] = kept
                else:
                    item.pop("dependsOn", None)
            items.append(item)
        writes = any(r.method.upper() != "GET" for r in chunk)
        outer = self._request("POST", f"{self.base_url}/$batch", body={"requests": items}, writes=writes)
        outer.raise_for_error()
        self.stats.count("graph_requests", len(chunk) - 1)  # the outer POST was counted once already
        responses_ = outer.body.get("responses") if isinstance(outer.body, dict) else None
        if not isinstance(responses_, list):
            raise GraphError(
                "POST",
                outer.source.url,
                outer.status,
                "InvalidResponse",
                f"the $batch answer has no 'responses' list: {excerpt(json.dumps(outer.body))!r}",
                request_id=outer.source.request_id,
                body=outer.body,
            )
        by_id = {str(r.get("id")): r for r in responses_ if isinstance(r, dict)}
        answers: dict[str, GraphResponse] = {}
        for request in chunk:
            item_url = f"{self.base_url}{request.url if request.url.startswith('/') else '/' + request.url}"
            raw = by_id.get(request.id)
            body: Any
            if raw is None:
                status, headers = 502, {}
                missing = f"the $batch answer has no item {request.id!r}"
                body = {"error": {"code": "InvalidResponse", "message": missing}}
            else:
                status = int(raw.get("status", 502))
                body = raw.get("body")
                headers = _lower_headers(raw.get("headers") or {})
            source = Source(
                request.method,
                item_url,
                status,
                request_id=headers.get("request-id", "") or outer.source.request_id,
                elapsed_ms=outer.source.elapsed_ms,
                at=outer.source.at,
                batched=True,
            )
            self.stats.sources.append(source)
            answers[request.id] = GraphResponse(status, body, headers, source)
        return answers

    def _one_by_one(self, requests_: Sequence[BatchRequest]) -> dict[str, GraphResponse]:
        answers: dict[str, GraphResponse] = {}
        for request in dependency_order(requests_):
            failed = [d for d in request.depends_on if d in answers and not answers[d].ok]
            url = self._url(request.url, None)
            if failed:
                # What Graph's $batch answers when a dependency failed.
                answers[request.id] = GraphResponse(
                    424,
                    {"error": {"code": "FailedDependency", "message": f"depends on failed request {failed[0]!r}"}},
                    {},
                    Source(request.method, url, 424),
                )
                continue
            answers[request.id] = self._request(
                request.method, url, body=request.body, writes=request.method.upper() != "GET"
            )
        return answers


def retry_after_s(headers: Mapping[str, str]) -> float:
    """Retry-After in seconds (capped); a short default when Graph sent none or an odd value."""
    raw = headers.get("retry-after", "")
    try:
        return min(max(float(raw), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return 1.0


def dependency_order(requests_: Sequence[BatchRequest]) -> list[BatchRequest]:
    """Requests ordered so each comes after what it depends on (input order otherwise)."""
    by_id = {r.id: r for r in requests_}
    ordered: list[BatchRequest] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(request: BatchRequest) -> None:
        if request.id in placed:
            return
        if request.id in visiting:
            raise ValueError(f"batch requests depend on each other in a cycle through {request.id!r}")
        visiting.add(request.id)
        for dependency in request.depends_on:
            if dependency not in by_id:
                raise ValueError(f"batch request {request.id!r} depends on unknown id {dependency!r}")
            place(by_id[dependency])
        visiting.discard(request.id)
        placed.add(request.id)
        ordered.append(request)

    for request in requests_:
        place(request)
    return ordered


def chunk_batch(requests_: Sequence[BatchRequest]) -> list[list[BatchRequest]]:
    """Split into $batch chunks of at most 20, keeping each dependency group in one chunk."""
    ordered = dependency_order(requests_)
    group_of: dict[str, int] = {}
    groups: list[list[BatchRequest]] = []
    for request in ordered:
        joined = {group_of[d] for d in request.depends_on}
        if not joined:
            group_of[request.id] = len(groups)
            groups.append([request])
            continue
        target = min(joined)
        for other in sorted(joined - {target}, reverse=True):
            groups[target].extend(groups[other])
            for moved in groups[other]:
                group_of[moved.id] = target
            groups[other] = []
        groups[target].append(request)
        group_of[request.id] = target
    chunks: list[list[BatchRequest]] = []
    for group in filter(None, groups):
        if len(group) > BATCH_LIMIT:
            raise ValueError(f"{len(group)} batch requests depend on each other; a $batch holds {BATCH_LIMIT}")
        if chunks and len(chunks[-1]) + len(group) <= BATCH_LIMIT:
            chunks[-1].extend(group)
        else:
            chunks.append(list(group))
    return [dependency_order(chunk) for chunk in chunks]
