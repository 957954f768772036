"""The checks of links 2 to 5 (app, key, permission, role) on hand-built facts."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import cbacheck.checks.test_app as app_checks
import cbacheck.checks.test_key as key_checks
import cbacheck.checks.test_permission as perm_checks
import cbacheck.checks.test_role as role_checks
import pytest
import tenantfactory as tf

from cbacheck import wellknown
from cbacheck.chain import UpstreamFailure
from cbacheck.evidence import Evidence
from cbacheck.facts import FactUnavailable, RequiredResource, ResourceAccess, Unavailable
from cbacheck.plugin import fixtures as plugin_fixtures
from cbacheck.profiles import EXCHANGE_ONLINE as EXCHANGE_ONLINE_NAME
from cbacheck.profiles import PROFILES

EXCHANGE_ONLINE = PROFILES[EXCHANGE_ONLINE_NAME]
# What CBA-PERM-002 reads besides the app: the tenant (for a role id found by value) and the profile.
PERM_002: dict[str, Any] = {"tenant_facts": tf.tenant(), "cba_profile": EXCHANGE_ONLINE, "cba_settings": tf.settings()}


def failure(check: Callable[..., object], *args: Any, **kwargs: Any) -> AssertionError:
    with pytest.raises(AssertionError) as info:
        check(*args, **kwargs)
    return info.value


def upstream_failure(check: Callable[..., object], **kwargs: Any) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as info:
        check(**kwargs)
    return info.value


def own_failure(check: Callable[..., object], **kwargs: Any) -> str:
    """The message of a failure that is the check's own, not one that follows from upstream."""
    err = failure(check, **kwargs)
    assert not isinstance(err, UpstreamFailure), f"expected the check's own failure, got {err}"
    return str(err)


def passes(check: Callable[..., None], **kwargs: Any) -> dict[str, Any]:
    """Run a check that must pass; it must also record what it saw and the rule it applied."""
    evidence = Evidence()
    check(**kwargs, evidence=evidence)
    return recorded(evidence)


def recorded(evidence: Evidence) -> dict[str, Any]:
    """The evidence of a passing check, which never passes on nothing: something observed, a rule stated."""
    record = evidence.as_dict()
    assert record["observed"], "a passing check records what it observed"
    assert record["expected"], "a passing check records the rule it applied"
    return record


# --- CBA-APP-001 ----------------------------------------------------------------------------------


def test_app_registration_found_passes_with_its_ids_as_evidence() -> None:
    record = passes(app_checks.test_app_registration_exists, app=tf.application(), tenant_facts=tf.tenant())
    assert record["observed"]["application"]["id"] == tf.APP_OBJECT_ID


def test_missing_app_registration_names_app_id_tenant_and_aadsts700016() -> None:
    message = own_failure(
        app_checks.test_app_registration_exists, app=None, tenant_facts=tf.tenant(app=None), evidence=Evidence()
    )
    assert tf.APP_ID in message and tf.TENANT_ID in message and "AADSTS700016" in message


# --- CBA-APP-002 ----------------------------------------------------------------------------------


def test_enabled_service_principal_passes() -> None:
    record = passes(
        app_checks.test_service_principal_exists_and_enabled,
        app=tf.application(),
        app_sp=tf.app_sp(),
        tenant_facts=tf.tenant(),
    )
    assert record["observed"]["servicePrincipal"] == {"id": tf.APP_SP_ID, "appId": tf.APP_ID, "accountEnabled": True}


def test_missing_service_principal_fails_on_its_own_when_the_app_exists() -> None:
    message = own_failure(
        app_checks.test_service_principal_exists_and_enabled,
        app=tf.application(),
        app_sp=None,
        tenant_facts=tf.tenant(app_sp=None),
        evidence=Evidence(),
    )
    assert "has no service principal" in message and tf.APP_ID in message


def test_missing_service_principal_follows_from_missing_app() -> None:
    err = upstream_failure(
        app_checks.test_service_principal_exists_and_enabled,
        app=None,
        app_sp=None,
        tenant_facts=tf.tenant(app=None, app_sp=None),
        evidence=Evidence(),
    )
    assert err.upstream == "CBA-APP-001"
    assert str(err).startswith("follows from CBA-APP-001:")


