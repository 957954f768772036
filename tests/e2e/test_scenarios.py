"""Every sandbox scenario through `cbacheck run`: each requirement reaches the outcome written down for it."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cbacheck import catalogue, cli, profiles, results
from cbacheck.commands import demo as democommand
from cbacheck.errors import ExitCode
from cbacheck.sandbox import Sandbox, scenario_names

EXPECTED = Path(__file__).resolve().parents[2] / "fixtures" / "expected"


def expected_for(name: str) -> dict[str, Any]:
    return tomllib.loads((EXPECTED / f"{name}.toml").read_text(encoding="utf-8"))


def as_cli_options(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def result_key(record: dict[str, Any], first_profile: str) -> str:
    """How an expected table names a result: its ID for the first profile checked, "ID [profile]" for another."""
    profile = record.get("profile") or first_profile
    return record["id"] if profile == first_profile else f"{record['id']} [{profile}]"


def expected_outcomes(expected: dict[str, Any]) -> dict[str, str]:
    """[outcomes] (the first profile's, and those reported once) plus each [profiles.<name>] table of another."""
    outcomes = dict(expected["outcomes"])
    for profile, table in expected.get("profiles", {}).items():
        outcomes.update({f"{req} [{profile}]": outcome for req, outcome in table.items()})
    return outcomes


def chain_key(key: str) -> tuple[int, str]:
    req, _, profile = key.partition(" [")
    return catalogue.chain_order(req), profile


def test_every_scenario_has_expectations_for_every_requirement() -> None:
    names = scenario_names()
    assert names, "no scenarios shipped"
    for name in names:
        expected = expected_for(name)
        assert set(expected["outcomes"]) == set(catalogue.CATALOGUE), name
        for table in expected.get("profiles", {}).values():
            assert set(table) <= profiles.PROFILE_DEPENDENT, name
        outcomes = expected_outcomes(expected)
        assert set(expected["root_causes"]) <= {k for k, v in outcomes.items() if v != "passed"}, name


@pytest.mark.parametrize("name", scenario_names())
def test_cbacheck_run_reaches_the_expected_outcome_of_every_requirement(name: str, tmp_path: Path) -> None:
    expected = expected_for(name)
    results_file = tmp_path / "results.json"
    with Sandbox(name, workdir=tmp_path / "sandbox") as sb:
        options = democommand.sandbox_settings(sb, tmp_path / "reports")
        declared_breaks = set(sb.scenario.breaks)
        status = cli.main(["run", *as_cli_options(options), "--json", str(results_file)])

    document = json.loads(results_file.read_text(encoding="utf-8"))
    results.validate(document)  # a real run's output matches the published schema
    first = document["requirements"][0]["profile"]
    outcomes = {result_key(record, first): record["outcome"] for record in document["requirements"]}
    roots = [
        result_key(record, first)
        for record in document["requirements"]
        if record["outcome"] != "passed" and not record["follows_from"]
    ]
    want_outcomes = expected_outcomes(expected)
    differences = {req: (outcomes.get(req), want) for req, want in want_outcomes.items() if outcomes.get(req) != want}
    assert not differences, f"{name}: (got, expected) per requirement: {differences}"
    assert set(outcomes) == set(want_outcomes), f"{name}: results without an expected outcome"
    assert sorted(roots, key=chain_key) == expected["root_causes"]
    # The scenario's own statement of what it breaks must agree with the verdicts (in some profile).
    broken = {key.partition(" [")[0] for key, outcome in outcomes.items() if outcome != "passed"}
    assert {req for req in declared_breaks if req not in broken} == set()
    assert status == (ExitCode.OK if all(v == "passed" for v in outcomes.values()) else ExitCode.FAILED)
    # A first broken link is named whenever something failed.
    assert (document["summary"]["first_broken"] is None) == (not roots)
