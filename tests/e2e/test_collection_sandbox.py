"""collect() against the sandbox tenant: real msal, real TLS with a private CA, real $batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from cbacheck import wellknown
from cbacheck.collect import collect
from cbacheck.collect.transport import CbaSession, TransportStats
from cbacheck.config import Settings
from cbacheck.facts import (
    AppRegistration,
    ExchangeProbe,
    ExchangeRbac,
    Organization,
    ServicePrincipal,
    TenantFacts,
    TokenAttempt,
    Unavailable,
)
from cbacheck.sandbox import Sandbox


def settings_for(sandbox: Sandbox, *, auditor: bool = True) -> Settings:
    info = sandbox.info
    identities = sandbox.identities
    settings = Settings(
        tenant=info.tenant_id,
        app_id=identities["under_test"].app_id,
        organization=info.initial_domain,
        cert=identities["under_test"].cert_path,
        login_url=info.login_url,
        graph_url=info.graph_url,
        exchange_url=info.exchange_url,
        compliance_url=info.exchange_url,
        ca_bundle=Path(info.ca_bundle),
        retries=3,
        timeout_s=10.0,
    )
    if not auditor:
        return settings
    return dataclasses.replace(
        settings,
        auditor_credential="certificate",
        auditor_app_id=identities["auditor"].app_id,
        auditor_cert=identities["auditor"].cert_path,
    )


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox(getattr(request, "param", "healthy")) as running:
        yield running


def test_a_healthy_sandbox_gives_every_fact_in_two_round_trips(sandbox: Sandbox) -> None:
    facts = collect(settings_for(sandbox))

    assert isinstance(facts.organization, Organization)
    assert facts.organization.initial_domain == sandbox.info.initial_domain
    assert isinstance(facts.app, AppRegistration)
    assert any(
        k.matches_thumbprint(sandbox.identities["under_test"].thumbprint_sha1) for k in facts.app.key_credentials
    )
    assert isinstance(facts.app_sp, ServicePrincipal) and facts.app_sp.account_enabled
    assert isinstance(facts.exchange_sp, ServicePrincipal)
    assert not isinstance(facts.app_role_grants, Unavailable)
    assert any(g.app_role_id == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID for g in facts.app_role_grants)
    assert not isinstance(facts.role_assignments, Unavailable)
    assert any(r.role_template_id == wellknown.EXCHANGE_ADMINISTRATOR for r in facts.role_assignments)
    assert not isinstance(facts.role_eligibilities, Unavailable)
    assert isinstance(facts.token, TokenAttempt) and facts.token.acquired
    assert "Exchange.ManageAsApp" in facts.token.claims["roles"]
    assert facts.token.header["alg"] == "RS256" and "x5t" not in facts.token.claims
    assert isinstance(facts.exchange, ExchangeProbe) and facts.exchange.ok, facts.exchange
    assert facts.stats.graph_round_trips <= 2
    # The auditor's Graph and Exchange tokens and the app's Exchange token.
    assert facts.stats.token_requests == 3
    assert isinstance(facts.exchange_rbac, ExchangeRbac) and facts.exchange_rbac.pointers == ()
    assert sandbox.stats.snapshot()["graph_requests"] == facts.stats.graph_round_trips


def test_the_sandbox_token_never_reaches_the_facts(sandbox: Sandbox) -> None:
    facts = collect(settings_for(sandbox))

    text = repr(facts)
    assert isinstance(facts.token, TokenAttempt) and facts.token.acquired
    assert "eyJ" not in text.replace(str(facts.token.header), "")  # no JWT segment outside the decoded claims


def snapshot_of(facts: TenantFacts) -> dict[str, str]:
    return {
        name: type(getattr(facts, name)).__name__
        for name in ("organization", "app", "app_sp", "exchange_sp", "token", "exchange")
    }


@pytest.mark.parametrize("sandbox", ["cert-not-uploaded"], indirect=True)
def test_certificate_not_uploaded_is_aadsts700027(sandbox: Sandbox) -> None:
    facts = collect(settings_for(sandbox))

    assert isinstance(facts.token, TokenAttempt) and not facts.token.acquired, snapshot_of(facts)
    assert facts.token.aadsts == 700027
    assert facts.token.error_description.startswith("AADSTS700027")
    assert facts.exchange is None
    assert isinstance(facts.app, AppRegistration)


@pytest.mark.parametrize("sandbox", ["consent-missing"], indirect=True)
def test_consent_missing_gives_a_token_without_roles_and_exchange_401(sandbox: Sandbox) -> None:
    facts = collect(settings_for(sandbox))

    assert facts.app_role_grants == ()
    assert isinstance(facts.token, TokenAttempt) and facts.token.acquired
    assert "Exchange.ManageAsApp" not in (facts.token.claims.get("roles") or [])
    assert isinstance(facts.exchange, ExchangeProbe) and not facts.exchange.ok
    assert facts.exchange.status == 401 and facts.exchange.error_message


@pytest.mark.parametrize("sandbox", ["app-missing"], indirect=True)
def test_a_missing_app_is_none_and_its_token_aadsts700016(sandbox: Sandbox) -> None:
    facts = collect(settings_for(sandbox))

    assert facts.app is None and facts.app_sp is None
    assert isinstance(facts.token, TokenAttempt) and facts.token.aadsts == 700016
    assert facts.stats.graph_round_trips == 1


def test_without_an_auditor_the_app_reads_only_itself_and_403s_name_permissions(sandbox: Sandbox) -> None:
    facts = collect(settings_for(sandbox, auditor=False))

    assert "no auditor configured" in facts.auditor
    assert isinstance(facts.app, AppRegistration) and isinstance(facts.app_sp, ServicePrincipal)
    unreadable = {
        name: fact
        for name in ("organization", "exchange_sp", "role_assignments", "role_eligibilities")
        if isinstance(fact := getattr(facts, name), Unavailable)
    }
    assert unreadable, "the app under test has no Graph permission, so some reads must be refused"
    for fact in unreadable.values():
        assert fact.missing_permission in wellknown.AUDITOR_PERMISSIONS, fact


def test_an_unknown_tenant_is_a_token_fact_and_graph_unavailable(sandbox: Sandbox) -> None:
    unknown = dataclasses.replace(settings_for(sandbox), tenant="nosuchtenant.onmicrosoft.com")

    facts = collect(unknown)

    assert isinstance(facts.token, TokenAttempt | Unavailable)
    if isinstance(facts.token, TokenAttempt):
        assert not facts.token.acquired and facts.token.aadsts == 90002
    assert isinstance(facts.app, Unavailable) and "auditor" in facts.app.reason


def test_injected_faults_are_retried_and_everything_is_still_collected() -> None:
    with Sandbox("healthy", fault_rate=0.6, fault_seed=3) as faulty:
        stats = TransportStats(sleep=lambda seconds: None)  # honour Retry-After without spending it
        settings = dataclasses.replace(settings_for(faulty), retries=8)
        session = CbaSession(ca_bundle=str(settings.ca_bundle), timeout_s=10.0, retries=8, stats=stats)

        facts = collect(settings, session=session)

        assert faulty.stats.snapshot()["faults"] > 0
    assert facts.stats.retries > 0
    assert isinstance(facts.app, AppRegistration) and isinstance(facts.organization, Organization)
    assert isinstance(facts.token, TokenAttempt) and facts.token.acquired
    assert isinstance(facts.exchange, ExchangeProbe) and facts.exchange.ok


def test_exchange_rbac_is_read_by_the_auditor_with_its_own_exchange_token() -> None:
    with Sandbox("option3-combined") as sb:
        settings = dataclasses.replace(settings_for(sb), exchange_cmdlets=("Get-Mailbox",))
        facts = collect(settings)
        sp = facts.app_sp
    rbac = facts.exchange_rbac
    assert isinstance(rbac, ExchangeRbac) and isinstance(sp, ServicePrincipal)
    assert rbac.authorised(sp.object_id)
    assert set(rbac.roles_of(sp.object_id)) == {"View-Only Configuration", "View-Only Recipients"}
    assert rbac.roles_for("Get-Mailbox", sp.object_id) == ("View-Only Recipients",)
    scopes = {a["Role"]: a["CustomRecipientWriteScope"] for a in rbac.write_scopes(sp.object_id)}
    assert scopes["View-Only Recipients"] == "Automation mailboxes"


def test_a_pointer_with_the_app_registrations_object_id_is_found_but_does_not_match() -> None:
    with Sandbox("rbac-wrong-object-id") as sb:
        facts = collect(settings_for(sb))
    rbac, sp, app = facts.exchange_rbac, facts.app_sp, facts.app
    assert isinstance(rbac, ExchangeRbac) and isinstance(sp, ServicePrincipal) and isinstance(app, AppRegistration)
    assert not rbac.authorised(sp.object_id) and rbac.holds_assignment()
    assert [p.object_id for p in rbac.mismatched_pointers(sp.object_id)] == [app.object_id]
    assert facts.rbac_path() is True


def test_without_exchange_access_for_the_auditor_rbac_is_unavailable_naming_the_least_role() -> None:
    with Sandbox("exchange-sp-missing") as sb:
        facts = collect(settings_for(sb))
    assert isinstance(facts.exchange_rbac, Unavailable)
    assert "View-Only Organization Management" in str(facts.exchange_rbac)


def test_a_listed_cmdlet_that_is_no_cmdlet_name_is_never_sent() -> None:
    with Sandbox("rbac-only") as sb:
        facts = collect(dataclasses.replace(settings_for(sb), exchange_cmdlets=("Get-Mailbox; Remove-Mailbox",)))
    assert isinstance(facts.exchange_rbac, Unavailable) and "not a cmdlet name" in str(facts.exchange_rbac)


def test_the_admin_api_reuses_the_exchange_token_for_the_same_resource() -> None:
    with Sandbox("adminapi-healthy") as sandbox:
        both = dataclasses.replace(settings_for(sandbox), profile=("exchange-online", "exchange-admin-api"))
        facts = collect(both)
        sent = sandbox.stats.snapshot()["token_requests"]

    # The auditor's Graph and Exchange tokens and one app token for https://outlook.office365.com (was two).
    assert facts.stats.token_requests == sent == 3
    admin_token = facts.profile_tokens["exchange-admin-api"]
    assert admin_token is facts.token and isinstance(admin_token, TokenAttempt) and admin_token.acquired
    assert admin_token.scope == "https://outlook.office365.com/.default"
    admin_probe = facts.profile_probes["exchange-admin-api"]
    assert isinstance(admin_probe, ExchangeProbe) and admin_probe.ok, admin_probe
    assert isinstance(facts.exchange, ExchangeProbe)  # sent with the same token (this app holds only V2)
    # The request log keeps its order: the app's Exchange probe (by organization), the Admin API's probe beside
    # it, then the auditor's RBAC reads (by tenant id), whichever finished first.
    urls = [source.url for source in facts.requests]
    exchange = urls.index(f"{sandbox.info.exchange_url}/adminapi/beta/{sandbox.info.initial_domain}/InvokeCommand")
    admin = next(i for i, url in enumerate(urls) if url.endswith("/OrganizationConfig"))
    rbac = urls.index(f"{sandbox.info.exchange_url}/adminapi/beta/{sandbox.info.tenant_id}/InvokeCommand")
    assert exchange < admin < rbac, urls
