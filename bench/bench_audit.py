"""Benchmark of `cbacheck audit` against generated sandbox tenants: wall, requests per endpoint, round trips, memory.

Each size runs the real command in a child process (so its peak memory is the audit's, not the sandbox's),
against the sandbox with --latency-ms on every response. Requests per endpoint count each $batch item; the RU
column is what they cost in Graph's identity and access throttling ("-": counted under other limits; "?": an
endpoint this table does not know, counted at the default 1).
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

# Graph's identity and access throttling counts resource units (RU), not requests or objects:
# https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits
# A GET not in its cost table costs 1, `GET applications` 2; $select takes 1 off, $expand adds 1, $top under
# 20 takes 1 off, and no request costs less than 1. Each $batch item is evaluated as its own request.
# endpoint (as the audit counts it) -> RU of one request as the audit sends it, and why.
RESOURCE_UNITS: dict[str, tuple[int, str]] = {
    "/applications": (1, "listed at 2; $select -1"),
    "/servicePrincipals": (1, "not listed: 1; $select -1, never below 1"),
    "/servicePrincipals(appId='{id}')": (1, "not listed: 1 ($batch item, $select)"),
    "/servicePrincipals/{id}/appRoleAssignedTo": (1, "not listed (appRoleAssignments is, at 2): 1"),
    "/applications/{id}/owners": (1, "not listed: 1 ($batch item, $select)"),
    "/applications/{id}/federatedIdentityCredentials": (1, "not listed: 1 ($batch item)"),
    "/policies/defaultAppManagementPolicy": (1, "policyBase, not listed: 1"),
    "/$batch": (0, "the envelope: its items are counted at their own paths"),
}
# Read under other limits, which count requests: not identity and access resources.
OTHER_LIMITS: dict[str, str] = {
    "/roleManagement/directory/roleAssignments": "unifiedRoleAssignment: not in the identity and access list",
    "/roleManagement/directory/roleEligibilitySchedules": "PIM: not in the identity and access list",
    "beta /reports/servicePrincipalSignInActivities": "identity and access reports limits (requests per 20 s)",
    "Exchange InvokeCommand": "Exchange Online, not Graph",
}
# The application+tenant pair's budget for a large tenant (L: more than 500 users).
RU_BUDGET_L = 8000
RU_BUDGET_WINDOW_S = 10


def resource_units(per_endpoint: dict[str, int]) -> tuple[dict[str, int | None], int]:
    """RU per endpoint (None: counted under other limits) and their total; an endpoint in neither table counts
    1 per request (the table's default) and is flagged by the caller."""
    units: dict[str, int | None] = {}
    for endpoint, count in per_endpoint.items():
        units[endpoint] = None if endpoint in OTHER_LIMITS else RESOURCE_UNITS.get(endpoint, (1, ""))[0] * count
    return units, sum(u for u in units.values() if u is not None)


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
            units, total_units = resource_units(requests["per_endpoint"])
            print(
                f"{size:>6} apps, {row['holders']:>5} holders: wall {row['wall_s']:>5} s, peak {row['peak_mb']} MB "
                f"(max so far), {total} requests, {requests['sequential_round_trips']} sequential round trips, "
                f"{total_units} RU ({100 * total_units / RU_BUDGET_L:.0f}% of a large tenant's "
                f"{RU_BUDGET_L} RU per {RU_BUDGET_WINDOW_S} s)"
            )
            print(f"         {'requests':>8}  {'RU':>6}  endpoint")
            for endpoint, count in sorted(requests["per_endpoint"].items()):
                unit = units[endpoint]
                known = endpoint in RESOURCE_UNITS or endpoint in OTHER_LIMITS
                shown = "-" if unit is None else f"{unit}{'' if known else '?'}"
                print(f"         {count:>8}  {shown:>6}  {endpoint}")
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
