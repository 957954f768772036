"""The check author's vocabulary: require, follows_from, cannot_verify, and checks that use nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tenantfactory as tf

from cbacheck.chain import UpstreamFailure, cannot_verify, follows_from, require
from cbacheck.diagnosis import diagnose_token_error
from cbacheck.facts import FactUnavailable

CHECKS = Path(__file__).resolve().parents[2] / "checks"
# Types a check would need to spell an outcome by hand; the vocabulary spells them instead.
OUTCOME_TYPES = {"UpstreamFailure", "FactUnavailable", "Unavailable", "AssertionError"}


def test_require_returns_the_value_and_follows_from_upstream_when_it_is_none() -> None:
    assert require("app", "CBA-APP-001", "missing") == "app"
    with pytest.raises(UpstreamFailure) as info:
        require(None, "CBA-APP-001", "the app registration does not exist")
    assert info.value.upstream == "CBA-APP-001"
    assert str(info.value) == "follows from CBA-APP-001: the app registration does not exist"


def test_follows_from_fails_naming_the_upstream_requirement() -> None:
    with pytest.raises(UpstreamFailure) as info:
        follows_from("CBA-CERT-003", "the certificate already expired")
    assert isinstance(info.value, AssertionError), "a broken chain is a failure, not an error"
    assert (info.value.upstream, info.value.reason) == ("CBA-CERT-003", "the certificate already expired")
    assert str(info.value) == "follows from CBA-CERT-003: the certificate already expired"


def test_cannot_verify_is_an_error_naming_what_and_the_missing_permission() -> None:
    with pytest.raises(FactUnavailable) as info:
        cannot_verify("the tenant ID", "the organization could not be read", permission="Organization.Read.All")
    assert not isinstance(info.value, AssertionError), "could not verify is never a failure, let alone a pass"
    missing = info.value.missing
    assert (missing.what, missing.reason, missing.missing_permission) == (
        "the tenant ID",
        "the organization could not be read",
        "Organization.Read.All",
    )
    assert str(info.value) == (
        "could not collect the tenant ID: the organization could not be read (the auditor needs Organization.Read.All)"
    )


def test_diagnosis_fails_as_following_from_an_upstream_requirement_only() -> None:
    not_uploaded = diagnose_token_error(tf.token_failure(700027, "AADSTS700027: The key was not found."))
    with pytest.raises(UpstreamFailure) as info:
        not_uploaded.fail("CBA-TOKEN-001", "no token")
    assert info.value.upstream == "CBA-KEY-001" and info.value.reason == "no token"
    # CBA-TOKEN-003 is downstream of CBA-TOKEN-001: the failure stays the token check's own.
    clock = diagnose_token_error(tf.token_failure(700024, "AADSTS700024: not within its valid time range"))
    with pytest.raises(AssertionError) as own:
        clock.fail("CBA-TOKEN-001", "no token")
    assert not isinstance(own.value, UpstreamFailure) and str(own.value) == "no token"


def _outcome_spellings(path: Path) -> list[str]:
    """Where a check module raises, or imports a type to build an outcome by hand."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise):
            found.append(f"{path.name}:{node.lineno}: raise")
        if isinstance(node, ast.ImportFrom):
            found += [f"{path.name}:{node.lineno}: imports {a.name}" for a in node.names if a.name in OUTCOME_TYPES]
    return found


def test_checks_spell_outcomes_only_with_assert_require_follows_from_and_cannot_verify() -> None:
    modules = sorted(CHECKS.glob("test_*.py"))
    assert modules
    assert [spelling for path in modules for spelling in _outcome_spellings(path)] == []
