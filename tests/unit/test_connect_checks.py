"""The checks of link 6 (organization, token, clock, Exchange) on hand-built facts."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import cbacheck.checks.test_connect as connect_checks
import pytest
import tenantfactory as tf

from cbacheck import profiles, wellknown
from cbacheck.chain import UpstreamFailure
from cbacheck.evidence import Evidence
from cbacheck.facts import FactUnavailable, Unavailable
from cbacheck.profiles import DEFAULT, PROFILES

AADSTS700027_NOT_REGISTERED = (
    "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on "
    f"application. [Reason - The key was not found., Thumbprint of key used by client: '{tf.THUMBPRINT}', Please "
    f"visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{tf.APP_ID}'.]"
)
AADSTS700024 = (
    "AADSTS700024: Client assertion is not within its valid time range. Current time: 2026-03-01T12:00:00.1234567Z, "
    "assertion valid from 2026-03-01T12:13:20.0000000Z, expiry time of assertion 2026-03-01T12:23:20.0000000Z. "
    "Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
)


def recorded(evidence: Evidence) -> dict[str, Any]:
    """The evidence of a passing check, which never passes on nothing: something observed, a rule stated."""
    record = evidence.as_dict()
    assert record["observed"], "a passing check records what it observed"
    assert record["expected"], "a passing check records the rule it applied"
    return record


# --- CBA-ORG-001 ----------------------------------------------------------------------------------


def org_001(setting: str | None) -> dict[str, Any]:
    evidence = Evidence()
    connect_checks.test_organization_is_initial_domain(
        organization=tf.organization(),
        tenant_facts=tf.tenant(organization_setting=setting),
        cba_settings=tf.settings(organization=setting),
        evidence=evidence,
    )
    return recorded(evidence)


@pytest.mark.parametrize("value", [tf.INITIAL_DOMAIN, tf.INITIAL_DOMAIN.upper()])
def test_initial_domain_passes_in_any_case(value: str) -> None:
    record = org_001(value)
    assert record["observed"]["organization setting"] == value
    assert record["observed"]["tenant"]["initialDomain"] == tf.INITIAL_DOMAIN


def test_tenant_id_fails_because_organization_is_documented_as_the_initial_domain() -> None:
    with pytest.raises(AssertionError) as info:
        org_001(tf.TENANT_ID.upper())
    message = str(info.value)
    assert "the tenant ID, which Microsoft does not document for -Organization" in message
    assert f"use -Organization {tf.INITIAL_DOMAIN}" in message and "or the tenant ID" not in message


def test_custom_domain_fails_showing_the_corrected_value() -> None:
    with pytest.raises(AssertionError) as info:
        org_001(tf.CUSTOM_DOMAIN)
    message = str(info.value)
    assert f"organization '{tf.CUSTOM_DOMAIN}'" in message and "a custom domain of this tenant" in message
    assert f"use -Organization {tf.INITIAL_DOMAIN}" in message and tf.TENANT_ID not in message


def test_foreign_domain_fails_as_not_of_this_tenant() -> None:
    with pytest.raises(AssertionError) as info:
        org_001("fabrikam.onmicrosoft.com")
    assert f"not a domain of tenant {tf.TENANT_ID}" in str(info.value)


def test_unset_organization_is_skipped_naming_the_value_to_use() -> None:
    with pytest.raises(pytest.skip.Exception) as info:
        org_001(None)
    assert "organization not configured" in str(info.value) and tf.INITIAL_DOMAIN in str(info.value)


# --- CBA-TOKEN-001 --------------------------------------------------------------------------------


def test_acquired_token_passes_with_header_and_claims_but_nothing_raw() -> None:
    evidence = Evidence()
    connect_checks.test_app_obtains_exchange_token(
        token_attempt=tf.token(), tenant_facts=tf.tenant(), evidence=evidence
    )
    observed = recorded(evidence)["observed"]
    assert observed["token request"]["client_id"] == tf.APP_ID
    assert observed["token claims"]["roles"] == [wellknown.EXCHANGE_MANAGE_AS_APP]
    assert observed["token header"]["alg"] == "RS256"
    assert "access_token" not in str(evidence.as_dict())


def token_001_failure(attempt: Any, facts: Any = None) -> AssertionError:
    with pytest.raises(AssertionError) as info:
        connect_checks.test_app_obtains_exchange_token(
            token_attempt=attempt, tenant_facts=facts or tf.tenant(token=attempt), evidence=Evidence()
        )
    return info.value


def test_unregistered_key_follows_from_key_001_with_code_text_and_support_ids() -> None:
    err = token_001_failure(tf.token_failure(700027, AADSTS700027_NOT_REGISTERED))
    assert isinstance(err, UpstreamFailure) and err.upstream == "CBA-KEY-001"
    message = str(err)
    assert message.startswith("follows from CBA-KEY-001:")
    assert "AADSTS700027" in message and "The key was not found" in message
    assert "likely cause:" in message and "next step:" in message and "corr-1234" in message
    assert tf.APP_ID in message and "expected an access token" in message


@pytest.mark.parametrize(
    ("code", "text", "upstream"),
    [
        (
            700027,
            "AADSTS700027: Client assertion contains an invalid signature. [Reason - The key used is expired.]",
            "CBA-KEY-002",
        ),
        (700027, "AADSTS700027: RSA key size 1024 is less than the minimum required 2048 bits", "CBA-CERT-005"),
        (7000112, "AADSTS7000112: Application is disabled.", "CBA-APP-002"),
        (
            500011,
            "AADSTS500011: The resource principal named https://outlook.office365.com was not found.",
            "CBA-PERM-001",
        ),
    ],
)
def test_diagnosed_upstream_link_is_named_as_follows_from(code: int, text: str, upstream: str) -> None:
    err = token_001_failure(tf.token_failure(code, text))
    assert isinstance(err, UpstreamFailure) and err.upstream == upstream
    assert f"AADSTS{code}" in str(err)


APP_NOT_FOUND = (
    f"AADSTS700016: Application with identifier '{tf.APP_ID}' was not found in the directory '{tf.TENANT_ID}'."
)


def test_app_not_found_follows_from_app_001_when_graph_agrees() -> None:
    attempt = tf.token_failure(700016, APP_NOT_FOUND, error="unauthorized_client")
    err = token_001_failure(attempt, tf.tenant(app=None, app_sp=None, token=attempt))
    assert isinstance(err, UpstreamFailure) and err.upstream == "CBA-APP-001"


def test_app_not_found_with_the_app_present_but_no_service_principal_follows_from_app_002() -> None:
    attempt = tf.token_failure(700016, APP_NOT_FOUND, error="unauthorized_client")
    err = token_001_failure(attempt, tf.tenant(app_sp=None, token=attempt))
    assert isinstance(err, UpstreamFailure) and err.upstream == "CBA-APP-002"
    assert "has no service principal in this tenant" in str(err)


def test_app_not_found_while_graph_shows_app_and_principal_blames_the_tenant_setting() -> None:
    attempt = tf.token_failure(700016, APP_NOT_FOUND, error="unauthorized_client")
    err = token_001_failure(attempt, tf.tenant(token=attempt))
    assert not isinstance(err, UpstreamFailure)
    assert "another tenant or cloud" in str(err) and "check the setting 'tenant'" in str(err)


def test_unknown_tenant_is_the_checks_own_failure_naming_the_tenant_setting() -> None:
    err = token_001_failure(
        tf.token_failure(90002, "AADSTS90002: Tenant 'contoso.example' not found.", error="invalid_request")
    )
    assert not isinstance(err, UpstreamFailure)
    assert "InvalidTenantName" in str(err) and "check the setting 'tenant'" in str(err)


def test_clock_error_is_the_token_checks_own_failure_pointing_at_token_003() -> None:
    # CBA-TOKEN-003 sits downstream of CBA-TOKEN-001, so it cannot be what this failure follows from.
    err = token_001_failure(tf.token_failure(700024, AADSTS700024))
    assert not isinstance(err, UpstreamFailure) and "CBA-TOKEN-003" in str(err)


# --- CBA-TOKEN-002: effective ---------------------------------------------------------------------


def token_002(attempt: Any = None, facts: Any = None, **settings: Any) -> dict[str, Any]:
    evidence = Evidence()
    connect_checks.test_token_claims_are_right(
        token_attempt=attempt or tf.token(),
        tenant_facts=facts or tf.tenant(),
        cba_settings=tf.settings(**settings),
        cba_profile=PROFILES[DEFAULT],
        evidence=evidence,
    )
    return recorded(evidence)


def token_002_failure(attempt: Any = None, facts: Any = None, **settings: Any) -> AssertionError:
    with pytest.raises(AssertionError) as info:
        token_002(attempt, facts, **settings)
    return info.value


def test_right_token_passes() -> None:
    record = token_002()
    assert record["observed"]["token claims"]["appid"] == tf.APP_ID
    assert f"appid {tf.APP_ID}" in record["expected"][0] and f"tid {tf.TENANT_ID}" in record["expected"][0]


@pytest.mark.parametrize("aud", ["https://outlook.office365.com/", wellknown.EXCHANGE_ONLINE_APP_ID])
def test_audience_as_resource_uri_with_slash_or_app_id_passes(aud: str) -> None:
    assert token_002(tf.token(aud=aud))["observed"]["token claims"]["aud"] == aud


def test_consent_granted_but_role_missing_from_token_says_propagating() -> None:
    err = token_002_failure(tf.token(roles=[]))
    assert not isinstance(err, UpstreamFailure)
    message = str(err)
    assert "without Exchange.ManageAsApp" in message and "may still be propagating or the token predates it" in message


def test_role_missing_from_token_without_consent_follows_from_perm_003() -> None:
    err = token_002_failure(tf.token(roles=None), tf.tenant(app_role_grants=()))
    assert isinstance(err, UpstreamFailure) and err.upstream == "CBA-PERM-003"
    assert "admin consent is not granted" in str(err)


def test_token_without_wids_fails() -> None:
    err = token_002_failure(tf.token(wids=None))
    assert "carries no wids claim" in str(err) and not isinstance(err, UpstreamFailure)


def test_token_without_wids_and_without_role_follows_from_role_001() -> None:
    err = token_002_failure(tf.token(wids=None), tf.tenant(role_assignments=()))
    assert isinstance(err, UpstreamFailure) and err.upstream == "CBA-ROLE-001"


def test_wids_without_accepted_role_while_graph_shows_it_says_propagating() -> None:
    err = token_002_failure(tf.token(wids=[wellknown.GLOBAL_READER]))
    assert "none of the accepted roles" in str(err) and "may still be propagating" in str(err)


def test_au_scoped_role_does_not_explain_missing_wids_as_propagation() -> None:
    facts = tf.tenant(role_assignments=(tf.role(scope=tf.AU_SCOPE),))
    err = token_002_failure(tf.token(wids=[]), facts)
    assert isinstance(err, UpstreamFailure) and err.upstream == "CBA-ROLE-001"


def test_both_consent_and_role_missing_follow_from_the_first_in_chain_order() -> None:
    facts = tf.tenant(app_role_grants=(), role_assignments=())
    err = token_002_failure(tf.token(roles=[], wids=[]), facts)
    assert isinstance(err, UpstreamFailure) and err.upstream == "CBA-PERM-003"
    assert "CBA-ROLE-001" in str(err)


def test_wrong_audience_tenant_and_app_are_each_named() -> None:
    attempt = tf.token(aud="https://graph.microsoft.com", tid="ffffffff-0000-4000-8000-000000000000", appid="x")
    message = str(token_002_failure(attempt))
    assert "aud is 'https://graph.microsoft.com', expected 'https://outlook.office365.com'" in message
    assert f"tid is 'ffffffff-0000-4000-8000-000000000000', expected '{tf.TENANT_ID}'" in message
    assert f"appid is 'x', expected '{tf.APP_ID}'" in message


def test_v2_token_azp_counts_as_appid() -> None:
    assert token_002(tf.token(appid=None, azp=tf.APP_ID))["observed"]["token claims"]["azp"] == tf.APP_ID


def test_tid_compared_with_the_organization_when_tenant_is_a_domain() -> None:
    facts = tf.tenant(tenant=tf.INITIAL_DOMAIN)
    assert f"tid {tf.TENANT_ID}" in token_002(tf.token(), facts)["expected"][0]
    err = token_002_failure(tf.token(tid="ffffffff-0000-4000-8000-000000000000"), facts)
    assert tf.TENANT_ID in str(err)


def test_unknown_tenant_id_is_an_error_not_a_pass() -> None:
    facts = tf.tenant(tenant=tf.INITIAL_DOMAIN, organization=Unavailable("organization", "403 Forbidden"))
    with pytest.raises(FactUnavailable) as info:
        token_002(tf.token(), facts)
    assert "cannot be compared" in str(info.value)


def test_token_claims_follow_from_token_001_when_no_token() -> None:
    err = token_002_failure(tf.token_failure(700027, AADSTS700027_NOT_REGISTERED))
    assert isinstance(err, UpstreamFailure) and err.upstream == "CBA-TOKEN-001"


def test_national_cloud_audience_is_expected_for_that_cloud() -> None:
    record = token_002(tf.token(aud="https://outlook.office365.us"), cloud="gcchigh")
    assert record["expected"][0].startswith("aud https://outlook.office365.us ")
    err = token_002_failure(tf.token(), cloud="gcchigh")
    assert "expected 'https://outlook.office365.us'" in str(err)


# --- CBA-TOKEN-003 --------------------------------------------------------------------------------


def token_003(attempt: Any) -> dict[str, Any]:
    evidence = Evidence()
    connect_checks.test_local_clock_agrees_with_entra(
        token_attempt=attempt, tenant_facts=tf.tenant(), evidence=evidence
    )
    return recorded(evidence)


@pytest.mark.parametrize("minutes_before_collection", [-4, 0, 5, 9])
def test_clock_within_window_passes(minutes_before_collection: int) -> None:
    issued = int((tf.NOW - timedelta(minutes=minutes_before_collection)).timestamp())
    record = token_003(tf.token(iat=issued, nbf=issued))
    assert record["observed"]["collected_at - iat (seconds)"] == minutes_before_collection * 60.0
    assert record["details"]["local time (collected_at)"] == tf.NOW.isoformat() and record["details"]["rule"]


@pytest.mark.parametrize(("minutes_before_collection", "direction"), [(-6, "behind"), (11, "ahead of")])
def test_clock_outside_window_fails(minutes_before_collection: int, direction: str) -> None:
    issued = int((tf.NOW - timedelta(minutes=minutes_before_collection)).timestamp())
    with pytest.raises(AssertionError) as info:
        token_003(tf.token(iat=issued, nbf=issued))
    assert f"s {direction} the token's issue time" in str(info.value) and "NTP" in str(info.value)


def test_nbf_is_used_when_iat_is_absent() -> None:
    issued = int((tf.NOW + timedelta(minutes=30)).timestamp())
    with pytest.raises(AssertionError):
        token_003(tf.token(iat=None, nbf=issued))


def test_token_without_issue_time_is_an_error() -> None:
    with pytest.raises(FactUnavailable):
        token_003(tf.token(iat=None, nbf=None))


def test_entra_time_range_refusal_fails_with_the_measured_skew() -> None:
    with pytest.raises(AssertionError) as info:
        token_003(tf.token_failure(700024, AADSTS700024))
    assert not isinstance(info.value, UpstreamFailure)
    assert "about 799 s ahead" in str(info.value)


def test_clock_check_follows_from_token_001_for_other_token_errors() -> None:
    with pytest.raises(UpstreamFailure) as info:
        token_003(tf.token_failure(700027, AADSTS700027_NOT_REGISTERED))
    assert info.value.upstream == "CBA-TOKEN-001"


# --- CBA-EXO-001 ----------------------------------------------------------------------------------


def exo_001(probe: Any, facts: Any = None) -> None:
    connect_checks.test_exchange_accepts_token(
        exchange_probe=probe,
        tenant_facts=facts or tf.tenant(exchange=probe),
        evidence=Evidence(),
        cba_profile=profiles.PROFILES[profiles.DEFAULT],
    )


def test_successful_probe_passes_showing_what_came_back() -> None:
    evidence = Evidence()
    connect_checks.test_exchange_accepts_token(
        exchange_probe=tf.probe_ok(),
        tenant_facts=tf.tenant(),
        evidence=evidence,
        cba_profile=profiles.PROFILES[profiles.DEFAULT],
    )
    answer = recorded(evidence)["observed"]["Exchange answer"]
    assert answer["cmdlet"] == "Get-OrganizationConfig" and answer["status"] == 200
    assert answer["summary"]["Name"] == tf.INITIAL_DOMAIN


def test_no_probe_follows_from_token_001() -> None:
    with pytest.raises(UpstreamFailure) as info:
        exo_001(None)
    assert info.value.upstream == "CBA-TOKEN-001"


def test_role_not_supported_follows_from_role_001_quoting_exchange() -> None:
    text = wellknown.EXCHANGE_ROLE_NOT_SUPPORTED.format(app_id=tf.APP_ID)
    with pytest.raises(UpstreamFailure) as info:
        exo_001(tf.probe_error(401, text))
    assert info.value.upstream == "CBA-ROLE-001"
    assert "isn't supported in this scenario" in str(info.value) and "req-err" in str(info.value)


def test_cmdlet_not_allowed_is_exchanges_own_failure() -> None:
    text = wellknown.EXCHANGE_CMDLET_NOT_ALLOWED.format(cmdlet="Get-OrganizationConfig")
    with pytest.raises(AssertionError) as info:
        exo_001(tf.probe_error(401, text))
    assert not isinstance(info.value, UpstreamFailure)
    assert "User is not allowed to call Get-OrganizationConfig" in str(info.value)
    assert "does not include this cmdlet" in str(info.value)


def test_bare_401_with_token_lacking_manage_as_app_follows_from_token_002() -> None:
    probe = tf.probe_error(401, "")
    with pytest.raises(UpstreamFailure) as info:
        exo_001(probe, tf.tenant(token=tf.token(roles=[]), exchange=probe))
    assert info.value.upstream == "CBA-TOKEN-002"


def test_bare_401_with_manage_as_app_in_token_follows_from_role_001() -> None:
    probe = tf.probe_error(401, "")
    with pytest.raises(UpstreamFailure) as info:
        exo_001(probe)
    assert info.value.upstream == "CBA-ROLE-001"


@pytest.mark.parametrize("status", [None, 429, 500, 503])
def test_outage_or_throttling_is_an_error_not_a_verdict(status: int | None) -> None:
    with pytest.raises(FactUnavailable) as info:
        exo_001(tf.probe_error(status, "Service Unavailable", code="ServiceUnavailable"))
    assert "Get-OrganizationConfig" in str(info.value)


def test_refusal_with_a_custom_domain_organization_follows_from_org_001() -> None:
    probe = tf.probe_error(401, "The organization in the request does not match the tenant of the access token.")
    probe = dataclasses.replace(probe, url="https://outlook.office365.com/adminapi/beta/contoso.com/InvokeCommand")
    with pytest.raises(UpstreamFailure) as info:
        exo_001(probe, tf.tenant(organization_setting=tf.CUSTOM_DOMAIN, exchange=probe))
    assert info.value.upstream == "CBA-ORG-001" and tf.INITIAL_DOMAIN in str(info.value)


def test_downstream_token_checks_name_the_aadsts_code_they_follow_from() -> None:
    err = token_002_failure(tf.token_failure(7000112, "AADSTS7000112: disabled"))
    assert "the app obtained no token (AADSTS7000112)" in str(err)


def test_token_without_wids_passes_for_an_app_exchange_rbac_authorises() -> None:
    rbac = tf.rbac(object_id=tf.APP_SP_ID, roles=("View-Only Configuration",))
    record = token_002(tf.token(wids=None), tf.tenant(role_assignments=(), exchange_rbac=rbac))
    assert "on the Entra-role path only" in record["expected"][0]


def test_token_without_wids_still_fails_on_the_entra_role_path() -> None:
    assert "no wids claim" in str(token_002_failure(tf.token(wids=None), tf.tenant()))


def test_a_security_compliance_refusal_names_its_own_role_not_exchange_administrator() -> None:
    probe = dataclasses.replace(
        tf.probe_ok(),
        ok=False,
        status=401,
        error_code="Unauthorized",
        error_message=wellknown.EXCHANGE_ROLE_NOT_SUPPORTED.format(app_id=tf.APP_ID),
    )
    with pytest.raises(Exception) as raised:
        connect_checks.test_exchange_accepts_token(
            exchange_probe=probe,
            tenant_facts=tf.tenant(exchange=probe),
            evidence=Evidence(),
            cba_profile=profiles.PROFILES[profiles.SECURITY_COMPLIANCE],
        )
    assert "assign Compliance Administrator" in str(raised.value)
    assert "Exchange Administrator" not in str(raised.value).split("next step")[1]
