"""A `cbacheck run --fix apply` process killed in the middle of applying converges when run again."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cbacheck import wellknown
from cbacheck.commands import demo as democommand
from cbacheck.sandbox import Sandbox


def command(options: dict[str, Any]) -> list[str]:
    args = [sys.executable, "-m", "cbacheck", "run"]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def journal_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_apply_killed_midway_converges_on_the_next_run(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    # Latency makes each Graph write take long enough to be interrupted between two actions.
    with Sandbox("demo-broken", latency_ms=300, propagation_s=1.0, workdir=tmp_path / "sandbox") as sb:
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
        options.update(fix="apply", journal=journal, propagation_timeout_s=30)
        args = [*command(options), "--yes"]
        first = subprocess.Popen(  # noqa: S603 - our own CLI
            [*args, "--json", str(tmp_path / "first.json")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        # Kill once the second action has started: one change made, the rest not.
        while time.monotonic() < deadline and first.poll() is None:
            started = [line for line in journal_lines(journal) if line.get("event") == "started"]
            if len(started) >= 2:
                os.killpg(first.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL, "the apply finished before it could be interrupted"
        assert not (tmp_path / "first-after.json").exists()

        second = subprocess.run(  # noqa: S603 - our own CLI
            [*args, "--json", str(tmp_path / "second.json")], capture_output=True, text=True, timeout=120
        )
        state = sb.dump()
        sp_id = next(sp["id"] for sp in state["servicePrincipals"] if sp["appId"] == options["app_id"])
        app = next(app for app in state["applications"] if app["appId"] == options["app_id"])

    assert second.returncode == 0, second.stdout + second.stderr
    after = json.loads((tmp_path / "second-after.json").read_text(encoding="utf-8"))
    assert {r["outcome"] for r in after["requirements"]} == {"passed"}
    # Exactly one of each change, however the two runs shared the work.
    grants = [
        grant
        for grant in state["appRoleAssignments"]
        if grant["principalId"] == sp_id and grant["appRoleId"] == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
    ]
    roles = [
        role
        for role in state["roleAssignments"]
        if role["principalId"] == sp_id and role["roleDefinitionId"] == wellknown.EXCHANGE_ADMINISTRATOR
    ]
    under_test = sb.identities["under_test"]
    keys = [
        key
        for key in app["keyCredentials"]
        if hashlib.sha1(base64.b64decode(key["key"])).hexdigest().upper() == under_test.thumbprint_sha1
    ]
    assert len(grants) == 1
    assert len(roles) == 1
    assert len(keys) == 1, f"{len(keys)} keys for {under_test.thumbprint_sha1}"
    manage_as_app = [
        access
        for resource in app["requiredResourceAccess"]
        for access in resource["resourceAccess"]
        if access["id"] == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
    ]
    assert len(manage_as_app) == 1
