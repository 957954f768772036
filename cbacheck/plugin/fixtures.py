"""The fixtures checks ask for: the settings, the evidence recorder, the certificate and the tenant facts."""

from __future__ import annotations

from typing import Any

import pytest

from cbacheck import profiles
from cbacheck.chain import UpstreamFailure
from cbacheck.config import Settings
from cbacheck.errors import CbaCheckError, CertificateError
from cbacheck.evidence import Evidence
from cbacheck.facts import (
    NOT_CONFIGURED,
    AppRegistration,
    AppRoleAssignment,
    CertFacts,
    DirectoryRoleAssignment,
    ExchangeProbe,
    FactUnavailable,
    Organization,
    ServicePrincipal,
    Source,
    TenantFacts,
    TokenAttempt,
    Unavailable,
)
from cbacheck.plugin.state import early_facts_key, evidence_of, settings_of, state_of
from cbacheck.report.document import NO_CERTIFICATE


@pytest.fixture(scope="session")
def cba_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved settings (option > env > config file > default), with `sources`."""
    return settings_of(pytestconfig)


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Evidence:
    """The evidence recorder of this check; what it records appears in every report."""
    return evidence_of(request.node)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A profile-dependent check runs once per profile when several are checked (ids like [security-compliance]).

    With one profile nothing is parametrised, so a single-profile run keeps its node IDs.
    """
    marker = metafunc.definition.get_closest_marker("requirement")
    if marker is None or not marker.args or marker.args[0] not in profiles.PROFILE_DEPENDENT:
        return
    if "cba_profile" not in metafunc.fixturenames:
        return
    names = settings_of(metafunc.config).profile
    if len(names) > 1:
        metafunc.parametrize("cba_profile", names, ids=names, indirect=True)


@pytest.fixture
def cba_profile(request: pytest.FixtureRequest, cba_settings: Settings) -> profiles.Profile:
    """The profile this check proves: its parameter, or the first profile checked."""
    name = getattr(request, "param", None) or profile_of_item(request.node, cba_settings)
    return profiles.profile_named(name)


def profile_of_item(item: pytest.Item, settings: Settings) -> str:
    """The profile a check's result belongs to (the key's middle part)."""
    callspec = getattr(item, "callspec", None)
    param = callspec.params.get("cba_profile") if callspec is not None else None
    return str(param) if param else (settings.profile[0] if settings.profile else profiles.DEFAULT)


@pytest.fixture(scope="session")
def local_cert_facts(cba_settings: Settings, pytestconfig: pytest.Config) -> CertFacts:
    """Facts of the local certificate; skips when none is configured, fails the chain when it is unreadable."""
    __tracebackhide__ = True
    if cba_settings.cert is None:
        pytest.skip(NO_CERTIFICATE)
    from cbacheck import certs  # cryptography loads only when a check needs the certificate

    try:
        facts: CertFacts = certs.read_certificate(
            cba_settings.cert, cba_settings.cert_password, cba_settings.source("cert")
        )
    except CertificateError as err:
        # CBA-CERT-001 fails with this message; every other check needing the certificate follows from it.
        raise UpstreamFailure("CBA-CERT-001", str(err)) from None
    state_of(pytestconfig).cert_facts = facts
    return facts


@pytest.fixture
def configured_cert_facts(cba_settings: Settings, request: pytest.FixtureRequest) -> CertFacts | None:
    """The local certificate, or None when none is configured.

    `local_cert_facts` skips when no certificate is configured, which suits link 1 checks. Link 3
    cannot be skipped that way: with a tenant configured, "is our certificate uploaded?" still has to
    be answered, so those checks fail as following from CBA-CERT-001 instead. A certificate that is
    configured but unreadable still fails the chain through `local_cert_facts`.
    """
    if cba_settings.cert is None:
        return None
    facts: CertFacts = request.getfixturevalue("local_cert_facts")
    return facts


@pytest.fixture(scope="session")
def tenant_facts(cba_settings: Settings, pytestconfig: pytest.Config) -> TenantFacts:
    """Every tenant fact, collected once; skips when no tenant is configured."""
    __tracebackhide__ = True
    if not cba_settings.tenant_configured:
        pytest.skip(NOT_CONFIGURED)
    from cbacheck.collect import collect  # requests and msal load only when a check needs the tenant

    early = pytestconfig.stash.get(early_facts_key, None)
    try:
        facts: TenantFacts = early.result() if early is not None else collect(cba_settings)
    except CbaCheckError as err:
        raise FactUnavailable(Unavailable("tenant facts", str(err), error=err)) from None
    state_of(pytestconfig).tenant_facts = facts
    return facts


def _tenant_fact(request: pytest.FixtureRequest, facts: TenantFacts, name: str) -> Any:
    """One field of the tenant facts; Unavailable becomes FactUnavailable (error), its source becomes evidence."""
    __tracebackhide__ = True
    value = getattr(facts, name)
    recorder = evidence_of(request.node)
    source = getattr(value, "source", None)
    if isinstance(source, Source):
        recorder.source(source)
    if isinstance(value, Unavailable):
        raise FactUnavailable(value)
    return value