def test_disabled_service_principal_fails_naming_aadsts7000112() -> None:
    message = own_failure(
        app_checks.test_service_principal_exists_and_enabled,
        app=tf.application(),
        app_sp=tf.app_sp(enabled=False),
        tenant_facts=tf.tenant(),
        evidence=Evidence(),
    )
    assert "accountEnabled = false" in message and "expected true" in message and "AADSTS7000112" in message


# --- CBA-APP-003 ----------------------------------------------------------------------------------


def test_single_tenant_audience_passes() -> None:
    record = passes(
        app_checks.test_sign_in_audience_is_this_organization, app=tf.application(), cba_settings=tf.settings()
    )
    assert record["observed"]["signInAudience"] == "AzureADMyOrg" and record["details"]["multi_tenant"] is False


def test_multi_tenant_audience_fails_unless_configured_multi_tenant() -> None:
    multi = tf.application(sign_in_audience="AzureADMultipleOrgs")
    message = own_failure(
        app_checks.test_sign_in_audience_is_this_organization,
        app=multi,
        cba_settings=tf.settings(),
        evidence=Evidence(),
    )
    assert "'AzureADMultipleOrgs'" in message and "expected 'AzureADMyOrg'" in message and "multi_tenant" in message
    record = passes(
        app_checks.test_sign_in_audience_is_this_organization, app=multi, cba_settings=tf.settings(multi_tenant=True)
    )
    assert record["observed"]["signInAudience"] == "AzureADMultipleOrgs" and record["details"]["multi_tenant"] is True


def test_personal_accounts_audience_fails_even_when_multi_tenant() -> None:
    personal = tf.application(sign_in_audience="AzureADandPersonalMicrosoftAccount")
    message = own_failure(
        app_checks.test_sign_in_audience_is_this_organization,
        app=personal,
        cba_settings=tf.settings(multi_tenant=True),
        evidence=Evidence(),
    )
    assert "AzureADandPersonalMicrosoftAccount" in message


def test_audience_check_follows_from_missing_app() -> None:
    err = upstream_failure(
        app_checks.test_sign_in_audience_is_this_organization, app=None, cba_settings=tf.settings(), evidence=Evidence()
    )
    assert err.upstream == "CBA-APP-001"


# --- CBA-APP-004 ----------------------------------------------------------------------------------


def test_app_without_secrets_passes() -> None:
    record = passes(app_checks.test_app_has_no_client_secrets, app=tf.application())
    assert record["observed"]["passwordCredentials"] == []


def test_client_secret_is_listed_by_key_id_name_and_hint() -> None:
    evidence = Evidence()
    message = own_failure(
        app_checks.test_app_has_no_client_secrets,
        app=tf.application(password_credentials=(tf.secret(key_id="s-1", hint="Q~x"),)),
        evidence=evidence,
    )
    assert "1 client secret(s)" in message and "s-1" in message and "legacy secret" in message and "Q~x" in message
    assert evidence.as_dict()["observed"]["passwordCredentials"][0]["keyId"] == "s-1"


# --- CBA-APP-005 ----------------------------------------------------------------------------------


def test_no_expired_keys_passes() -> None:
    record = passes(app_checks.test_app_has_no_expired_key_credentials, app=tf.application(), tenant_facts=tf.tenant())
    [key] = record["observed"]["keyCredentials"]
    assert key["keyId"] == "k0000000-0000-4000-8000-000000000001" and key["thumbprint"] == tf.THUMBPRINT
    assert record["details"]["collected_at"] == tf.NOW.isoformat()


def test_expired_key_is_listed_with_its_end_date() -> None:
    old = tf.key_credential(tf.OTHER_DER, key_id="k-old", end=tf.NOW - timedelta(days=3))
    message = own_failure(
        app_checks.test_app_has_no_expired_key_credentials,
        app=tf.application(key_credentials=(tf.key_credential(), old)),
        tenant_facts=tf.tenant(),
        evidence=Evidence(),
    )
    assert "1 expired key credential(s)" in message and "k-old" in message
    assert (tf.NOW - timedelta(days=3)).strftime("%Y-%m-%d") in message


def test_key_ending_exactly_at_collection_counts_as_expired() -> None:
    ending_now = tf.key_credential(key_id="k-now", end=tf.NOW)
    message = own_failure(
        app_checks.test_app_has_no_expired_key_credentials,
        app=tf.application(key_credentials=(ending_now,)),
        tenant_facts=tf.tenant(),
        evidence=Evidence(),
    )
    assert "k-now" in message


