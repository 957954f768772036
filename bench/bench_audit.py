"""Benchmark of `cbacheck audit` against generated sandbox tenants: wall, requests per endpoint, round trips, memory.

Each size runs the real command in a child process (so its peak memory is the audit's, not the sandbox's),
against the sandbox with --latency-ms on every response. Requests per endpoint count each $batch item.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cbacheck.commands import demo as democommand
from cbacheck.sandbox import Sandbox

SCENARIO = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "scenarios" / "audit-generated.json"
TARGET_WALL_S = 10.0
TARGET_PEAK_MB = 300.0


def scenario_for(applications: int, share: float, folder: Path) -> Path:
    doc = json.loads(SCENARIO.read_text(encoding="utf-8"))
    doc["generate"].update(applications=applications, exchange_share=share, seed=f"bench-{applications}")
    path = folder / f"audit-{applications}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def measure(applications: int, share: float, latency_ms: int, folder: Path) -> dict[str, object]:
    with Sandbox(scenario_for(applications, share, folder), latency_ms=latency_ms, workdir=folder / "sb") as sb:
        options = democommand.sandbox_settings(sb, folder / f"reports-{applications}")
        args = [arg for name, value in options.items() for arg in (f"--{name.replace('_', '-')}", str(value))]
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "cbacheck", "audit", *args], capture_output=True, text=True)
        wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"bench: audit exited {done.returncode}: {done.stderr[-2000:]}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    document = json.loads((folder / f"reports-{applications}" / "audit.json").read_text(encoding="utf-8"))
    return {
        "applications": applications,
        "holders": document["counts"]["apps"],
        "wall_s": round(wall, 2),
        "peak_mb": round(peak_mb, 1),
        "requests": document["requests"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--share", type=float, default=0.1, help="share of apps holding Exchange permissions")
    args = parser.parse_args()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            row = measure(size, args.share, args.latency_ms, Path(tmp))
            requests = row["requests"]
            assert isinstance(requests, dict)
            total = sum(requests["per_endpoint"].values())
            print(
                f"{size:>6} apps, {row['holders']:>5} holders: wall {row['wall_s']:>5} s, peak {row['peak_mb']} MB "
                f"(max so far), {total} requests, {requests['sequential_round_trips']} sequential round trips"
            )
            for endpoint, count in sorted(requests["per_endpoint"].items()):
                print(f"         {count:>4}  {endpoint}")
            if size >= 10000 and (
                float(str(row["wall_s"])) > TARGET_WALL_S or float(str(row["peak_mb"])) > TARGET_PEAK_MB
            ):
                failures.append(size)
    if failures:
        print(f"bench: over target ({TARGET_WALL_S} s, {TARGET_PEAK_MB} MB) at {failures}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