@pytest.fixture
def organization(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> Organization:
    """The tenant's organization (ID, initial and verified domains)."""
    __tracebackhide__ = True
    fact: Organization = _tenant_fact(request, tenant_facts, "organization")
    return fact


@pytest.fixture
def app(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> AppRegistration | None:
    """The app registration under test; None when it does not exist."""
    __tracebackhide__ = True
    fact: AppRegistration | None = _tenant_fact(request, tenant_facts, "app")
    return fact


@pytest.fixture
def app_sp(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> ServicePrincipal | None:
    """The app's service principal; None when it does not exist."""
    __tracebackhide__ = True
    fact: ServicePrincipal | None = _tenant_fact(request, tenant_facts, "app_sp")
    return fact


@pytest.fixture
def exchange_sp(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> ServicePrincipal | None:
    """The Office 365 Exchange Online service principal; None when the tenant has none."""
    __tracebackhide__ = True
    fact: ServicePrincipal | None = _tenant_fact(request, tenant_facts, "exchange_sp")
    return fact


@pytest.fixture
def resource_sp(
    request: pytest.FixtureRequest, tenant_facts: TenantFacts, cba_profile: profiles.Profile
) -> ServicePrincipal | None:
    """The service principal of the profile's resource application; None when the tenant has none."""
    __tracebackhide__ = True
    value = tenant_facts.resource_sp(cba_profile.permission.resource_app_id)
    source = getattr(value, "source", None)
    if isinstance(source, Source):
        evidence_of(request.node).source(source)
    if isinstance(value, Unavailable):
        raise FactUnavailable(value)
    return value


@pytest.fixture
def app_role_grants(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> tuple[AppRoleAssignment, ...]:
    """App roles granted to the app's service principal (admin consent)."""
    __tracebackhide__ = True
    fact: tuple[AppRoleAssignment, ...] = _tenant_fact(request, tenant_facts, "app_role_grants")
    return fact


@pytest.fixture
def role_assignments(request: pytest.FixtureRequest, tenant_facts: TenantFacts) -> tuple[DirectoryRoleAssignment, ...]:
    """Active directory role assignments of the app's service principal."""
    __tracebackhide__ = True
    fact: tuple[DirectoryRoleAssignment, ...] = _tenant_fact(request, tenant_facts, "role_assignments")
    return fact


@pytest.fixture
def role_eligibilities(
    request: pytest.FixtureRequest, tenant_facts: TenantFacts
) -> tuple[DirectoryRoleAssignment, ...]:
    """PIM-eligible (not active) directory role assignments of the app's service principal."""
    __tracebackhide__ = True
    fact: tuple[DirectoryRoleAssignment, ...] = _tenant_fact(request, tenant_facts, "role_eligibilities")
    return fact


def _profile_dependent(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker("requirement")
    return marker is not None and bool(marker.args) and marker.args[0] in profiles.PROFILE_DEPENDENT


def _collected_for(request: pytest.FixtureRequest, profile: profiles.Profile, what: str) -> None:
    """This version collects the token and the probe for exchange-online only: a profile-dependent check of
    another profile could not verify (the clock check, reported once, reads whichever token there is)."""
    __tracebackhide__ = True
    if _profile_dependent(request) and not profile.token_and_probe_collected:
        reason = f"not collected for profile {profile.name} by this version (docs/profiles.md, Not yet collected)"
        raise FactUnavailable(Unavailable(f"{what} of profile {profile.name}", reason))


@pytest.fixture
def token_attempt(
    request: pytest.FixtureRequest, tenant_facts: TenantFacts, cba_profile: profiles.Profile
) -> TokenAttempt:
    """The app's own attempt to get an Exchange Online token (or its profile's) with its certificate."""
    __tracebackhide__ = True
    if _profile_dependent(request) and cba_profile.name in tenant_facts.profile_tokens:
        value = tenant_facts.profile_tokens[cba_profile.name]
        if isinstance(value, Unavailable):
            raise FactUnavailable(value)
        return value
    _collected_for(request, cba_profile, "the app's token")
    fact: TokenAttempt = _tenant_fact(request, tenant_facts, "token")
    return fact


@pytest.fixture
def exchange_probe(
    request: pytest.FixtureRequest, tenant_facts: TenantFacts, cba_profile: profiles.Profile
) -> ExchangeProbe | None:
    """The read-only Exchange cmdlet run with the app's token; None when there was no token to try."""
    __tracebackhide__ = True
    if _profile_dependent(request) and cba_profile.name in tenant_facts.profile_probes:
        probe = tenant_facts.profile_probes[cba_profile.name]
        if isinstance(probe, Unavailable):
            raise FactUnavailable(probe)
        return probe
    _collected_for(request, cba_profile, "the Exchange probe")
    fact: ExchangeProbe | None = _tenant_fact(request, tenant_facts, "exchange")
    return fact
