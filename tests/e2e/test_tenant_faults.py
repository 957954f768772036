"""`cbacheck run` against a wrong tenant, a dead endpoint, a 429 storm or another app's certificate.

Each ends with the right outcome (failed when the tenant said no, error when nothing could be verified),
one clear message, no traceback, and never a pass that was not proven.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from cbacheck import cli
from cbacheck.commands import demo as democommand
from cbacheck.errors import ExitCode
from cbacheck.sandbox import Sandbox

TENANT_LINKS = ("CBA-APP-", "CBA-KEY-", "CBA-PERM-", "CBA-ROLE-", "CBA-TOKEN-", "CBA-EXO-")


def run(options: dict[str, Any], results: Path) -> int:
    args = [arg for name, value in options.items() for arg in (f"--{name.replace('_', '-')}", str(value))]
    return cli.main(["run", *args, "--json", str(results)])


def outcomes(results: Path) -> dict[str, dict[str, Any]]:
    document = json.loads(results.read_text(encoding="utf-8"))
    return {record["id"]: record for record in document["requirements"]}


def tenant_records(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {req: record for req, record in records.items() if req.startswith(TENANT_LINKS)}


def test_unknown_tenant_fails_the_token_with_aadsts90002_and_proves_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Sandbox("healthy", workdir=tmp_path / "sb") as sb:
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
        options.update(tenant="nosuch.onmicrosoft.com", organization="nosuch.onmicrosoft.com")
        status = run(options, tmp_path / "r.json")
    records = tenant_records(outcomes(tmp_path / "r.json"))
    console = capsys.readouterr()
    assert status == ExitCode.FAILED
    assert records["CBA-TOKEN-001"]["outcome"] == "failed"
    assert "AADSTS90002" in records["CBA-TOKEN-001"]["message"]
    assert all(record["outcome"] != "passed" for record in records.values())
    assert "Traceback" not in console.out + console.err


def test_a_dead_endpoint_makes_every_tenant_check_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"https://127.0.0.1:{probe.getsockname()[1]}"
    with Sandbox("healthy", workdir=tmp_path / "sb") as sb:
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
    options.update(login_url=dead, graph_url=dead, exchange_url=dead, compliance_url=dead, retries=0, timeout_s=5)
    status = run(options, tmp_path / "r.json")
    records = tenant_records(outcomes(tmp_path / "r.json"))
    console = capsys.readouterr()
    assert status == ExitCode.FAILED
    assert {record["outcome"] for record in records.values()} <= {"error", "failed"}
    assert all(record["outcome"] == "error" for req, record in records.items() if req.startswith("CBA-APP-"))
    assert dead.removeprefix("https://") in records["CBA-APP-001"]["message"]  # the message names the endpoint
    assert "Traceback" not in console.out + console.err


def test_a_429_storm_is_an_error_never_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Sandbox("healthy", fault_rate=1.0, workdir=tmp_path / "sb") as sb:
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
        options.update(retries=1)
        status = run(options, tmp_path / "r.json")
    records = tenant_records(outcomes(tmp_path / "r.json"))
    console = capsys.readouterr()
    assert status == ExitCode.FAILED
    graph_checks = {req: r for req, r in records.items() if req.startswith(("CBA-APP-", "CBA-PERM-", "CBA-ROLE-"))}
    assert {record["outcome"] for record in graph_checks.values()} == {"error"}
    assert records["CBA-EXO-001"]["outcome"] == "error"
    assert "Traceback" not in console.out + console.err


def test_a_certificate_of_another_app_is_not_uploaded_and_its_token_is_refused(tmp_path: Path) -> None:
    with Sandbox("healthy", workdir=tmp_path / "sb") as sb:
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
        options.update(cert=sb.identities["auditor"].cert_path)
        status = run(options, tmp_path / "r.json")
    records = outcomes(tmp_path / "r.json")
    assert status == ExitCode.FAILED
    assert records["CBA-KEY-001"]["outcome"] == "failed"
    assert records["CBA-KEY-001"]["follows_from"] is None
    assert records["CBA-TOKEN-001"]["outcome"] == "blocked"  # the sign-in cannot work without the key
    assert records["CBA-TOKEN-001"]["follows_from"] == "CBA-KEY-001"
    assert "AADSTS700027" in records["CBA-TOKEN-001"]["message"]