# --- CBA-KEY-001 ----------------------------------------------------------------------------------


def test_uploaded_certificate_matches_on_key_bytes() -> None:
    record = passes(
        key_checks.test_certificate_uploaded_to_app, app=tf.application(), configured_cert_facts=tf.cert_facts()
    )
    assert record["details"]["matching keyIds"] == ["k0000000-0000-4000-8000-000000000001"]
    assert record["observed"]["local certificate"]["sha1_thumbprint"] == tf.THUMBPRINT


@pytest.mark.parametrize(
    "identifier",
    [
        base64.b64encode(bytes.fromhex(tf.THUMBPRINT)).decode(),  # what Graph computes
        tf.THUMBPRINT,  # the hex string Microsoft's how-to sends
        tf.THUMBPRINT.lower(),
    ],
    ids=["base64-of-sha1", "hex", "hex-lowercase"],
)
def test_uploaded_certificate_matches_on_custom_key_identifier_without_key_bytes(identifier: str) -> None:
    key = tf.key_credential(with_key=False, custom_key_identifier=identifier)
    record = passes(
        key_checks.test_certificate_uploaded_to_app,
        app=tf.application(key_credentials=(key,)),
        configured_cert_facts=tf.cert_facts(),
    )
    assert record["details"]["matching keyIds"] == [key.key_id]
    assert record["observed"]["keyCredentials"][0]["customKeyIdentifier"] == identifier


def test_other_certificate_on_the_app_fails_naming_both_thumbprints() -> None:
    other = tf.key_credential(tf.OTHER_DER, key_id="k-other")
    message = own_failure(
        key_checks.test_certificate_uploaded_to_app,
        app=tf.application(key_credentials=(other,)),
        configured_cert_facts=tf.cert_facts(),
        evidence=Evidence(),
    )
    assert tf.THUMBPRINT in message and tf.sha1_hex(tf.OTHER_DER) in message and tf.APP_ID in message
    assert f"expected one with thumbprint {tf.THUMBPRINT}" in message


def test_display_name_alone_never_matches() -> None:
    lookalike = tf.key_credential(tf.OTHER_DER, display_name="CN=exo-automation")
    own_failure(
        key_checks.test_certificate_uploaded_to_app,
        app=tf.application(key_credentials=(lookalike,)),
        configured_cert_facts=tf.cert_facts(),
        evidence=Evidence(),
    )


def test_key_check_without_configured_certificate_follows_from_cert_001() -> None:
    err = upstream_failure(
        key_checks.test_certificate_uploaded_to_app,
        app=tf.application(),
        configured_cert_facts=None,
        evidence=Evidence(),
    )
    assert err.upstream == "CBA-CERT-001" and "no certificate is configured" in str(err)


def test_key_check_without_app_follows_from_app_001() -> None:
    err = upstream_failure(
        key_checks.test_certificate_uploaded_to_app,
        app=None,
        configured_cert_facts=tf.cert_facts(),
        evidence=Evidence(),
    )
    assert err.upstream == "CBA-APP-001"


def test_configured_cert_fixture_returns_none_without_cert_and_never_asks_for_local_cert_facts() -> None:
    class NoFixtures:
        def getfixturevalue(self, name: str) -> Any:
            raise AssertionError(f"asked for {name}")

    fixture = plugin_fixtures.configured_cert_facts.__wrapped__  # type: ignore[attr-defined]
    assert fixture(tf.settings(), NoFixtures()) is None


# --- CBA-KEY-002 ----------------------------------------------------------------------------------


def key_002(*keys: Any, cert: Any = None) -> str:
    return own_failure(
        key_checks.test_uploaded_key_valid_now,
        app=tf.application(key_credentials=keys),
        configured_cert_facts=cert or tf.cert_facts(),
        tenant_facts=tf.tenant(),
        evidence=Evidence(),
    )


def test_current_verify_key_passes() -> None:
    record = passes(
        key_checks.test_uploaded_key_valid_now,
        app=tf.application(),
        configured_cert_facts=tf.cert_facts(),
        tenant_facts=tf.tenant(),
    )
    [key] = record["observed"]["matching keyCredentials"]
    assert key["usage"] == "Verify" and key["type"] == "AsymmetricX509Cert"


