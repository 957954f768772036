"""Benchmark of collect() against the sandbox: Graph round trips, token requests and wall time per application."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cbacheck.collect import FACT_NAMES, collect
from cbacheck.config import Settings
from cbacheck.facts import TenantFacts, Unavailable
from cbacheck.sandbox import Sandbox

# Healthy: the grants ride in the first $batch because the app's token names its service principal.
TARGET_ROUND_TRIPS = 1
TARGET_WALL_S = 1.5


def settings_for(sandbox: Sandbox, batching: bool) -> Settings:
    info = sandbox.info
    identities = sandbox.identities
    return Settings(
        tenant=info.tenant_id,
        app_id=identities["under_test"].app_id,
        organization=info.initial_domain,
        cert=identities["under_test"].cert_path,
        login_url=info.login_url,
        graph_url=info.graph_url,
        exchange_url=info.exchange_url,
        compliance_url=info.exchange_url,
        ca_bundle=Path(info.ca_bundle),
        auditor_credential="certificate",
        auditor_app_id=identities["auditor"].app_id,
        auditor_cert=identities["auditor"].cert_path,
        batching=batching,
    )


def unavailable(facts: TenantFacts) -> list[str]:
    return [name for name in FACT_NAMES if isinstance(getattr(facts, name), Unavailable)]


def measure(scenario: str, latency_ms: int, batching: bool, runs: int) -> dict[str, float]:
    walls: list[float] = []
    round_trips: list[int] = []
    tokens: list[int] = []
    with Sandbox(scenario, latency_ms=latency_ms) as sandbox:
        settings = settings_for(sandbox, batching)
        for _ in range(runs):
            started = time.perf_counter()
            facts = collect(settings)  # one run = one application: a fresh session, fresh token caches
            walls.append(time.perf_counter() - started)
            round_trips.append(facts.stats.graph_round_trips)
            tokens.append(facts.stats.token_requests)
            missing = unavailable(facts)
            if missing:
                raise SystemExit(f"bench: facts not collected ({', '.join(missing)}); the figures would mislead")
    return {
        "graph_round_trips": statistics.median(round_trips),
        "token_requests": statistics.median(tokens),
        "wall_s": statistics.median(walls),
        "wall_max_s": max(walls),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=int, default=100, help="sandbox latency per request (default 100)")
    parser.add_argument("--runs", type=int, default=5, help="collections per mode; the median is shown (default 5)")
    parser.add_argument("--scenario", default="healthy", help="sandbox scenario (default healthy)")
    args = parser.parse_args(argv)
    # Discovery documents persist between runs in the user's cache folder; the bench keeps its own.
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cbacheck-bench-cache-")

    print(f"collect() against sandbox scenario {args.scenario!r}, {args.latency_ms} ms latency, median of {args.runs}")
    print(f"{'mode':<14}{'Graph round trips':>19}{'token requests':>16}{'wall s':>9}{'max s':>8}")
    results = {}
    for label, batching in (("batching on", True), ("batching off", False)):
        figures = measure(args.scenario, args.latency_ms, batching, args.runs)
        results[label] = figures
        print(
            f"{label:<14}{figures['graph_round_trips']:>19.0f}{figures['token_requests']:>16.0f}"
            f"{figures['wall_s']:>9.3f}{figures['wall_max_s']:>8.3f}"
        )
    on = results["batching on"]
    met = on["graph_round_trips"] <= TARGET_ROUND_TRIPS and on["wall_s"] < TARGET_WALL_S
    print(
        f"target per application: <= {TARGET_ROUND_TRIPS} Graph round trips and < {TARGET_WALL_S} s: "
        + ("met" if met else "NOT met")
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
