"""`cbacheck merge`: audit.json files of several tenants into one document, its reports, and refused inputs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cbacheck import cli
from cbacheck.errors import ExitCode
from cbacheck.report.audit import AUDIT_SCHEMA
from cbacheck.report.audit_merge import MERGED_SCHEMA

SARIF_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "schemas" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8")
)


def audit(
    tenant: str, verdict: str, apps: int, *, at: str = "2026-12-01T10:00:00+00:00", target: str = ""
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema": "cbacheck-audit",
        "schema_version": 1,
        "tenant": tenant,
        "collected_at": at,
        "verdict": verdict,
        "fail_on": "high",
        "counts": {"apps": apps, "failed": apps if verdict == "failed" else 0, "error": 0, "applications_seen": 10},
        "not_read": {} if verdict != "error" else {"last sign-in": "not read: 403 (needs AuditLog.Read.All)"},
        "app_management_policy": None,
        "requests": {"per_endpoint": {}, "round_trips": 0, "sequential_round_trips": 0},
        "apps": [
            {
                "appId": f"{i:08d}-0000-0000-0000-000000000000",
                "displayName": f"{tenant.split('.')[0]} app {i}",
                "servicePrincipalId": f"sp-{i}",
                "type": "Application",
                "permissions": ["Office 365 Exchange Online/Exchange.ManageAsApp"],
                "roles": [],
                "exchangeRbac": None,
                "credentials": [],
                "owners": [],
                "lastSignIn": None,
                "verdict": verdict,
                "requirements": [
                    {"id": "CBA-AUD-003", "title": "t", "severity": "high", "outcome": verdict, "message": "m"}
                ],
            }
            for i in range(apps)
        ],
    }
    if target:
        document["target"] = target
    jsonschema.validate(document, AUDIT_SCHEMA)
    return document


def _files(tmp_path: Path, *documents: dict[str, Any]) -> list[str]:
    paths = []
    for index, document in enumerate(documents):
        path = tmp_path / f"in-{index}.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        paths.append(str(path))
    return paths


def test_merge_round_trip_keeps_every_app_with_its_tenant_and_writes_every_report(tmp_path: Path) -> None:
    inputs = _files(
        tmp_path,
        audit("contoso.onmicrosoft.com", "failed", 2, target="contoso"),
        audit("fabrikam.onmicrosoft.com", "passed", 3),
    )
    out = tmp_path / "merged" / "audit.json"
    extra = ["--html", str(tmp_path / "m.html"), "--csv", str(tmp_path / "m.csv")]
    extra += ["--markdown", str(tmp_path / "m.md"), "--sarif", str(tmp_path / "m.sarif")]
    assert cli.main(["merge", str(out), *inputs, *extra]) == ExitCode.OK
    merged = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(merged, MERGED_SCHEMA)
    assert merged["verdict"] == "failed"
    assert merged["counts"] == {"tenants": 2, "apps": 5, "failed": 2, "error": 0, "applications_seen": 20}
    assert [t["tenant"] for t in merged["tenants"]] == ["contoso.onmicrosoft.com", "fabrikam.onmicrosoft.com"]
    assert merged["tenants"][0]["target"] == "contoso" and merged["tenants"][0]["source"] == inputs[0]
    by_tenant = {a["tenant"] for a in merged["apps"]}
    assert by_tenant == {"contoso.onmicrosoft.com", "fabrikam.onmicrosoft.com"}
    # Round trip: each tenant's apps are exactly its input's apps.
    for path in inputs:
        original = json.loads(Path(path).read_text(encoding="utf-8"))
        kept = [
            {k: v for k, v in a.items() if k != "tenant"} for a in merged["apps"] if a["tenant"] == original["tenant"]
        ]
        assert kept == original["apps"]
    rows = list(csv.DictReader((tmp_path / "m.csv").open(encoding="utf-8")))
    assert len(rows) == 5 and rows[0]["tenant"] == "contoso.onmicrosoft.com"
    html = (tmp_path / "m.html").read_text(encoding="utf-8")
    assert (
        'id="app-fabrikam.onmicrosoft.com-00000000-0000-0000-0000-000000000000"' in html and "<h2>Tenants</h2>" in html
    )
    summary = (tmp_path / "m.md").read_text(encoding="utf-8")
    assert "| contoso.onmicrosoft.com | contoso | failed |" in summary and "2 tenants" in summary
    sarif = json.loads((tmp_path / "m.sarif").read_text(encoding="utf-8"))
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(sarif)
    assert len(sarif["runs"][0]["results"]) == 2


def test_the_same_tenant_twice_keeps_the_newest_and_says_which_was_superseded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = audit("contoso.onmicrosoft.com", "failed", 2, at="2026-11-30T10:00:00+00:00")
    new = audit("Contoso.onmicrosoft.com", "passed", 1, at="2026-12-01T10:00:00+00:00")
    inputs = _files(tmp_path, new, old)
    assert cli.main(["merge", str(tmp_path / "out.json"), *inputs]) == ExitCode.OK
    merged = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert merged["verdict"] == "passed" and merged["counts"]["apps"] == 1
    assert merged["superseded"] == [
        {
            "tenant": "contoso.onmicrosoft.com",
            "source": inputs[1],
            "collected_at": old["collected_at"],
            "kept": inputs[0],
        }
    ]
    assert f"superseded: {inputs[1]}" in capsys.readouterr().out


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], *inputs: str) -> str:
    assert cli.main(["merge", str(tmp_path / "out.json"), *inputs]) == ExitCode.USAGE
    assert not (tmp_path / "out.json").exists()
    return capsys.readouterr().err


def test_equally_new_audits_of_one_tenant_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _files(
        tmp_path, audit("contoso.onmicrosoft.com", "passed", 1), audit("contoso.onmicrosoft.com", "failed", 1)
    )
    err = _refused(tmp_path, capsys, a, b)
    assert a in err and b in err and "give only one" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "cbacheck-results"}, "not an audit.json of `cbacheck audit` (schema 'cbacheck-results')"),
        ({"schema": "cbacheck-audit-merged"}, "already a merged audit"),
        ({"schema_version": 2}, "schema_version 2; this cbacheck merges version 1"),
        ({"apps": "none"}, "does not follow the audit schema at apps"),
        ({"tenant": ""}, "has no tenant"),
        ({"collected_at": "yesterday"}, "is not a date"),
    ],
)
def test_inputs_of_another_kind_or_version_are_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], message: str
) -> None:
    good = audit("fabrikam.onmicrosoft.com", "passed", 1)
    bad = {**audit("contoso.onmicrosoft.com", "passed", 1), **change}
    paths = _files(tmp_path, good, bad)
    err = _refused(tmp_path, capsys, *paths)
    assert paths[1] in err and message in err, err


def test_unreadable_and_non_json_inputs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "cannot be read" in _refused(tmp_path, capsys, str(tmp_path / "missing.json"))
    (tmp_path / "junk.json").write_text("<html>", encoding="utf-8")
    assert "not JSON" in _refused(tmp_path, capsys, str(tmp_path / "junk.json"))
    (tmp_path / "list.json").write_text("[]", encoding="utf-8")
    assert "a JSON object was expected" in _refused(tmp_path, capsys, str(tmp_path / "list.json"))


def test_an_output_that_is_also_an_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (path,) = _files(tmp_path, audit("contoso.onmicrosoft.com", "passed", 1))
    assert cli.main(["merge", path, path]) == ExitCode.USAGE
    assert "both an input and an output" in capsys.readouterr().err


APP_ID = "5e7d1c2b-8a4f-4c3e-9b1d-6f2a0e4c8d11"


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="needs FIFOs and /dev/zero")
@pytest.mark.parametrize("command", ["merge", "audit --compare", "run --compare"])
def test_a_pipe_or_device_given_as_an_earlier_or_merged_audit_is_named_not_read(command: str, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    for given in (str(fifo), "/dev/zero"):
        verb, *option = command.split()
        args = (
            [str(tmp_path / "out.json"), given]
            if verb == "merge"
            else ["--tenant", "contoso.onmicrosoft.com", "--app-id", APP_ID, *option, given]
        )
        # A child with a deadline: a reader that blocks on the pipe, or reads /dev/zero forever, fails the test.
        done = subprocess.run(
            [sys.executable, "-m", "cbacheck", verb, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert done.returncode == ExitCode.USAGE, done.stderr
        assert given in done.stderr and "not a regular file" in done.stderr, done.stderr