def test_expired_uploaded_key_fails_with_its_end_date() -> None:
    message = key_002(tf.key_credential(key_id="k-exp", end=tf.NOW - timedelta(days=1)))
    assert "k-exp" in message and "expired" in message and tf.THUMBPRINT in message
    assert (tf.NOW - timedelta(days=1)).isoformat() in message


def test_not_yet_valid_uploaded_key_fails() -> None:
    message = key_002(tf.key_credential(start=tf.NOW + timedelta(hours=2)))
    assert "not valid before" in message


def test_wrong_type_and_usage_are_both_named() -> None:
    message = key_002(tf.key_credential(type="Symmetric", usage="Sign"))
    assert "type 'Symmetric'" in message and "usage 'Sign'" in message


def test_one_usable_copy_among_expired_ones_passes() -> None:
    expired = tf.key_credential(key_id="k-exp", end=tf.NOW - timedelta(days=1))
    current = tf.key_credential(key_id="k-cur")
    record = passes(
        key_checks.test_uploaded_key_valid_now,
        app=tf.application(key_credentials=(expired, current)),
        configured_cert_facts=tf.cert_facts(),
        tenant_facts=tf.tenant(),
    )
    assert [key["keyId"] for key in record["observed"]["matching keyCredentials"]] == ["k-exp", "k-cur"]


def test_key_validity_follows_from_key_001_when_not_uploaded() -> None:
    err = upstream_failure(
        key_checks.test_uploaded_key_valid_now,
        app=tf.application(key_credentials=(tf.key_credential(tf.OTHER_DER),)),
        configured_cert_facts=tf.cert_facts(),
        tenant_facts=tf.tenant(),
        evidence=Evidence(),
    )
    assert err.upstream == "CBA-KEY-001" and tf.THUMBPRINT in str(err)


# --- CBA-PERM-001 ---------------------------------------------------------------------------------


def test_exchange_service_principal_present_passes() -> None:
    record = passes(
        perm_checks.test_exchange_service_principal_exists,
        resource_sp=tf.exchange_sp(),
        tenant_facts=tf.tenant(),
        cba_profile=EXCHANGE_ONLINE,
    )
    observed = record["observed"]["Exchange service principal"]
    assert observed["id"] == tf.EXCHANGE_SP_ID and observed["has Exchange.ManageAsApp role"] is True


def test_missing_exchange_service_principal_names_aadsts500011() -> None:
    message = own_failure(
        perm_checks.test_exchange_service_principal_exists,
        resource_sp=None,
        tenant_facts=tf.tenant(exchange_sp=None),
        cba_profile=EXCHANGE_ONLINE,
        evidence=Evidence(),
    )
    assert "AADSTS500011" in message and wellknown.EXCHANGE_ONLINE_APP_ID in message and tf.TENANT_ID in message
    assert message.index("manifest") < message.index("subscription")


# --- CBA-PERM-002/003: configured vs granted --------------------------------------------------------


def test_manage_as_app_configured_passes() -> None:
    record = passes(perm_checks.test_exchange_manage_as_app_configured, **PERM_002, app=tf.application())
    [entry] = record["observed"]["requiredResourceAccess"]
    assert entry["resourceAppId"] == wellknown.EXCHANGE_ONLINE_APP_ID
    assert entry["resourceAccess"] == [{"id": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID, "type": "Role"}]


def test_missing_manage_as_app_request_fails() -> None:
    message = own_failure(
        perm_checks.test_exchange_manage_as_app_configured,
        **PERM_002,
        app=tf.application(required_resource_access=()),
        evidence=Evidence(),
    )
    assert "no Office 365 Exchange Online permission" in message and wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID in message


def test_manage_as_app_as_delegated_scope_is_not_configured() -> None:
    scope = RequiredResource(
        wellknown.EXCHANGE_ONLINE_APP_ID, (ResourceAccess(wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID, "Scope"),)
    )
    message = own_failure(
        perm_checks.test_exchange_manage_as_app_configured,
        **PERM_002,
        app=tf.application(required_resource_access=(scope,)),
        evidence=Evidence(),
    )
    assert "delegated permission (type Scope)" in message


