"""Fixes against the sandbox tenant: plan, apply as the admin, wait out propagation, verify, and plan nothing after."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cbacheck import certs, config, wellknown
from cbacheck.collect import collect
from cbacheck.collect.transport import build_session
from cbacheck.commands import demo as democommand
from cbacheck.errors import FixError
from cbacheck.facts import AppRegistration, CertFacts, ServicePrincipal, TenantFacts, TokenAttempt
from cbacheck.fixers import VERIFIED, fix_on_request, plan
from cbacheck.fixers.apply import admin_graph_client, apply_plan
from cbacheck.fixers.journal import Journal
from cbacheck.fixers.outcomes import ALREADY_DONE, APPLIED
from cbacheck.sandbox import Sandbox

PROPAGATION_S = 2.0


class Killed(BaseException):
    """Stands for the process being killed mid-apply: nothing in cbacheck catches it."""


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox("demo-broken", propagation_s=PROPAGATION_S, workdir=tmp_path / "sandbox") as sb:
        yield sb


def sandbox_settings(sb: Sandbox, tmp_path: Path) -> config.Settings:
    options = democommand.sandbox_settings(sb, tmp_path / "reports")
    options.update(propagation_timeout_s=60, journal=str(tmp_path / "journal.jsonl"))
    return config.resolve(options=options, env={}, cwd=tmp_path)


def read_cert(settings: config.Settings) -> CertFacts:
    assert settings.cert is not None
    return certs.read_certificate(settings.cert, settings.cert_password, "sandbox")


def snapshot(facts: TenantFacts) -> dict[str, set[str]]:
    """What must never be lost: key ids, consent grants and role assignments that exist now."""
    assert isinstance(facts.app, AppRegistration)
    assert isinstance(facts.app_role_grants, tuple) and isinstance(facts.role_assignments, tuple)
    return {
        "keys": {key.key_id for key in facts.app.key_credentials},
        "grants": {grant.id for grant in facts.app_role_grants},
        "roles": {assignment.id for assignment in facts.role_assignments},
    }


def test_demo_broken_is_fixed_verified_and_planned_empty_afterwards(demo: Sandbox, tmp_path: Path) -> None:
    settings = sandbox_settings(demo, tmp_path)
    session = build_session(settings)
    cert = read_cert(settings)
    before = collect(settings, session=session)
    kept = snapshot(before)
    failed = set(demo.scenario.breaks)

    actions = plan(settings, before, cert, failed)
    assert [action.kind for action in actions] == [
        "AddKeyCredential",
        "AddRequiredResourceAccess",
        "GrantAppRole",
        "AssignDirectoryRole",
    ]

    lines: list[str] = []
    requirements = [{"id": req_id, "outcome": "failed"} for req_id in sorted(failed)]
    run = fix_on_request(
        requirements,
        dataclasses.replace(settings, yes=True),
        before,
        cert,
        interactive=False,
        ask=never_asked,
        progress=lines.append,
        session=session,
    )
    assert [result.status for result in run.results] == [APPLIED] * 4, [r.as_dict() for r in run.results]
    assert set(run.verdicts().values()) == {VERIFIED}, run.as_dict()["verification"]
    assert any(line.startswith("waiting for ") and " s of 60 s)" in line for line in lines), lines
    report = json.dumps(run.as_dict())
    assert "BEGIN" not in report and cert.der_base64[:40] not in report and "eyJ" not in report

    after = collect(settings, session=session)
    now = snapshot(after)
    for name, ids in kept.items():
        assert ids <= now[name], f"{name} lost: {ids - now[name]}"
    assert isinstance(after.token, TokenAttempt) and after.token.acquired
    claims = after.token.claims
    assert wellknown.EXCHANGE_MANAGE_AS_APP in claims["roles"]
    assert wellknown.EXCHANGE_ADMINISTRATOR in [wid.lower() for wid in claims["wids"]]
    assert plan(settings, after, cert, failed) == []


def test_an_apply_killed_midway_converges_when_run_again(demo: Sandbox, tmp_path: Path) -> None:
    settings = sandbox_settings(demo, tmp_path)
    session = build_session(settings)
    cert = read_cert(settings)
    failed = set(demo.scenario.breaks)
    facts = collect(settings, session=session)
    actions = plan(settings, facts, cert, failed)
    journal = Journal(tmp_path / "journal.jsonl")
    graph = admin_graph_client(settings, session)

    def die_after_consent_is_sent(line: str) -> None:
        if line.startswith("grant-exchange-consent: POST"):
            raise Killed

    with pytest.raises(Killed):
        apply_plan(actions, graph, settings, journal=journal, progress=die_after_consent_is_sent)
    assert journal.unfinished(settings.tenant or "") == {"grant-exchange-consent"}

    # Run again from freshly collected facts: nothing applied before is applied twice.
    again = plan(settings, collect(settings, session=session), cert, failed)
    results = {r.action_id: r.status for r in apply_plan(again, graph, settings, journal=journal, progress=noop)}
    assert results.get("grant-exchange-consent") in (None, APPLIED, ALREADY_DONE)
    assert set(results.values()) <= {APPLIED, ALREADY_DONE}

    final = collect(settings, session=session)
    assert isinstance(final.app_sp, ServicePrincipal)
    assert isinstance(final.app_role_grants, tuple)
    consents = [g for g in final.app_role_grants if g.app_role_id == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID]
    assert len(consents) == 1
    assert isinstance(final.role_assignments, tuple)
    roles = [a for a in final.role_assignments if a.role_template_id.lower() == wellknown.EXCHANGE_ADMINISTRATOR]
    assert len(roles) == 1
    assert isinstance(final.app, AppRegistration)
    assert sum(key.matches_thumbprint(cert.sha1_thumbprint) for key in final.app.key_credentials) == 1
    assert plan(settings, final, cert, failed) == []


def noop(line: str) -> None:
    del line


def never_asked(prompt: str) -> str:
    raise AssertionError(f"asked {prompt!r}")


def test_apply_without_yes_or_terminal_changes_nothing(demo: Sandbox, tmp_path: Path) -> None:
    settings = sandbox_settings(demo, tmp_path)
    session = build_session(settings)
    before = collect(settings, session=session)
    requirements = [{"id": req_id, "outcome": "failed"} for req_id in demo.scenario.breaks]
    with pytest.raises(FixError, match="refusing to apply 4 changes without confirmation"):
        fix_on_request(
            requirements,
            settings,
            before,
            read_cert(settings),
            interactive=False,
            ask=never_asked,
            progress=noop,
            session=session,
        )
    after = collect(settings, session=session)
    assert snapshot(after) == snapshot(before)
    assert not (tmp_path / "journal.jsonl").exists()
