"""The pipeline definitions in docs/pipelines/ are valid for their CI system and keep their promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PIPELINES = Path(__file__).resolve().parents[2] / "docs" / "pipelines"
GITHUB = PIPELINES / "github-actions.yml"
AZURE = PIPELINES / "azure-pipelines.yml"
AUDIT_MATRIX = PIPELINES / "github-actions-audit-matrix.yml"


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against its vendored (offline) copy of the published schema."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--regex-variant", "python", "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ("vendor.github-workflows", GITHUB),
        ("vendor.azure-pipelines", AZURE),
        ("vendor.github-workflows", AUDIT_MATRIX),
    ],
)
def test_pipeline_definition_validates_against_the_published_schema(schema: str, path: Path) -> None:
    result = check_jsonschema(schema, path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(GITHUB.read_text(encoding="utf-8").replace("runs-on:", "runs_on:"), encoding="utf-8")
    assert check_jsonschema("vendor.github-workflows", broken).returncode != 0


def test_github_workflow_federates_the_auditor_and_keeps_the_evidence() -> None:
    workflow = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))
    assert workflow["permissions"]["id-token"] == "write"
    job = workflow["jobs"]["cbacheck"]
    assert job["env"]["CBACHECK_AUDITOR_CREDENTIAL"] == "workload_identity"
    text = GITHUB.read_text(encoding="utf-8")
    assert "AZURE_CLIENT_SECRET" not in text and "AZURE_CLIENT_CERTIFICATE" not in text  # nothing stored for it
    assert "secrets.CBACHECK_APP_PFX_BASE64" in text  # the app's certificate comes from a secret
    uses = [step.get("uses", "") for step in job["steps"]]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    assert any(u.startswith("github/codeql-action/upload-sarif@") for u in uses)
    run = next(step["run"] for step in job["steps"] if "cbacheck run" in str(step.get("run", "")))
    assert "--bundle" in run and "--summary" in run and "--sarif" in run


def test_azure_pipeline_publishes_junit_summary_and_bundle() -> None:
    text = AZURE.read_text(encoding="utf-8")
    for promise in ("PublishTestResults@2", "PublishPipelineArtifact@1", "##vso[task.uploadsummary]", "azure_cli"):
        assert promise in text


def test_audit_matrix_shards_every_tenant_and_merges_the_shards() -> None:
    workflow = yaml.safe_load(AUDIT_MATRIX.read_text(encoding="utf-8"))
    audit, merge = workflow["jobs"]["audit"], workflow["jobs"]["merge"]
    shards = audit["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, int(workflow["env"]["SHARDS"]) + 1))  # --shard I/N for every I of N
    assert audit["strategy"]["fail-fast"] is False
    assert audit["env"]["CBACHECK_CONFIG"]  # the targets come from a named file, never a found one
    run = next(step["run"] for step in audit["steps"] if "cbacheck audit" in str(step.get("run", "")))
    assert '--shard "${{ matrix.shard }}/$SHARDS"' in run
    assert merge["needs"] == "audit" and merge["if"] == "always()"
    merged = next(step["run"] for step in merge["steps"] if "cbacheck merge" in str(step.get("run", "")))
    assert "shards/audit-*.json" in merged and "--sarif" in merged
    assert any(str(step.get("uses", "")).startswith("github/codeql-action/upload-sarif@") for step in merge["steps"])
