"""`cbacheck run --fix apply --yes` on every sandbox scenario: fixed requirements pass, nothing existing is lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cbacheck import cli, profiles, results, wellknown
from cbacheck.commands import demo as democommand
from cbacheck.sandbox import Sandbox, scenario_names


def as_cli_options(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def existing_objects(state: dict[str, Any]) -> set[tuple[str, str]]:
    """Every key credential, app role grant and directory role assignment in a sandbox state dump."""
    found = {
        ("keyCredential", f"{app['appId']}:{key['keyId']}")
        for app in state["applications"]
        for key in app.get("keyCredentials", [])
    }
    found |= {("appRoleAssignment", grant["id"]) for grant in state["appRoleAssignments"]}
    found |= {("roleAssignment", role["id"]) for role in state["roleAssignments"]}
    return found


def automated_mends(plan: list[dict[str, Any]]) -> set[str]:
    return {req for action in plan if action["automated"] for req in action["mends"]}


@pytest.mark.parametrize("name", scenario_names())
def test_fix_apply_mends_what_it_plans_and_keeps_everything(name: str, tmp_path: Path) -> None:
    before_json = tmp_path / "results.json"
    with Sandbox(name, propagation_s=1.0, workdir=tmp_path / "sandbox") as sb:
        state_before = sb.dump()
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
        options.update(
            propagation_timeout_s=30, new_cert_dir=tmp_path / "new-certs", journal=tmp_path / "journal.jsonl"
        )
        # The opt-in writes too, so every scenario's whole chain is exercised.
        opt_ins = ["--create-app", "--enable-service-principal"]
        cli.main(["run", *as_cli_options(options), "--json", str(before_json), "--fix", "apply", "--yes", *opt_ins])
        state_after = sb.dump()
        before = json.loads(before_json.read_text(encoding="utf-8"))
        fixable = automated_mends(before["fixes"]["plan"])
        after_json = tmp_path / "results-after.json"

        # Nothing that existed before the apply is gone after it.
        assert existing_objects(state_before) <= existing_objects(state_after)
        # No fix raises privilege: no over-privileged directory role is ever assigned.
        added_roles = {r["roleDefinitionId"] for r in state_after["roleAssignments"]} - {
            r["roleDefinitionId"] for r in state_before["roleAssignments"]
        }
        assert not added_roles & wellknown.OVER_PRIVILEGED_ROLES

        if not fixable:
            assert not after_json.exists(), "an after-run happened although nothing was applied"
            assert state_after == state_before
            return

        after = json.loads(after_json.read_text(encoding="utf-8"))
        results.validate(after)  # the audit trail of applied actions matches the published schema
        # Keyed as the plan's mends name them: a profile-dependent result of another profile is ID@profile.
        outcomes = {
            profiles.qualified(record["id"], record["profile"]): record["outcome"] for record in after["requirements"]
        }
        assert {req: outcomes[req] for req in fixable if outcomes[req] != "passed"} == {}
        assert after["fixes"]["applied"], "the after report must record the applied actions"
        for row in after["fixes"]["applied"]:
            assert row["status"] in ("applied", "already-done", "manual"), row
            if row["status"] == "applied":
                assert row["verdict"] == "verified", row
                if row["kind"] != "CreateCertificate":  # the only action that writes local files, not Graph
                    assert row["request_id"], row  # Graph's request id is the audit trail

        # A second run with the settings the fixes produced (a new app id or certificate) plans nothing.
        settings_after = after["run"]["settings"]
        options.update(app_id=settings_after["app_id"]["value"], cert=settings_after["cert"]["value"])
        second_json = tmp_path / "second.json"
        cli.main(["run", *as_cli_options(options), "--json", str(second_json)])
    second = json.loads(second_json.read_text(encoding="utf-8"))
    assert [action["id"] for action in second["fixes"]["plan"] if action["automated"]] == []


def test_a_fix_still_propagating_is_pending_not_broken(tmp_path: Path) -> None:
    results_file = tmp_path / "results.json"
    # Consent reaches tokens only after a minute; cbacheck waits two seconds.
    with Sandbox("consent-missing", propagation_s=60, workdir=tmp_path / "sandbox") as sb:
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
        options.update(propagation_timeout_s=2, journal=tmp_path / "journal.jsonl")
        cli.main(["run", *as_cli_options(options), "--json", str(results_file), "--fix", "apply", "--yes"])
    after = json.loads((tmp_path / "results-after.json").read_text(encoding="utf-8"))
    results.validate(after)
    outcomes = {record["id"]: record["outcome"] for record in after["requirements"]}
    assert outcomes["CBA-PERM-003"] == "passed"  # Graph shows the grant at once
    assert outcomes["CBA-TOKEN-002"] == "pending"  # the token does not carry it yet
    assert outcomes["CBA-EXO-001"] == "pending"
    assert after["run"]["verdict"] == "incomplete"
    assert [row["verdict"] for row in after["fixes"]["applied"]] == ["pending propagation"]
    html = next((tmp_path / "reports").glob("*-after.html")).read_text(encoding="utf-8")
    assert "col-result\\&#34;&gt;pending" in html  # the HTML row says pending, not just Failed


def test_an_apply_that_leaves_the_automation_to_switch_certificate_does_not_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Sandbox("expiring-soon", propagation_s=0.5, workdir=tmp_path / "sandbox") as sb:
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
        options.update(propagation_timeout_s=30, new_cert_dir=tmp_path / "new-certs", journal=tmp_path / "j.jsonl")
        code = cli.main(
            ["run", *as_cli_options(options), "--json", str(tmp_path / "r.json"), "--fix", "apply", "--yes"]
        )
    after = json.loads((tmp_path / "r-after.json").read_text(encoding="utf-8"))
    assert {record["outcome"] for record in after["requirements"]} == {"passed"}  # the new certificate works
    assert code == 1  # but the automation still signs in with the old one
    out = capsys.readouterr().out
    assert "use-new-certificate: set cert = " in out


@pytest.mark.parametrize("name", ["sc-exchange-admin-only", "sc-permission-missing"])
def test_security_compliance_fixes_converge_without_raising_privilege(name: str, tmp_path: Path) -> None:
    with Sandbox(name, propagation_s=0.5, workdir=tmp_path / "sandbox") as sb:
        roles_before = {r["roleDefinitionId"] for r in sb.dump()["roleAssignments"]}
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
        options.update(propagation_timeout_s=30, journal=tmp_path / "journal.jsonl")
        cli.main(["run", *as_cli_options(options), "--json", str(tmp_path / "r.json"), "--fix", "apply", "--yes"])
        roles_after = {r["roleDefinitionId"] for r in sb.dump()["roleAssignments"]}
    after = json.loads((tmp_path / "r-after.json").read_text(encoding="utf-8"))
    assert {record["outcome"] for record in after["requirements"]} == {"passed"}
    added = roles_after - roles_before
    # Compliance Administrator is the profile's least privilege; Global Administrator is never assigned.
    assert added <= {profiles.profile_named("security-compliance").least_privileged_role}
    assert not added & {"62e90394-69f5-4237-9190-012177145e10", "e8611ab8-c189-46e8-94e1-60213ab1f814"}
    assert bool(added) == (name == "sc-exchange-admin-only")