def test_wrong_exchange_permission_id_is_named() -> None:
    wrong = RequiredResource(
        wellknown.EXCHANGE_ONLINE_APP_ID, (ResourceAccess("c97b873f-0000-4000-8000-000000000000", "Role"),)
    )
    message = own_failure(
        perm_checks.test_exchange_manage_as_app_configured,
        **PERM_002,
        app=tf.application(required_resource_access=(wrong,)),
        evidence=Evidence(),
    )
    assert "c97b873f-0000-4000-8000-000000000000 (Role)" in message
    # The code a wrong id gives is a consent-time one: the advice is here, not expected from a token.
    assert "makes admin consent fail with AADSTS650051" in message


def perm_003(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "app": tf.application(),
        "app_sp": tf.app_sp(),
        "resource_sp": tf.exchange_sp(),
        "app_role_grants": (tf.grant(),),
        "cba_profile": EXCHANGE_ONLINE,
        "evidence": Evidence(),
    }
    values.update(overrides)
    perm_checks.test_exchange_manage_as_app_granted(**values)
    return recorded(values["evidence"])


def test_manage_as_app_granted_passes() -> None:
    record = perm_003()
    [grant] = record["observed"]["appRoleAssignments"]
    assert grant["value"] == wellknown.EXCHANGE_MANAGE_AS_APP and grant["resourceId"] == tf.EXCHANGE_SP_ID
    assert record["details"]["configured in requiredResourceAccess"] is True


def test_configured_without_consent_fails_perm_003_and_passes_perm_002() -> None:
    passes(perm_checks.test_exchange_manage_as_app_configured, **PERM_002, app=tf.application())
    err = failure(perm_003, app_role_grants=())
    assert not isinstance(err, UpstreamFailure)
    assert "configured in requiredResourceAccess but admin consent is not granted" in str(err)
    assert tf.APP_SP_ID in str(err) and wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID in str(err)
    assert "it holds no application permission grants" in str(err)


def test_granted_without_manifest_entry_still_passes_perm_003() -> None:
    record = perm_003(app=tf.application(required_resource_access=()))
    assert record["details"]["configured in requiredResourceAccess"] is False


def test_grant_on_another_resource_with_the_same_role_id_does_not_count() -> None:
    stray = tf.grant(resource_id=tf.GRAPH_SP_ID, resource_display_name="Microsoft Graph")
    err = failure(perm_003, app_role_grants=(stray,))
    assert "no grant of Exchange.ManageAsApp" in str(err)
    assert f"it holds {wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID} on Microsoft Graph" in str(err)


def test_consent_check_follows_from_missing_service_principals() -> None:
    with pytest.raises(UpstreamFailure) as info:
        perm_003(app_sp=None)
    assert info.value.upstream == "CBA-APP-002"
    with pytest.raises(UpstreamFailure) as info:
        perm_003(resource_sp=None)
    assert info.value.upstream == "CBA-PERM-001"


# --- CBA-PERM-004 ---------------------------------------------------------------------------------


def test_no_full_access_as_app_passes() -> None:
    record = passes(
        perm_checks.test_full_access_as_app_not_granted,
        app_sp=tf.app_sp(),
        exchange_sp=tf.exchange_sp(),
        app_role_grants=(tf.grant(),),
    )
    assert [grant["value"] for grant in record["observed"]["appRoleAssignments"]] == [wellknown.EXCHANGE_MANAGE_AS_APP]


def test_full_access_as_app_grant_fails() -> None:
    ews = tf.grant(wellknown.FULL_ACCESS_AS_APP_ROLE_ID, grant_id="g-ews")
    message = own_failure(
        perm_checks.test_full_access_as_app_not_granted,
        app_sp=tf.app_sp(),
        exchange_sp=tf.exchange_sp(),
        app_role_grants=(tf.grant(), ews),
        evidence=Evidence(),
    )
    assert "full_access_as_app" in message and "g-ews" in message and "expected no such grant" in message


# --- CBA-PERM-005 ---------------------------------------------------------------------------------


def perm_005(*grants: Any, **settings: Any) -> dict[str, Any]:
    return passes(
        perm_checks.test_no_permissions_beyond_allowed_list,
        app_sp=tf.app_sp(),
        exchange_sp=tf.exchange_sp(),
        app_role_grants=grants,
        tenant_facts=tf.tenant(),
        cba_settings=tf.settings(**settings),
    )


def test_only_manage_as_app_passes_the_default_allowed_list() -> None:
    record = perm_005(tf.grant())
    assert [grant["value"] for grant in record["observed"]["appRoleAssignments"]] == [wellknown.EXCHANGE_MANAGE_AS_APP]
    assert record["details"]["allowed_permissions"] == [wellknown.EXCHANGE_MANAGE_AS_APP]


