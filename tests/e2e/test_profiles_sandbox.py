"""Several profiles in one run against the sandbox: each profile-dependent result once per profile, the rest once."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from cbacheck import cli, profiles, results
from cbacheck.commands import demo as democommand
from cbacheck.sandbox import Sandbox


def run(name: str, tmp_path: Path, *extra: str) -> tuple[dict[str, Any], Path]:
    results_file = tmp_path / "results.json"
    with Sandbox(name, workdir=tmp_path / "sandbox") as sb:
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
        args = [item for key, value in options.items() for item in (f"--{key.replace('_', '-')}", str(value))]
        cli.main(["run", *args, "--json", str(results_file), *extra])
    document = json.loads(results_file.read_text(encoding="utf-8"))
    results.validate(document)
    return document, next((tmp_path / "reports").glob("*.xml"))


def test_two_profiles_report_each_dependent_requirement_per_profile_and_the_rest_once(tmp_path: Path) -> None:
    document, junit = run("both-profiles-one-consent-missing", tmp_path)
    keys = [(record["app_id"], record["profile"], record["id"]) for record in document["requirements"]]
    assert len(keys) == len(set(keys)), "a result key (app, profile, ID) appears twice"
    per_id = Counter(record["id"] for record in document["requirements"])
    assert per_id["CBA-PERM-003"] == 2 and per_id["CBA-ROLE-001"] == 2
    assert per_id["CBA-CERT-001"] == 1 and per_id["CBA-PERM-005"] == 1 and per_id["CBA-KEY-001"] == 1
    by_key = {(record["profile"], record["id"]): record for record in document["requirements"]}
    assert by_key[("exchange-online", "CBA-PERM-003")]["outcome"] == "passed"
    failed = by_key[("security-compliance", "CBA-PERM-003")]
    assert failed["outcome"] == "failed" and "Microsoft Exchange Online Protection" in failed["message"]
    assert failed["nodeid"].endswith("[security-compliance]")
    # The EOP grant is not counted as extra: its profile is checked.
    assert by_key[("exchange-online", "CBA-PERM-005")]["outcome"] == "passed"
    # The plan mends the other profile's result by its name, with its own resource.
    [grant] = [action for action in document["fixes"]["plan"] if action["automated"]]
    assert grant["mends"] == ["CBA-PERM-003@security-compliance"]
    assert grant["request"]["body"]["appRoleId"] == profiles.EOP_MANAGE_AS_APP_ROLE_ID
    names = {case.get("name") for case in ET.parse(junit).getroot().iter("testcase")}
    assert any(name and name.endswith("[security-compliance]") for name in names), names


def test_one_profile_keeps_node_ids_and_names_its_profile_in_every_result(tmp_path: Path) -> None:
    document, _ = run("sc-healthy", tmp_path)
    assert {record["profile"] for record in document["requirements"]} == {"security-compliance"}
    assert not any("[" in record["nodeid"] for record in document["requirements"])
    outcomes = {record["id"]: record["outcome"] for record in document["requirements"]}
    assert outcomes["CBA-PERM-003"] == "passed" and outcomes["CBA-ROLE-001"] == "passed"
    # The app's token for Security & Compliance is asked for and checked, then its read-only probe is sent.
    assert outcomes["CBA-TOKEN-001"] == "passed" and outcomes["CBA-TOKEN-002"] == "passed"
    assert outcomes["CBA-EXO-001"] == "passed"
    [probe] = [r for r in document["requirements"] if r["id"] == "CBA-EXO-001"]
    assert probe["evidence"]["observed"]["Exchange answer"]["cmdlet"] == "Get-Label"
    [token] = [r for r in document["requirements"] if r["id"] == "CBA-TOKEN-002"]
    assert token["evidence"]["observed"]["token claims"]["aud"] == "https://ps.compliance.protection.outlook.com"


def test_a_gcc_high_security_compliance_run_asks_for_the_us_government_resources(tmp_path: Path) -> None:
    document, _ = run("gcchigh-sc-healthy", tmp_path)
    assert document["run"]["settings"]["cloud"]["value"] == "gcchigh"
    assert {record["outcome"] for record in document["requirements"]} == {"passed"}
    by_id = {record["id"]: record for record in document["requirements"]}
    claims = by_id["CBA-TOKEN-002"]["evidence"]["observed"]["token claims"]
    assert claims["aud"] == "https://ps.compliance.protection.office365.us"
    # The S&C role groups were read in that cloud too (not "not collected").
    assert "pointers" in by_id["CBA-ROLE-001"]["evidence"]["observed"]["Exchange RBAC"]
    # The EOP permission is documented for GCC High: no review flag.
    assert "cloud mapping" not in json.dumps(by_id["CBA-PERM-002"]["evidence"])


def test_an_unconfirmed_cloud_mapping_is_flagged_for_review_and_never_written(tmp_path: Path) -> None:
    results_file = tmp_path / "results.json"
    with Sandbox("gcchigh-exchange-online", workdir=tmp_path / "sandbox") as sb:
        before = sb.dump()
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
        args = [item for key, value in options.items() for item in (f"--{key.replace('_', '-')}", str(value))]
        cli.main(["run", *args, "--json", str(results_file), "--fix", "apply", "--yes"])
        after = sb.dump()
    document = json.loads(results_file.read_text(encoding="utf-8"))
    [perm] = [record for record in document["requirements"] if record["id"] == "CBA-PERM-002"]
    assert perm["outcome"] == "failed" and "UNCONFIRMED" in perm["evidence"]["details"]["cloud mapping"]
    plan = document["fixes"]["plan"]
    assert plan and not [action for action in plan if action["automated"]]
    assert {req for action in plan for req in action["mends"]} == {"CBA-PERM-002", "CBA-PERM-003"}
    assert after == before  # nothing was written


def test_a_security_compliance_role_group_alone_authorises_the_app_end_to_end(tmp_path: Path) -> None:
    document, _ = run("sc-role-group-only", tmp_path)
    assert {record["outcome"] for record in document["requirements"]} == {"passed"}
    [role] = [record for record in document["requirements"] if record["id"] == "CBA-ROLE-001"]
    assert role["evidence"]["details"]["authorised by"] == ["Security & Compliance RBAC (service principal pointer)"]
    assert role["evidence"]["observed"]["Exchange RBAC"]["role groups"] == ["Automation label readers"]
