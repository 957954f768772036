"""Benchmark the sandbox on loopback: token requests/s, Graph reads/s, memory with 10,000 apps."""

from __future__ import annotations

import argparse
import base64
import gc
import json
import resource
import socket
import ssl
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cbacheck.sandbox import Identity, Sandbox
from cbacheck.sandbox.scenario import CertificateSpec, generate_certificate
from cbacheck.sandbox.state import utcnow

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class CASession(requests.Session):
    """Trust the sandbox CA per request (REQUESTS_CA_BUNDLE would override Session.verify)."""

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self.ca_bundle = ca_bundle

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("verify", self.ca_bundle)
        return super().request(method, url, *args, **kwargs)


def client_assertion(sb: Sandbox, ident: Identity) -> str:
    pem = ident.cert_path.read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    import hashlib

    now = int(time.time())
    claims = {
        "aud": f"{sb.info.login_url}/{sb.tenant}/oauth2/v2.0/token",
        "iss": ident.app_id,
        "sub": ident.app_id,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
    }
    x5t = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode()
    key = serialization.load_pem_private_key(pem, password=None)
    return jwt.encode(claims, key, algorithm="RS256", headers={"x5t": x5t})  # type: ignore[arg-type]


def rate(name: str, seconds: float, call: Callable[[], requests.Response]) -> float:
    """Call for the given time (bounded), check every answer is 200, return calls per second."""
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        resp = call()
        if resp.status_code != 200:
            raise SystemExit(f"{name}: unexpected {resp.status_code}: {resp.text[:200]}")
        count += 1
    per_second = count / (time.perf_counter() - started)
    print(f"{name:<44} {per_second:8.1f} /s  ({count} requests in {seconds:.0f} s)")
    return per_second


def throughput(seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    with Sandbox("healthy") as sb:
        session = CASession(sb.info.ca_bundle)
        ident = sb.identities["under_test"]
        form = {
            "client_id": ident.app_id,
            "grant_type": "client_credentials",
            "scope": "https://outlook.office365.com/.default",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(sb, ident),
        }
        token_url = f"{sb.info.login_url}/{sb.tenant}/oauth2/v2.0/token"
        out["token_requests_per_s"] = rate(
            "token requests (assertion verified)", seconds, lambda: session.post(token_url, data=form)
        )

        auditor = sb.identities["auditor"]
        graph_form = dict(
            form,
            client_id=auditor.app_id,
            client_assertion=client_assertion(sb, auditor),
            scope="https://graph.microsoft.com/.default",
        )
        access = session.post(token_url, data=graph_form).json()["access_token"]
        headers = {"Authorization": f"Bearer {access}"}
        by_app_id = f"{sb.info.graph_url}/v1.0/applications(appId='{ident.app_id}')?$select=id,appId,keyCredentials"
        out["graph_reads_per_s"] = rate(
            "Graph reads: GET application by appId", seconds, lambda: session.get(by_app_id, headers=headers)
        )
        listing = f"{sb.info.graph_url}/v1.0/servicePrincipals?$filter=appId eq '{ident.app_id}'"
        out["graph_filter_reads_per_s"] = rate(
            "Graph reads: servicePrincipals $filter", seconds, lambda: session.get(listing, headers=headers)
        )
        out["tls_handshakes_per_s"] = handshakes(sb, seconds)
        print(f"{'(sandbox counters)':<44} {json.dumps(sb.stats.snapshot())}")
    return out


def handshakes(sb: Sandbox, seconds: float) -> float:
    """What each request pays because the server closes every connection: a TLS handshake, and no request."""
    target = urlsplit(sb.info.login_url)
    host, port = str(target.hostname), int(target.port or 443)
    context = ssl.create_default_context(cafile=sb.info.ca_bundle)
    count = 0
    started, cpu = time.perf_counter(), time.thread_time()
    while time.perf_counter() < started + seconds:
        with socket.create_connection((host, port)) as raw, context.wrap_socket(raw, server_hostname=host):
            count += 1
    wall, client_cpu = time.perf_counter() - started, time.thread_time() - cpu
    print(
        f"{'TLS handshakes alone (connection closed)':<44} {count / wall:8.1f} /s  "
        f"({wall / count * 1000:.1f} ms each, {client_cpu / count * 1000:.1f} ms of it the client's CPU)"
    )
    return count / wall


def big_state(count: int) -> dict[str, Any]:
    certs = [generate_certificate(CertificateSpec(f"c{i}", f"CN=bench-{i}"), now=utcnow()) for i in range(8)]
    keys = [base64.b64encode(c.der).decode() for c in certs]
    tenant = "3c6f9a2e-51d4-4b8e-9f07-2a1d5c8e4b60"
    apps, sps = [], []
    for i in range(count):
        app_id = str(uuid.UUID(int=i + 1))
        apps.append(
            {
                "id": str(uuid.UUID(int=(1 << 64) + i)),
                "appId": app_id,
                "displayName": f"bench app {i}",
                "keyCredentials": [{"key": keys[i % len(keys)], "keyId": str(uuid.UUID(int=(2 << 64) + i))}],
            }
        )
        if i % 2 == 0:
            sps.append({"id": str(uuid.UUID(int=(3 << 64) + i)), "appId": app_id})
    return {
        "organization": [{"id": tenant, "displayName": "Bench"}],
        "domains": [{"id": "bench.onmicrosoft.com", "isInitial": True}],
        "applications": apps,
        "servicePrincipals": sps,
    }


def rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def memory(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.json"
        path.write_text(json.dumps(big_state(count)))
        size_mib = path.stat().st_size / 2**20
        gc.collect()
        rss_before = rss_kib()
        tracemalloc.start()
        started = time.perf_counter()
        sb = Sandbox(None, state_file=path)
        with sb:
            load_s = time.perf_counter() - started
            current, peak = tracemalloc.get_traced_memory()
            session = CASession(sb.info.ca_bundle)
            resp = session.get(f"{sb.info.login_url}/{sb.tenant}/v2.0/.well-known/openid-configuration")
            assert resp.status_code == 200
        tracemalloc.stop()
        rss_after = rss_kib()
    print(f"state file with {count} applications: {size_mib:.1f} MiB of JSON, loaded and started in {load_s:.2f} s")
    print(f"  memory held by the sandbox (tracemalloc): {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB")
    print(f"  process max RSS growth: {(rss_after - rss_before) / 1024:.1f} MiB (with tracemalloc overhead)")
    return {"held_mib": current / 2**20, "peak_mib": peak / 2**20, "load_s": load_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per throughput loop (default 5)")
    parser.add_argument("--apps", type=int, default=10_000, help="applications in the memory state")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, loopback TLS, latency off")
    throughput(args.seconds)
    memory(args.apps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