def test_graph_permission_is_a_finding_with_its_name() -> None:
    err = failure(perm_005, tf.grant(), tf.graph_grant("Directory.ReadWrite.All"))
    assert "Directory.ReadWrite.All on Microsoft Graph" in str(err) and "expected only Exchange.ManageAsApp" in str(err)


def test_exchange_role_resolves_through_the_exchange_service_principal() -> None:
    err = failure(perm_005, tf.grant(), tf.grant("b1000000-0000-4000-8000-00000000000b", grant_id="g-mail"))
    assert "Mail.Read on Office 365 Exchange Online" in str(err)


def test_unknown_resource_role_is_named_by_resource_and_id() -> None:
    odd = tf.grant("d0000000-0000-4000-8000-00000000000d", resource_id="r-1", resource_display_name="Contoso API")
    err = failure(perm_005, tf.grant(), odd)
    assert "Contoso API role d0000000-0000-4000-8000-00000000000d" in str(err)


def test_allowed_list_admits_names_and_ids() -> None:
    record = perm_005(
        tf.grant(),
        tf.graph_grant("Application.Read.All"),
        allowed_permissions=("Exchange.ManageAsApp", "application.read.all"),
    )
    values = [grant["value"] for grant in record["observed"]["appRoleAssignments"]]
    assert values == [wellknown.EXCHANGE_MANAGE_AS_APP, "Application.Read.All"]
    odd = tf.grant("d0000000-0000-4000-8000-00000000000d", resource_id="r-1", resource_display_name="Contoso API")
    perm_005(odd, allowed_permissions=("d0000000-0000-4000-8000-00000000000d",))


def test_default_access_assignment_is_not_a_permission() -> None:
    record = perm_005(
        tf.grant(), tf.grant(perm_checks.DEFAULT_ACCESS_ROLE_ID, resource_id="r-2", resource_display_name="X")
    )
    assert [grant["resourceId"] for grant in record["observed"]["appRoleAssignments"]] == [tf.EXCHANGE_SP_ID]


# --- CBA-ROLE-001 ---------------------------------------------------------------------------------


def role_001(
    active: tuple[Any, ...] = (),
    eligible: tuple[Any, ...] = (),
    pim_note: str = "",
    facts: Any = None,
    profile: str = EXCHANGE_ONLINE_NAME,
    **settings: Any,
) -> dict[str, Any]:
    return passes(
        role_checks.test_supported_role_assigned_at_tenant_scope,
        app_sp=tf.app_sp(),
        role_assignments=active,
        tenant_facts=facts or tf.tenant(role_assignments=active, role_eligibilities=eligible, pim_note=pim_note),
        cba_settings=tf.settings(**settings),
        cba_profile=PROFILES[profile],
    )


def test_active_tenant_wide_exchange_administrator_passes() -> None:
    record = role_001((tf.role(),))
    [assignment] = record["observed"]["active roleAssignments"]
    assert assignment["role"] == "Exchange Administrator" and assignment["directoryScopeId"] == "/"
    assert record["details"]["accepted roles"] == [wellknown.EXCHANGE_ADMINISTRATOR]


def test_role_scoped_to_an_administrative_unit_fails_with_that_reason() -> None:
    err = failure(role_001, (tf.role(scope=tf.AU_SCOPE),))
    message = str(err)
    assert "Exchange Administrator at administrative unit scope" in message and tf.AU_SCOPE in message
    assert "not the tenant scope '/'" in message and tf.APP_SP_ID in message


def test_tenant_without_pim_licence_passes_on_the_active_role_and_says_why_no_eligibility_was_read() -> None:
    note = "the tenant has no Microsoft Entra ID P2 or Governance licence, so PIM is not available"
    for record in (role_001((tf.role(),), pim_note=note), role_002((tf.role(),), pim_note=note)):
        assert record["details"]["eligible assignments"] == note


def test_role_only_eligible_fails_with_that_reason() -> None:
    err = failure(role_001, (), (tf.role(status="eligible"),))
    assert "only eligible for Exchange Administrator (PIM), not actively assigned" in str(err)


