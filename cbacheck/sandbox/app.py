"""The sandbox's WSGI application: one werkzeug app for login, Graph and Exchange, with the realism knobs."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from cbacheck.sandbox.adminapi import AdminApiService
from cbacheck.sandbox.entra import DiscoveryService, TokenService, TokenSigner
from cbacheck.sandbox.exchange import ExchangeService
from cbacheck.sandbox.graph import GraphService
from cbacheck.sandbox.graph.errors import error_response_body
from cbacheck.sandbox.response import Call, json_response
from cbacheck.sandbox.state import TenantState

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("cbacheck.sandbox")

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
_DRAIN_LIMIT: Final = 64 * 1024 * 1024
RETRY_AFTER_S: Final = 1


class SandboxStats:
    """Live request counters (thread-safe)."""

    FIELDS: Final = ("token_requests", "graph_requests", "graph_batch_items", "exchange_requests", "faults")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(self.FIELDS, 0)

    @property
    def token_requests(self) -> int:
        return self.snapshot()["token_requests"]

    @property
    def graph_requests(self) -> int:
        return self.snapshot()["graph_requests"]

    @property
    def graph_batch_items(self) -> int:
        return self.snapshot()["graph_batch_items"]

    @property
    def exchange_requests(self) -> int:
        return self.snapshot()["exchange_requests"]

    @property
    def faults(self) -> int:
        return self.snapshot()["faults"]


class FaultInjector:
    """Answers a share of Graph and Exchange requests with 429 or 503, the same on every run."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> int | None:
        if self.rate <= 0:
            return None
        with self._lock:
            hit = self._random.random() < self.rate
            kind = self._random.random()
        if not hit:
            return None
        return 429 if kind < 0.5 else 503


class QuietHandler(WSGIRequestHandler):
    """Request handler that logs to the cbacheck.sandbox logger instead of stderr.

    Nagle's algorithm is off: werkzeug writes headers and body as separate TLS records and
    closes every connection, so with Nagle on each request waits for a delayed ACK.
    """

    disable_nagle_algorithm = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s %s", self.command, self.path, code)

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug(message, *args)


def login_and_exchange_routes() -> Map:
    """The routes outside Graph: Entra ID's discovery, JWKS and token endpoints, and Exchange's admin API."""
    return Map(
        [
            Rule("/<tenant>/v2.0/.well-known/openid-configuration", endpoint="discovery", methods=["GET"]),
            Rule("/<tenant>/discovery/v2.0/keys", endpoint="jwks", methods=["GET"]),
            Rule("/<tenant>/discovery/keys", endpoint="jwks", methods=["GET"]),
            Rule("/<tenant>/oauth2/v2.0/token", endpoint="token", methods=["POST"]),
            Rule("/adminapi/beta/<tenant>/InvokeCommand", endpoint="exchange", methods=["POST"]),
            Rule("/adminapi/v2.0/<tenant>/<name>", endpoint="adminapi", methods=["POST"]),
        ],
        strict_slashes=False,
    )


class SandboxApp:
    """The WSGI application: routing, body limit, faults, latency, stats and a catch-all."""

    def __init__(
        self,
        state: TenantState,
        signer: TokenSigner,
        stats: SandboxStats,
        *,
        latency_ms: int = 0,
        faults: FaultInjector | None = None,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.state = state
        self.stats = stats
        self.latency_s = latency_ms / 1000.0
        self.faults = faults or FaultInjector(0.0, 1)
        self.max_body = max_body
        self.discovery = DiscoveryService(state, signer)
        self.tokens = TokenService(state, signer)
        self.graph = GraphService(state, signer)
        self.graph.count_batch_item = lambda: stats.add("graph_batch_items")
        self.exchange = ExchangeService(state, signer)
        self.adminapi = AdminApiService(state, signer, self.exchange)
        self.routes = login_and_exchange_routes().bind("sandbox", "/")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = self.max_body
        call = Call.for_request(request)
        try:
            response = self.dispatch(request, call)
        except Exception:  # the WSGI boundary: never let one request take the server down
            log.exception("sandbox: unhandled error for %s %s", request.method, request.path)
            response = json_response(error_response_body("internal", call), 500)
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        response.headers["request-id"] = call.request_id
        response.headers["client-request-id"] = call.client_request_id
        return response(environ, start_response)

    def dispatch(self, request: Request, call: Call) -> Response:
        path = request.path
        is_graph = path == "/v1.0" or path.startswith(("/v1.0/", "/beta/"))
        is_exchange = path.startswith("/adminapi/")
        self._count(path, is_graph, is_exchange)
        too_large = self._too_large(request, call)
        if too_large is not None:
            return too_large
        if is_graph or is_exchange:
            fault = self.faults.draw()
            if fault is not None:
                self.stats.add("faults")
                return self._fault(fault, call)
        if is_graph:
            headers = dict(request.headers.items())
            result = self.graph.handle(request.method, path, request.args, headers, request.get_data(), call)
            return json_response(result.body, result.status, headers=result.headers)
        try:
            endpoint, args = self.routes.match(path, request.method)
        except NotFound:
            return json_response(error_response_body("no_segment", call, segment=path), 404)
        except MethodNotAllowed:
            return json_response(error_response_body("method_not_allowed", call), 405)
        tenant = str(args["tenant"])
        if endpoint == "discovery":
            return self.discovery.openid_configuration(request, call, tenant)
        if endpoint == "jwks":
            return self.discovery.jwks(request, call, tenant)
        if endpoint == "token":
            return self.tokens.token(request, call, tenant)
        if endpoint == "adminapi":
            return self.adminapi.invoke(request, call, tenant, str(args["name"]))
        return self.exchange.invoke(request, call, tenant)

    def _count(self, path: str, is_graph: bool, is_exchange: bool) -> None:
        if is_graph:
            self.stats.add("graph_requests")
        elif is_exchange:
            self.stats.add("exchange_requests")
        elif path.endswith("/oauth2/v2.0/token"):
            self.stats.add("token_requests")

    def _too_large(self, request: Request, call: Call) -> Response | None:
        length = request.content_length
        if length is None or length <= self.max_body:
            return None
        # Read and drop the body so the client sees the answer instead of a reset connection.
        stream = request.environ["wsgi.input"]
        remaining = min(length, _DRAIN_LIMIT)
        while remaining > 0:
            chunk = stream.read(min(65536, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
        body = error_response_body("too_large", call, length=length, limit=self.max_body)
        return json_response(body, 413, headers={"Connection": "close"})

    def _fault(self, status: int, call: Call) -> Response:
        if status == 429:
            body = error_response_body("too_many_requests", call, tenant_id=self.state.tenant_id)
        else:
            body = error_response_body("service_unavailable", call)
        return json_response(body, status, headers={"Retry-After": str(RETRY_AFTER_S)})
