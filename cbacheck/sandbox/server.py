"""The sandbox server: one werkzeug WSGI app for login, Graph and Exchange, served threaded over TLS."""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trustme
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from cbacheck.sandbox.exchange import ExchangeService
from cbacheck.sandbox.graphapi import GraphService, error_body
from cbacheck.sandbox.identity import IdentityService, TokenSigner
from cbacheck.sandbox.response import Call, json_response
from cbacheck.sandbox.scenario import Identity, Scenario, build, load_scenario
from cbacheck.sandbox.state import (
    JsonObject,
    SandboxError,
    TenantState,
    load_state_file,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("cbacheck.sandbox")

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
_DRAIN_LIMIT: Final = 64 * 1024 * 1024
RETRY_AFTER_S: Final = 1


@dataclass(frozen=True)
class SandboxInfo:
    """Where a running sandbox listens and how to trust it; ``as_dict`` is the ready line."""

    login_url: str
    graph_url: str
    exchange_url: str
    ca_bundle: str
    tenant_id: str
    initial_domain: str
    tenant: str = ""
    organization: str = ""
    scenario: str = ""
    port: int = 0
    pid: int = 0
    identities: Mapping[str, Mapping[str, str]] = field(default_factory=dict, hash=False)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["identities"] = {k: dict(v) for k, v in self.identities.items()}
        return out


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


class _QuietHandler(WSGIRequestHandler):
    """Request handler that logs to the cbacheck.sandbox logger instead of stderr.

    Nagle's algorithm is off: werkzeug writes headers and body as separate TLS records and
    closes every connection, so with Nagle on each request waits for a delayed ACK.
    """

    disable_nagle_algorithm = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s %s", self.command, self.path, code)

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug(message, *args)


def _identity_map() -> Map:
    return Map(
        [
            Rule("/<tenant>/v2.0/.well-known/openid-configuration", endpoint="discovery", methods=["GET"]),
            Rule("/<tenant>/discovery/v2.0/keys", endpoint="jwks", methods=["GET"]),
            Rule("/<tenant>/discovery/keys", endpoint="jwks", methods=["GET"]),
            Rule("/<tenant>/oauth2/v2.0/token", endpoint="token", methods=["POST"]),
            Rule("/adminapi/beta/<tenant>/InvokeCommand", endpoint="exchange", methods=["POST"]),
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
        self.identity = IdentityService(state, signer)
        self.graph = GraphService(state, signer)
        self.graph.count_batch_item = lambda: stats.add("graph_batch_items")
        self.exchange = ExchangeService(state, signer)
        self.routes = _identity_map().bind("sandbox", "/")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = self.max_body
        call = Call.for_request(request)
        try:
            response = self.dispatch(request, call)
        except Exception:  # the WSGI boundary: never let one request take the server down
            log.exception("sandbox: unhandled error for %s %s", request.method, request.path)
            response = json_response(
                error_body("InternalServerError", "The sandbox failed to process the request.", call), 500
            )
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        response.headers["request-id"] = call.request_id
        response.headers["client-request-id"] = call.client_request_id
        return response(environ, start_response)

    def dispatch(self, request: Request, call: Call) -> Response:
        path = request.path
        is_graph = path == "/v1.0" or path.startswith("/v1.0/")
        is_exchange = path.startswith("/adminapi/")
        if is_graph:
            self.stats.add("graph_requests")
        elif is_exchange:
            self.stats.add("exchange_requests")
        elif path.endswith("/oauth2/v2.0/token"):
            self.stats.add("token_requests")
        too_large = self._too_large(request, call)
        if too_large is not None:
            return too_large
        if is_graph or is_exchange:
            fault = self.faults.draw()
            if fault is not None:
                self.stats.add("faults")
                return self._fault(fault, call)
        if is_graph:
            result = self.graph.handle(
                request.method,
                path,
                request.args,
                dict(request.headers.items()),
                request.get_data(),
                call,
            )
            return json_response(result.body, result.status, headers=result.headers)
        try:
            endpoint, args = self.routes.match(path, request.method)
        except NotFound:
            return json_response(error_body("BadRequest", f"Resource not found for the segment '{path}'.", call), 404)
        except MethodNotAllowed:
            return json_response(
                error_body("Request_BadRequest", "Specified HTTP method is not allowed for the request target.", call),
                405,
            )
        tenant = str(args["tenant"])
        if endpoint == "discovery":
            return self.identity.openid_configuration(request, call, tenant)
        if endpoint == "jwks":
            return self.identity.jwks(request, call, tenant)
        if endpoint == "token":
            return self.identity.token(request, call, tenant)
        return self.exchange.invoke(request, call, tenant)

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
        body = error_body(
            "RequestEntityTooLarge",
            f"The request body is {length} bytes; the limit is {self.max_body} bytes.",
            call,
        )
        return json_response(body, 413, headers={"Connection": "close"})

    def _fault(self, status: int, call: Call) -> Response:
        if status == 429:
            body = error_body(
                "TooManyRequests",
                f"Too many requests from Identifier:{self.state.tenant_id}. Please try again later.",
                call,
            )
        else:
            body = error_body("serviceNotAvailable", "The service is temporarily unavailable.", call)
        return json_response(body, status, headers={"Retry-After": str(RETRY_AFTER_S)})


class Sandbox:
    """A sandbox tenant on loopback HTTPS; use as a context manager (``with Sandbox() as sb``)."""

    def __init__(
        self,
        scenario: str | Path | None = "healthy",
        *,
        state_file: Path | None = None,
        port: int = 0,
        latency_ms: int = 0,
        fault_rate: float = 0.0,
        fault_seed: int = 1,
        propagation_s: float = 0.0,
        workdir: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise SandboxError(f"fault rate {fault_rate!r} is not between 0 and 1")
        if latency_ms < 0 or propagation_s < 0 or not 0 <= port <= 65535:
            raise SandboxError("latency, propagation and port must not be negative (port <= 65535)")
        self.host = host
        self.port = port
        self.latency_ms = latency_ms
        self.fault_rate = fault_rate
        self.fault_seed = fault_seed
        self.propagation_s = propagation_s
        self._workdir_arg = workdir
        self._certificates: dict[str, Any] = {}
        self._identity_specs: dict[str, tuple[str, str]] = {}
        if state_file is not None:
            state_file = Path(state_file)
            data = load_state_file(state_file)
            self.scenario = Scenario(
                name=state_file.stem, description=f"state file {state_file}", breaks=(), path=state_file
            )
        elif scenario is not None:
            built = build(load_scenario(scenario))
            data = built.state
            self.scenario = built.scenario
            self._certificates = dict(built.certificates)
            self._identity_specs = built.identities
        else:
            raise SandboxError("give a scenario name or path, or a state file")
        self.state = TenantState(data, propagation_s=propagation_s)
        if state_file is not None or scenario is None:
            self.tenant = self.state.tenant_id
            self.organization = self.state.initial_domain
        else:
            self.tenant = built.tenant
            self.organization = built.organization
        self.signer = TokenSigner()
        self.stats = SandboxStats()
        self.app = SandboxApp(
            self.state,
            self.signer,
            self.stats,
            latency_ms=latency_ms,
            faults=FaultInjector(fault_rate, fault_seed),
        )
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._workdir: Path | None = None
        self._own_workdir = False
        self._info: SandboxInfo | None = None
        self._identities: dict[str, Identity] = {}

    # lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SandboxInfo:
        """Write the CA and certificates, bind the port and serve in a background thread."""
        if self._server is not None:
            raise SandboxError("the sandbox is already running")
        if self._workdir_arg is not None:
            workdir = Path(self._workdir_arg)
            workdir.mkdir(parents=True, exist_ok=True)
            self._own_workdir = False
        else:
            workdir = Path(tempfile.mkdtemp(prefix="cbacheck-sandbox-"))
            self._own_workdir = True
        self._workdir = workdir
        try:
            self._identities = {
                role: Identity(
                    app_id=app_id,
                    cert_path=self._certificates[cert_name].write(workdir / "certs" / f"{role}.pem"),
                    thumbprint_sha1=self._certificates[cert_name].thumbprint_sha1,
                    certificate_name=cert_name,
                )
                for role, (app_id, cert_name) in self._identity_specs.items()
            }
            ca = trustme.CA(organization_name="cbacheck sandbox")
            server_cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
            ca_path = workdir / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_path))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_cert.configure_cert(context)
            listener = self._listen()
            try:
                server = make_server(
                    self.host,
                    listener.getsockname()[1],
                    self.app,
                    threaded=True,
                    request_handler=_QuietHandler,
                    ssl_context=context,
                    fd=listener.fileno(),
                )
            finally:
                listener.close()
        except BaseException:
            self._cleanup()
            raise
        self._server = server
        self.port = server.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = f"https://{host}:{server.port}"
        self._info = SandboxInfo(
            login_url=base,
            graph_url=base,
            exchange_url=base,
            ca_bundle=str(ca_path),
            tenant_id=self.state.tenant_id,
            initial_domain=self.state.initial_domain,
            tenant=self.tenant,
            organization=self.organization,
            scenario=self.scenario.name,
            port=server.port,
            pid=os.getpid(),
            identities={
                role: {
                    "app_id": ident.app_id,
                    "cert_path": str(ident.cert_path),
                    "thumbprint_sha1": ident.thumbprint_sha1,
                }
                for role, ident in self._identities.items()
            },
        )
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="cbacheck-sandbox", daemon=True
        )
        self._thread.start()
        return self._info

    def _listen(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise SandboxError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}. "
                "Pick another --port, or --port 0 for a free one."
            ) from None
        return sock

    def stop(self) -> None:
        """Stop serving, wait for the thread and remove a temporary workdir."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._own_workdir = False

    # views -------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def info(self) -> SandboxInfo:
        if self._info is None:
            raise SandboxError("the sandbox is not started; use it as a context manager")
        return self._info

    @property
    def identities(self) -> dict[str, Identity]:
        if self._info is None:
            raise SandboxError("the sandbox is not started; use it as a context manager")
        return dict(self._identities)

    @property
    def workdir(self) -> Path | None:
        return self._workdir

    def dump(self) -> JsonObject:
        """The current state in the state-file format (Graph JSON)."""
        return self.state.dump()