def test_no_role_at_all_lists_what_is_held() -> None:
    err = failure(role_001, (tf.role(wellknown.APPLICATION_ADMINISTRATOR),))
    assert "holds Application Administrator" in str(err)
    assert "expected an active assignment of Exchange Administrator at tenant scope '/'" in str(err)


def test_accepted_roles_setting_widens_what_passes() -> None:
    reader = (tf.role(wellknown.GLOBAL_READER),)
    with pytest.raises(AssertionError):
        role_001(reader)
    widened = role_001(reader, accepted_roles=("Global Reader",))["details"]["accepted roles"]
    assert wellknown.GLOBAL_READER in widened and wellknown.EXCHANGE_ADMINISTRATOR in widened
    required = role_001(reader, required_role=wellknown.GLOBAL_READER)["details"]["accepted roles"]
    assert required == [wellknown.GLOBAL_READER]


def test_role_check_follows_from_missing_service_principal() -> None:
    err = upstream_failure(
        role_checks.test_supported_role_assigned_at_tenant_scope,
        app_sp=None,
        role_assignments=(),
        tenant_facts=tf.tenant(app_sp=None),
        cba_settings=tf.settings(),
        cba_profile=EXCHANGE_ONLINE,
        evidence=Evidence(),
    )
    assert err.upstream == "CBA-APP-002"


# --- CBA-ROLE-001 through Exchange RBAC (Options 2 and 3 of the app-only article) -------------------

UNREADABLE = Unavailable("the app's Exchange RBAC", "Exchange refused Get-ServicePrincipal: HTTP 401")


def test_exchange_rbac_alone_authorises_the_app_and_says_which_group_roles_and_scopes() -> None:
    rbac = tf.rbac(object_id=tf.APP_SP_ID, roles=("View-Only Configuration",))
    record = role_001((), facts=tf.tenant(role_assignments=(), exchange_rbac=rbac))
    assert record["details"]["authorised by"] == [role_checks.RBAC_PATH]
    observed = record["observed"]["Exchange RBAC"]
    assert observed["role groups"] == ["Automation readers"]
    assert observed["roles and write scopes"][0]["RecipientWriteScope"] == "Organization"


def test_entra_role_and_exchange_rbac_are_both_named() -> None:
    rbac = tf.rbac(object_id=tf.APP_SP_ID, roles=("View-Only Configuration",))
    record = role_001((tf.role(),), facts=tf.tenant(exchange_rbac=rbac))
    assert record["details"]["authorised by"] == [role_checks.ENTRA_PATH, role_checks.RBAC_PATH]


def test_a_pointer_made_with_the_app_registrations_object_id_fails_naming_it() -> None:
    rbac = tf.rbac(object_id=tf.APP_OBJECT_ID, roles=("View-Only Configuration",))
    message = str(failure(role_001, (), facts=tf.tenant(role_assignments=(), exchange_rbac=rbac)))
    assert tf.APP_OBJECT_ID in message and "app registration's object id" in message


def test_unreadable_rbac_passes_only_on_the_probes_proof_and_is_never_failed() -> None:
    accepted = tf.tenant(role_assignments=(), exchange_rbac=UNREADABLE)
    assert role_001((), facts=accepted)["details"]["authorised by"] == [role_checks.RBAC_UNREAD]
    refused = tf.replace(accepted, exchange=tf.probe_error(401, "The role assigned to application x isn't supported"))
    with pytest.raises(FactUnavailable, match="HTTP 401"):
        role_001((), facts=refused)


# --- CBA-ROLE-003 ---------------------------------------------------------------------------------


def role_003(facts: Any, *cmdlets: str) -> dict[str, Any]:
    return passes(
        role_checks.test_exchange_roles_grant_the_cmdlets_the_automation_runs,
        app_sp=tf.app_sp(),
        tenant_facts=facts,
        cba_settings=tf.settings(exchange_cmdlets=cmdlets),
    )


def test_each_listed_cmdlet_is_matched_to_the_assigned_role_that_holds_it() -> None:
    rbac = tf.rbac(
        object_id=tf.APP_SP_ID,
        roles=("View-Only Configuration", "My mailbox reader"),
        Get_Mailbox=("Mail Recipients", "My mailbox reader"),
    )
    record = role_003(tf.tenant(role_assignments=(), exchange_rbac=rbac), "Get-Mailbox")
    assert record["observed"]["assigned roles granting each cmdlet"] == {"Get-Mailbox": ["My mailbox reader"]}


