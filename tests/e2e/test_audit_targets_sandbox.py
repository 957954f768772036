"""Many tenants against the sandbox: `[[targets]]`, `--shard I/N` and `cbacheck merge` of the shards' audits."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from cbacheck import cli
from cbacheck.commands import demo as democommand
from cbacheck.errors import ExitCode
from cbacheck.report.audit import AUDIT_SCHEMA
from cbacheck.report.audit_merge import MERGED_SCHEMA
from cbacheck.sandbox import Sandbox

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "audit-generated.json"
NOT_FOR_THE_AUDIT = ("app_id", "cert", "organization", "tenant", "report_dir")


def _options(sb: Sandbox) -> list[str]:
    options = democommand.sandbox_settings(sb, Path("unused"))
    args: list[str] = []
    for name, value in options.items():
        if name not in NOT_FOR_THE_AUDIT:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def test_targets_are_audited_each_in_turn_by_shard_and_merged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Sandbox(SCENARIO, workdir=tmp_path / "sandbox") as sb:
        # The sandbox answers for its tenant by GUID and by domain name: two targets, two audits.
        config = tmp_path / "tenants.toml"
        config.write_text(
            f'[[targets]]\ntenant = "{sb.tenant}"\nname = "by-id"\n\n'
            f'[[targets]]\ntenant = "{sb.organization}"\nname = "by-domain"\n',
            encoding="utf-8",
        )
        shards = []
        for index in (1, 2):
            folder = tmp_path / f"shard-{index}"
            argv = ["audit", *_options(sb), "--config", str(config), "--report-dir", str(folder)]
            status = cli.main([*argv, "--shard", f"{index}/2", "--sarif", str(folder / "audit.sarif")])
            assert status == ExitCode.FAILED  # the generated tenant holds failing principals
            shards.append(sorted(p.name for p in folder.iterdir()))
    # Sorted by name, by-domain is first (shard 1) and by-id second (shard 2).
    assert shards == [
        [
            "audit-by-domain.csv",
            "audit-by-domain.html",
            "audit-by-domain.json",
            "audit-by-domain.md",
            "audit-by-domain.sarif",
        ],
        ["audit-by-id.csv", "audit-by-id.html", "audit-by-id.json", "audit-by-id.md", "audit-by-id.sarif"],
    ]
    printed = capsys.readouterr().out
    assert "[by-domain]" in printed and "[by-id]" in printed
    inputs = [tmp_path / "shard-1" / "audit-by-domain.json", tmp_path / "shard-2" / "audit-by-id.json"]
    documents = [json.loads(p.read_text(encoding="utf-8")) for p in inputs]
    for document, name in zip(documents, ("by-domain", "by-id"), strict=True):
        jsonschema.validate(document, AUDIT_SCHEMA)
        assert document["target"] == name and document["counts"]["apps"] > 0
    assert documents[0]["tenant"] == sb.organization and documents[1]["tenant"] == sb.tenant
    out = tmp_path / "merged.json"
    assert cli.main(["merge", str(out), *map(str, inputs), "--html", str(tmp_path / "merged.html")]) == ExitCode.OK
    merged = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(merged, MERGED_SCHEMA)
    assert merged["counts"]["apps"] == sum(d["counts"]["apps"] for d in documents)
    by_tenant = sorted(documents, key=lambda d: d["tenant"].lower())  # the merged document lists tenants by name
    assert [t["target"] for t in merged["tenants"]] == [d["target"] for d in by_tenant]
    assert merged["verdict"] == "failed"


def test_a_tenant_that_cannot_be_read_is_recorded_as_an_error_and_the_others_go_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Sandbox(SCENARIO, workdir=tmp_path / "sandbox") as sb:
        config = tmp_path / "tenants.toml"
        config.write_text(
            '[[targets]]\ntenant = "unknown.onmicrosoft.com"\nname = "unknown"\n\n'
            f'[[targets]]\ntenant = "{sb.tenant}"\nname = "known"\n',
            encoding="utf-8",
        )
        folder = tmp_path / "reports"
        status = cli.main(["audit", *_options(sb), "--config", str(config), "--report-dir", str(folder)])
    assert status == ExitCode.FAILED
    assert "[unknown] not read: the auditor" in capsys.readouterr().out
    unknown = json.loads((folder / "audit-unknown.json").read_text(encoding="utf-8"))
    known = json.loads((folder / "audit-known.json").read_text(encoding="utf-8"))
    jsonschema.validate(unknown, AUDIT_SCHEMA)
    assert unknown["verdict"] == "error" and unknown["apps"] == [] and unknown["not_read"]["tenant"]
    assert known["counts"]["apps"] > 0
