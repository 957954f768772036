"""The sandbox server: a scenario or state file made live, served threaded over loopback TLS."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trustme
from werkzeug.serving import BaseWSGIServer, make_server

from cbacheck.sandbox.app import FaultInjector, QuietHandler, SandboxApp, SandboxStats
from cbacheck.sandbox.entra import TokenSigner
from cbacheck.sandbox.faults import SandboxError
from cbacheck.sandbox.scenario import GeneratedCertificate, Identity, Scenario, build, load_scenario
from cbacheck.sandbox.state import TenantState
from cbacheck.sandbox.validation import load_state_file
from cbacheck.sandbox.values import JsonObject
from cbacheck.sandbox.workdir import KEY_MODE, PUBLIC_MODE, write_file


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1): only this machine can connect."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        allow_remote: bool = False,
    ) -> None:
        if not (allow_remote or is_loopback(host)):
            raise SandboxError(
                f"host {host!r} is not a loopback address: other machines could reach this test tenant. "
                "Pass allow_remote=True (--allow-remote) to listen there anyway."
            )
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
        self._certificates: dict[str, GeneratedCertificate] = {}
        self._identity_specs: dict[str, tuple[str, str]] = {}
        self.tenant: str = ""
        self.organization: str = ""
        data = self._load(scenario, state_file)
        self.state = TenantState(data, propagation_s=propagation_s)
        self.tenant = self.tenant or self.state.tenant_id
        self.organization = self.organization or self.state.initial_domain
        self.signer = TokenSigner()
        self.stats = SandboxStats()
        faults = FaultInjector(fault_rate, fault_seed)
        self.app = SandboxApp(self.state, self.signer, self.stats, latency_ms=latency_ms, faults=faults)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._workdir: Path | None = None
        self._own_workdir = False
        self._info: SandboxInfo | None = None
        self._identities: dict[str, Identity] = {}

    def _load(self, scenario: str | Path | None, state_file: Path | None) -> JsonObject:
        """The validated state; a state file wins over a scenario. Sets scenario, tenant, organization."""
        if state_file is not None:
            state_file = Path(state_file)
            data = load_state_file(state_file)
            self.scenario = Scenario(
                name=state_file.stem, description=f"state file {state_file}", breaks=(), path=state_file
            )
            return data
        if scenario is None:
            raise SandboxError("give a scenario name or path, or a state file")
        built = build(load_scenario(scenario))
        self.scenario = built.scenario
        self._certificates = dict(built.certificates)
        self._identity_specs = built.identities
        self.tenant, self.organization = built.tenant, built.organization
        return built.state

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
        workdir = self._prepare_workdir()
        try:
            self._identities = self._write_identities(workdir)
            context, ca_path = self._tls(workdir)
            server = self._serve(context)
        except BaseException:
            self._cleanup()
            raise
        self._server = server
        self.port = server.port
        self._info = self._ready_info(server.port, ca_path)
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="cbacheck-sandbox", daemon=True
        )
        self._thread.start()
        return self._info

    def _prepare_workdir(self) -> Path:
        if self._workdir_arg is not None:
            workdir = Path(self._workdir_arg)
            workdir.mkdir(parents=True, exist_ok=True)
            self._own_workdir = False
        else:
            workdir = Path(tempfile.mkdtemp(prefix="cbacheck-sandbox-"))
            self._own_workdir = True
        self._workdir = workdir
        return workdir

    def _write_identities(self, workdir: Path) -> dict[str, Identity]:
        """One PEM (certificate and unencrypted key, mode 0600) per scenario identity."""
        return {
            role: Identity(
                app_id=app_id,
                cert_path=write_file(workdir, f"certs/{role}.pem", self._certificates[cert_name].pem(), KEY_MODE),
                thumbprint_sha1=self._certificates[cert_name].thumbprint_sha1,
                certificate_name=cert_name,
            )
            for role, (app_id, cert_name) in self._identity_specs.items()
        }

    def _tls(self, workdir: Path) -> tuple[ssl.SSLContext, Path]:
        """A fresh CA (its PEM written to the workdir) and a server certificate for loopback names."""
        ca = trustme.CA(organization_name="cbacheck sandbox")
        names = ["127.0.0.1", "localhost", "::1"]
        if self.host not in (*names, "0.0.0.0", "::"):
            names.append(self.host)  # a remote address the clients will name
        server_cert = ca.issue_cert(*names)
        ca_path = write_file(workdir, "ca.pem", ca.cert_pem.bytes(), PUBLIC_MODE)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_cert.configure_cert(context)
        return context, ca_path

    def _serve(self, context: ssl.SSLContext) -> BaseWSGIServer:
        listener = self._listen()
        try:
            return make_server(
                self.host,
                listener.getsockname()[1],
                self.app,
                threaded=True,
                request_handler=QuietHandler,
                ssl_context=context,
                fd=listener.fileno(),
            )
        finally:
            listener.close()

    def _ready_info(self, port: int, ca_path: Path) -> SandboxInfo:
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = f"https://{host}:{port}"
        return SandboxInfo(
            login_url=base,
            graph_url=base,
            exchange_url=base,
            ca_bundle=str(ca_path),
            tenant_id=self.state.tenant_id,
            initial_domain=self.state.initial_domain,
            tenant=self.tenant,
            organization=self.organization,
            scenario=self.scenario.name,
            port=port,
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