def test_a_cmdlet_no_assigned_role_holds_fails() -> None:
    rbac = tf.rbac(object_id=tf.APP_SP_ID, roles=("View-Only Configuration",), Get_Mailbox=("Mail Recipients",))
    facts = tf.tenant(role_assignments=(), exchange_rbac=rbac)
    message = str(failure(role_003, facts, "Get-Mailbox"))
    assert "holds Get-Mailbox" in message and "View-Only Configuration" in message


def test_no_listed_cmdlets_pass_and_unreadable_rbac_is_an_error() -> None:
    assert role_003(tf.tenant(exchange_rbac=UNREADABLE))["details"]["verdict"].startswith("no cmdlets")
    with pytest.raises(FactUnavailable):
        role_003(tf.tenant(exchange_rbac=UNREADABLE), "Get-Mailbox")


# --- CBA-ROLE-002 ---------------------------------------------------------------------------------


def test_role_check_decides_from_active_assignments_when_eligibilities_cannot_be_read() -> None:
    """PIM unreadable for another reason than licensing (a 403): ROLE-001 still passes on an active role."""
    unread = Unavailable(
        "eligible role assignments", "Graph answered 403", missing_permission="RoleManagement.Read.Directory"
    )
    facts = tf.tenant(role_assignments=(tf.role(),), role_eligibilities=unread)
    record = role_001((tf.role(),), facts=facts)
    assert "not read" in str(record["details"]["eligible assignments"])


def role_002(active: tuple[Any, ...] = (), eligible: tuple[Any, ...] = (), pim_note: str = "") -> dict[str, Any]:
    return passes(
        role_checks.test_no_over_privileged_role,
        app_sp=tf.app_sp(),
        role_assignments=active,
        role_eligibilities=eligible,
        tenant_facts=tf.tenant(role_assignments=active, role_eligibilities=eligible, pim_note=pim_note),
    )


def test_exchange_administrator_alone_is_not_over_privileged() -> None:
    record = role_002((tf.role(),))
    assert [role["role"] for role in record["observed"]["roles"]] == ["Exchange Administrator"]


@pytest.mark.parametrize("template", sorted(wellknown.OVER_PRIVILEGED_ROLES))
def test_over_privileged_roles_are_findings(template: str) -> None:
    err = failure(role_002, (tf.role(), tf.role(template)))
    assert wellknown.DIRECTORY_ROLE_NAMES[template] in str(err) and tf.APP_SP_ID in str(err)


def test_eligible_global_administrator_is_a_finding() -> None:
    err = failure(role_002, (tf.role(),), (tf.role(wellknown.GLOBAL_ADMINISTRATOR, status="eligible"),))
    assert "Global Administrator (eligible" in str(err)


# --- CBA-KEY-003 ----------------------------------------------------------------------------------


def test_a_key_expiring_within_expiry_days_fails_without_any_certificate() -> None:
    soon = tf.key_credential(key_id="k-soon", end=tf.NOW + timedelta(days=10))
    message = own_failure(
        key_checks.test_no_uploaded_key_expires_within_rotation_window,
        app=tf.application(key_credentials=(soon,)),
        tenant_facts=tf.tenant(),
        cba_settings=tf.settings(),
        evidence=Evidence(),
    )
    assert "k-soon" in message and "within 30 days" in message


def test_keys_expiring_later_or_already_expired_pass_key_003() -> None:
    later = tf.key_credential(key_id="k-later", end=tf.NOW + timedelta(days=200))
    expired = tf.key_credential(key_id="k-old", end=tf.NOW - timedelta(days=1))
    passes(
        key_checks.test_no_uploaded_key_expires_within_rotation_window,
        app=tf.application(key_credentials=(later, expired)),
        tenant_facts=tf.tenant(),
        cba_settings=tf.settings(),
    )


def test_a_key_expiring_soon_with_its_successor_uploaded_passes_key_003() -> None:
    old = tf.key_credential(key_id="k-old", end=tf.NOW + timedelta(days=10))
    successor = tf.key_credential(key_id="k-new", start=tf.NOW - timedelta(hours=1), end=tf.NOW + timedelta(days=365))
    passes(
        key_checks.test_no_uploaded_key_expires_within_rotation_window,
        app=tf.application(key_credentials=(old, successor)),
        tenant_facts=tf.tenant(),
        cba_settings=tf.settings(),
    )
