"""The ``cbacheck sandbox`` command, run as ``python -m cbacheck.sandbox`` in a subprocess."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from cbacheck.sandbox import Sandbox
from cbacheck.sandbox.command import add_parser

READY_KEYS = {"login_url", "graph_url", "exchange_url", "ca_bundle", "tenant_id", "initial_domain"}


def launch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cbacheck.sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cbacheck.sandbox", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_ready_line_then_serves_until_sigint(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    dump = tmp_path / "dump.json"
    proc = launch("--port", "0", "--ready-file", str(ready), "--dump", str(dump), "--scenario", "role-too-weak")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        info = json.loads(line)
        assert set(info) >= READY_KEYS
        assert json.loads(ready.read_text()) == info
        assert info["organization"] == info["initial_domain"]
        assert set(info["identities"]) == {"under_test", "auditor", "admin"}
        assert Path(info["identities"]["under_test"]["cert_path"]).is_file()
        assert not info["login_url"].endswith("/")
        url = f"{info['login_url']}/{info['tenant_id']}/v2.0/.well-known/openid-configuration"
        resp = requests.get(url, verify=info["ca_bundle"], timeout=10)
        assert resp.status_code == 200
        assert resp.json()["token_endpoint"].startswith(info["login_url"])
        resp = requests.get(f"{info['graph_url']}/v1.0/applications", verify=info["ca_bundle"], timeout=10)
        assert resp.status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert not Path(info["ca_bundle"]).exists()  # the temporary workdir is gone
    state = json.loads(dump.read_text())
    assert state["organization"][0]["id"] == info["tenant_id"]


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    proc = launch("--state", str(write_plain_state(tmp_path)))
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    assert info["identities"] == {}
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 0


def write_plain_state(tmp_path: Path) -> Path:
    path = tmp_path / "plain.json"
    path.write_text(
        json.dumps(
            {
                "organization": [{"id": "3c6f9a2e-51d4-4b8e-9f07-2a1d5c8e4b60"}],
                "domains": [{"id": "plain.onmicrosoft.com", "isInitial": True}],
            }
        )
    )
    return path


def test_bad_state_file_exits_2_with_one_line(tmp_path: Path) -> None:
    for content in ("{oops", '{"organization": 3}'):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        result = run("--state", str(bad))
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(bad) in lines[0] and "Traceback" not in result.stderr


def test_unknown_scenario_and_conflicting_options_exit_2(tmp_path: Path) -> None:
    result = run("--scenario", "nosuch")
    assert result.returncode == 2 and "unknown scenario 'nosuch'" in result.stderr
    result = run("--scenario", "healthy", "--state", str(write_plain_state(tmp_path)))
    assert result.returncode == 2 and "either --scenario or --state" in result.stderr
    missing = run("--state", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot be read" in missing.stderr


def test_port_in_use_exits_2() -> None:
    with Sandbox("healthy") as sb:
        result = run("--port", str(sb.info.port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{sb.info.port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_prints_the_scenarios() -> None:
    result = run("--list")
    assert result.returncode == 0 and "healthy" in result.stdout.split()


def test_add_parser_registers_the_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="cbacheck")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sandbox", "--port", "8443", "--fault-rate", "0.1", "--propagation-s", "2"])
    assert (args.command, args.port, args.fault_rate, args.propagation_s) == ("sandbox", 8443, 0.1, 2.0)
    assert args.scenario is None and args.latency_ms == 0 and args.fault_seed == 1
