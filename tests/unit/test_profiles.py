"""Profiles: their data, the profile setting, per-profile permission checks, CBA-PERM-005 and the profile planners."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import cbacheck.checks.test_permission as perm_checks
import cbacheck.checks.test_role as role_checks
import pytest
import tenantfactory as tf

from cbacheck import profiles, wellknown
from cbacheck.chain import UpstreamFailure
from cbacheck.config import resolve
from cbacheck.errors import ConfigError
from cbacheck.evidence import Evidence
from cbacheck.facts import (
    AppRole,
    ExchangeRbac,
    FactUnavailable,
    RequiredResource,
    ResourceAccess,
    ServicePrincipal,
)
from cbacheck.fixers.actions import (
    AddRequiredResourceAccess,
    AddRoleGroupMember,
    AssignDirectoryRole,
    CreateExchangeServicePrincipal,
    GrantAppRole,
    ManualStep,
)
from cbacheck.fixers.planners import failed_ids, plan
from cbacheck.report.exceptions import PROFILES

EOP_SP_ID = "e0000000-0000-4000-8000-0000000000e0"
SC = profiles.PROFILES[profiles.SECURITY_COMPLIANCE]
EXO = profiles.PROFILES[profiles.EXCHANGE_ONLINE]
ADMIN_API = profiles.PROFILES[profiles.EXCHANGE_ADMIN_API]
V2_ROLE_ID = "b2000000-0000-4000-8000-0000000000b2"


def eop_sp() -> ServicePrincipal:
    role = AppRole(wellknown.EOP_MANAGE_AS_APP_ROLE_ID, wellknown.EXCHANGE_MANAGE_AS_APP, "Manage", ("Application",))
    return ServicePrincipal(EOP_SP_ID, wellknown.EOP_APP_ID, wellknown.EOP_DISPLAY_NAME, True, (role,))


def eop_grant() -> Any:
    return tf.grant(
        wellknown.EOP_MANAGE_AS_APP_ROLE_ID,
        resource_id=EOP_SP_ID,
        resource_display_name=wellknown.EOP_DISPLAY_NAME,
        grant_id="g-eop",
    )


def eop_entry() -> RequiredResource:
    return RequiredResource(wellknown.EOP_APP_ID, (ResourceAccess(wellknown.EOP_MANAGE_AS_APP_ROLE_ID, "Role"),))


def sc_tenant(**overrides: Any) -> Any:
    values: dict[str, Any] = {
        "resource_sps": {wellknown.EOP_APP_ID: eop_sp()},
        "app": tf.application(required_resource_access=(eop_entry(),)),
        "app_role_grants": (eop_grant(),),
        "role_assignments": (tf.role(wellknown.COMPLIANCE_ADMINISTRATOR),),
    }
    values.update(overrides)
    return tf.tenant(**values)


# --- the data ---------------------------------------------------------------------------------------


def test_security_compliance_is_the_documented_eop_permission_without_exchange_administrator() -> None:
    assert SC.permission.resource_app_id == "00000007-0000-0ff1-ce00-000000000000"
    assert SC.permission.app_role_id == "455e5cd2-84e8-4751-8344-5672145dfa17"
    assert wellknown.COMPLIANCE_ADMINISTRATOR in SC.supported_roles
    assert wellknown.EXCHANGE_ADMINISTRATOR not in SC.supported_roles
    assert EXO.permission.app_role_id == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
    assert ADMIN_API.permission.app_role_id is None and not ADMIN_API.permission.confirmed


def test_national_clouds_map_only_what_is_documented() -> None:
    assert profiles.permission_in(SC, "gcchigh") == (profiles.EOP_PERMISSION, True)
    assert profiles.permission_in(SC, "dod") == (profiles.EOP_PERMISSION, True)
    assert profiles.permission_in(EXO, "global")[1] is True
    assert profiles.permission_in(EXO, "gcchigh")[1] is False  # the article's note names only S&C there
    assert profiles.permission_in(ADMIN_API, "global")[1] is False


def test_profiles_module_imports_only_wellknown() -> None:
    source = Path(profiles.__file__).read_text(encoding="utf-8")
    imported = {
        alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert {name for name in imported if name.startswith("cbacheck")} == {"cbacheck.wellknown"}


def test_exceptions_may_name_every_profile() -> None:
    assert set(PROFILES) == set(profiles.NAMES)


# --- the setting ------------------------------------------------------------------------------------


def test_profile_setting_defaults_to_exchange_online_and_takes_a_list(tmp_path: Path) -> None:
    assert resolve({}, env={}, cwd=tmp_path).profile == ("exchange-online",)
    chosen = resolve({"profile": "exchange-online,security-compliance"}, env={}, cwd=tmp_path)
    assert chosen.profile == ("exchange-online", "security-compliance")


def test_an_unknown_profile_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profile entry 'teams'"):
        resolve({"profile": "teams"}, env={}, cwd=tmp_path)


# --- the checks per profile -------------------------------------------------------------------------


def run(check: Any, **kwargs: Any) -> dict[str, Any]:
    evidence = Evidence()
    check(**kwargs, evidence=evidence)
    return evidence.as_dict()


def test_security_compliance_permission_checks_read_the_eop_resource() -> None:
    facts = sc_tenant()
    run(perm_checks.test_exchange_service_principal_exists, resource_sp=eop_sp(), tenant_facts=facts, cba_profile=SC)
    run(
        perm_checks.test_exchange_manage_as_app_configured,
        app=facts.app,
        tenant_facts=facts,
        cba_profile=SC,
        cba_settings=tf.settings(),
    )
    run(
        perm_checks.test_exchange_manage_as_app_granted,
        app=facts.app,
        app_sp=tf.app_sp(),
        resource_sp=eop_sp(),
        app_role_grants=facts.app_role_grants,
        cba_profile=SC,
    )


def test_the_exchange_online_permission_does_not_satisfy_security_compliance() -> None:
    facts = tf.tenant(resource_sps={wellknown.EOP_APP_ID: eop_sp()})  # Exchange Online's permission only
    with pytest.raises(AssertionError, match="no Microsoft Exchange Online Protection permission"):
        run(
            perm_checks.test_exchange_manage_as_app_configured,
            app=facts.app,
            tenant_facts=facts,
            cba_profile=SC,
            cba_settings=tf.settings(),
        )
    with pytest.raises(AssertionError, match="has no grant of Exchange.ManageAsApp on Microsoft Exchange Online"):
        run(
            perm_checks.test_exchange_manage_as_app_granted,
            app=facts.app,
            app_sp=tf.app_sp(),
            resource_sp=eop_sp(),
            app_role_grants=facts.app_role_grants,
            cba_profile=SC,
        )


def test_a_missing_eop_service_principal_blocks_consent_naming_it() -> None:
    with pytest.raises(UpstreamFailure, match="Microsoft Exchange Online Protection") as caught:
        run(
            perm_checks.test_exchange_manage_as_app_granted,
            app=tf.application(),
            app_sp=tf.app_sp(),
            resource_sp=None,
            app_role_grants=(),
            cba_profile=SC,
        )
    assert caught.value.upstream == "CBA-PERM-001"


def test_admin_api_permission_id_is_resolved_by_value_or_not_verified() -> None:
    with pytest.raises(FactUnavailable, match="Exchange.ManageAsAppV2"):
        run(
            perm_checks.test_exchange_manage_as_app_configured,
            app=tf.application(),
            tenant_facts=tf.tenant(),
            cba_profile=ADMIN_API,
            cba_settings=tf.settings(),
        )
    v2 = AppRole(V2_ROLE_ID, profiles.EXCHANGE_MANAGE_AS_APP_V2, "V2", ("Application",))
    exchange = tf.exchange_sp()
    exchange = ServicePrincipal(
        exchange.object_id, exchange.app_id, exchange.display_name, True, (*exchange.app_roles, v2)
    )
    app = tf.application(
        required_resource_access=(
            RequiredResource(wellknown.EXCHANGE_ONLINE_APP_ID, (ResourceAccess(V2_ROLE_ID, "Role"),)),
        )
    )
    run(
        perm_checks.test_exchange_manage_as_app_configured,
        app=app,
        tenant_facts=tf.tenant(exchange_sp=exchange),
        cba_profile=ADMIN_API,
        cba_settings=tf.settings(),
    )


def test_the_admin_api_names_a_manage_as_app_request_instead_of_blaming_an_unknown_id() -> None:
    v2 = AppRole(V2_ROLE_ID, profiles.EXCHANGE_MANAGE_AS_APP_V2, "V2", ("Application",))
    exchange = tf.exchange_sp()
    exchange = ServicePrincipal(
        exchange.object_id, exchange.app_id, exchange.display_name, True, (*exchange.app_roles, v2)
    )
    with pytest.raises(AssertionError) as caught:
        run(
            perm_checks.test_exchange_manage_as_app_configured,
            app=tf.application(),  # requests Exchange.ManageAsApp (the PowerShell permission)
            tenant_facts=tf.tenant(exchange_sp=exchange),
            cba_profile=ADMIN_API,
            cba_settings=tf.settings(),
        )
    message = str(caught.value)
    assert f"other Exchange permissions: Exchange.ManageAsApp {wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID}" in message
    assert "AADSTS650051" not in message


def test_exchange_manage_as_app_in_gcc_high_is_checked_and_flagged_for_review() -> None:
    record = run(
        perm_checks.test_exchange_manage_as_app_configured,
        app=tf.application(),
        tenant_facts=tf.tenant(),
        cba_profile=EXO,
        cba_settings=tf.settings(cloud="gcchigh"),
    )
    assert "UNCONFIRMED" in record["details"]["cloud mapping"]
    default = run(
        perm_checks.test_exchange_manage_as_app_configured,
        app=tf.application(),
        tenant_facts=tf.tenant(),
        cba_profile=EXO,
        cba_settings=tf.settings(),
    )
    assert "cloud mapping" not in default["details"]


def test_exchange_administrator_alone_does_not_authorise_security_compliance() -> None:
    facts = sc_tenant(role_assignments=(tf.role(),))  # Exchange Administrator
    with pytest.raises(FactUnavailable, match="none of Compliance Administrator"):
        run(
            role_checks.test_supported_role_assigned_at_tenant_scope,
            app_sp=tf.app_sp(),
            role_assignments=facts.role_assignments,
            tenant_facts=facts,
            cba_settings=tf.settings(profile=("security-compliance",)),
            cba_profile=SC,
        )
    compliance = sc_tenant()
    record = run(
        role_checks.test_supported_role_assigned_at_tenant_scope,
        app_sp=tf.app_sp(),
        role_assignments=compliance.role_assignments,
        tenant_facts=compliance,
        cba_settings=tf.settings(profile=("security-compliance",)),
        cba_profile=SC,
    )
    assert record["details"]["profile"] == "security-compliance"


# --- CBA-PERM-005 -----------------------------------------------------------------------------------


def perm_005(grants: tuple[Any, ...], profile: tuple[str, ...], **facts: Any) -> dict[str, Any]:
    return run(
        perm_checks.test_no_permissions_beyond_allowed_list,
        app_sp=tf.app_sp(),
        exchange_sp=tf.exchange_sp(),
        app_role_grants=grants,
        tenant_facts=tf.tenant(**facts),
        cba_settings=tf.settings(profile=profile),
    )


def test_the_eop_permission_is_not_extra_when_security_compliance_is_checked() -> None:
    record = perm_005((tf.grant(), eop_grant()), ("exchange-online", "security-compliance"))
    assert (
        "Exchange.ManageAsApp on Microsoft Exchange Online Protection (profile security-compliance)"
        in (record["details"]["known Exchange permissions"])
    )


def test_the_eop_permission_is_a_named_finding_when_its_profile_is_not_checked() -> None:
    with pytest.raises(AssertionError, match="a known Exchange permission of profile security-compliance"):
        perm_005((tf.grant(), eop_grant()), ("exchange-online",))


def test_manage_as_app_v2_is_not_extra_for_the_admin_api_profile() -> None:
    v2 = AppRole(V2_ROLE_ID, profiles.EXCHANGE_MANAGE_AS_APP_V2, "V2", ("Application",))
    base = tf.exchange_sp()
    exchange = ServicePrincipal(base.object_id, base.app_id, base.display_name, True, (*base.app_roles, v2))
    grant = tf.grant(V2_ROLE_ID, grant_id="g-v2")
    run(
        perm_checks.test_no_permissions_beyond_allowed_list,
        app_sp=tf.app_sp(),
        exchange_sp=exchange,
        app_role_grants=(grant,),
        tenant_facts=tf.tenant(exchange_sp=exchange),
        cba_settings=tf.settings(profile=("exchange-admin-api",)),
    )
    with pytest.raises(AssertionError, match="Exchange.ManageAsAppV2 on Office 365 Exchange Online \\(a known"):
        run(
            perm_checks.test_no_permissions_beyond_allowed_list,
            app_sp=tf.app_sp(),
            exchange_sp=exchange,
            app_role_grants=(grant,),
            tenant_facts=tf.tenant(exchange_sp=exchange),
            cba_settings=tf.settings(),
        )


# --- plans ------------------------------------------------------------------------------------------


def test_failed_ids_name_another_profiles_results_with_it() -> None:
    records = [
        {"id": "CBA-PERM-003", "profile": "exchange-online", "outcome": "failed", "follows_from": None},
        {"id": "CBA-PERM-003", "profile": "security-compliance", "outcome": "failed", "follows_from": None},
        {"id": "CBA-APP-004", "profile": "security-compliance", "outcome": "failed", "follows_from": None},
    ]
    assert failed_ids(records) == {"CBA-PERM-003", "CBA-PERM-003@security-compliance", "CBA-APP-004"}


def test_security_compliance_plan_adds_and_grants_the_eop_permission_only() -> None:
    facts = sc_tenant(app=tf.application(), app_role_grants=(tf.grant(),))
    settings = tf.settings(profile=("exchange-online", "security-compliance"))
    actions = plan(settings, facts, None, {"CBA-PERM-002@security-compliance", "CBA-PERM-003@security-compliance"})
    add, grant = actions
    assert isinstance(add, AddRequiredResourceAccess) and isinstance(grant, GrantAppRole)
    assert (add.resource_app_id, add.app_role_id) == (wellknown.EOP_APP_ID, wellknown.EOP_MANAGE_AS_APP_ROLE_ID)
    assert (grant.resource_id, grant.app_role_id) == (EOP_SP_ID, wellknown.EOP_MANAGE_AS_APP_ROLE_ID)
    assert add.mends == ("CBA-PERM-002@security-compliance",)
    # Verified in the app's Security & Compliance token, which cbacheck asks for in the global cloud.
    assert grant.token_carries_role and grant.token_profile == "security-compliance"


def test_no_permission_is_written_where_its_cloud_mapping_is_unconfirmed() -> None:
    for profile, failed in (
        ("exchange-online", {"CBA-PERM-002", "CBA-PERM-003"}),
        ("exchange-admin-api", {"CBA-PERM-002@exchange-admin-api"}),
    ):
        settings = tf.settings(cloud="gcchigh" if profile == "exchange-online" else "global", profile=(profile,))
        actions = plan(settings, tf.tenant(app_role_grants=()), None, failed)
        assert actions and all(isinstance(action, ManualStep) for action in actions), profile
    # Security & Compliance's permission is documented for GCC High: it is planned there.
    settings = tf.settings(cloud="gcchigh", profile=("security-compliance",))
    actions = plan(
        settings, sc_tenant(app=tf.application(), app_role_grants=()), None, {"CBA-PERM-002@security-compliance"}
    )
    assert [type(action) for action in actions] == [AddRequiredResourceAccess, GrantAppRole]


def test_another_profiles_missing_role_is_its_least_privilege_assigned_never_global_administrator() -> None:
    from cbacheck.fixers.actions import AssignDirectoryRole

    failed = {"CBA-ROLE-001@security-compliance"}
    facts = sc_tenant(role_assignments=(tf.role(),), profile_rbac={SC.name: tf.rbac()})
    for required in ("Exchange Administrator", "Global Administrator"):
        settings = tf.settings(profile=("security-compliance",), required_role=required)
        [action] = plan(settings, facts, None, failed)
        assert isinstance(action, AssignDirectoryRole), action
        assert action.role_definition_id == wellknown.COMPLIANCE_ADMINISTRATOR
        assert action.mends == ("CBA-ROLE-001@security-compliance",)
    # A supported role the settings name is kept (Global Reader for read-only automation).
    reader = tf.settings(profile=("security-compliance",), required_role="Global Reader")
    [action] = plan(reader, facts, None, failed)
    assert isinstance(action, AssignDirectoryRole) and action.role_definition_id == wellknown.GLOBAL_READER
    # An S&C role group meant to authorise the app (its pointer holds a role): no Entra role over it.
    pointer = tf.rbac(object_id="0f000000-0000-4000-8000-0000000000f0", roles=("Sensitivity Label Reader",))
    settings = tf.settings(profile=("security-compliance",))
    [step] = plan(settings, tf.replace(facts, profile_rbac={SC.name: pointer}), None, failed)
    assert isinstance(step, ManualStep) and "Compliance Administrator" in step.explanation


def test_the_admin_api_role_is_mended_by_exchange_rbac_never_by_an_entra_role() -> None:
    groups = tf.rbac(object_id="other-sp", roles=("View-Only Configuration",), group="Automation readers").role_groups
    facts = tf.tenant(role_assignments=(), exchange_rbac=ExchangeRbac((), (), groups, {}))
    settings = tf.settings(profile=("exchange-admin-api",), rbac_role_group="Automation readers")
    actions = plan(settings, facts, None, {"CBA-ROLE-001@exchange-admin-api"})
    pointer, member = actions
    assert isinstance(pointer, CreateExchangeServicePrincipal) and isinstance(member, AddRoleGroupMember)
    assert member.group == "Automation readers"
    assert {a.mends for a in actions} == {("CBA-ROLE-001@exchange-admin-api",)}
    # Without a named role group it is a manual step; an Entra role is never planned for this profile.
    unnamed = plan(tf.settings(profile=("exchange-admin-api",)), facts, None, {"CBA-ROLE-001@exchange-admin-api"})
    assert unnamed and not any(isinstance(a, AssignDirectoryRole) for a in unnamed)
    assert isinstance(unnamed[-1], ManualStep)


def test_the_admin_api_profile_is_the_documented_chain() -> None:
    assert ADMIN_API.token_resource == "https://outlook.office365.com"
    assert ADMIN_API.probe_path == "/adminapi/v2.0/{tenant}/OrganizationConfig"
    assert ADMIN_API.supported_roles == {wellknown.EXCHANGE_ADMINISTRATOR}
    assert ADMIN_API.unconfirmed


# --- redirects --------------------------------------------------------------------------------------


def test_a_regional_security_compliance_redirect_is_followed_only_within_its_service_domain() -> None:
    from cbacheck.collect.transport import trusted_target

    origin = f"https://{SC.endpoint}/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"
    domains = SC.service_domains
    assert trusted_target(origin, "https://eur05b.ps.compliance.protection.outlook.com/adminapi/beta/x", domains)
    assert not trusted_target(origin, "https://ps.compliance.protection.outlook.com.evil.example/x", domains)
    assert not trusted_target(origin, "https://outlook.office365.com/adminapi/beta/x", domains)
    assert not trusted_target(origin, "http://eur05b.ps.compliance.protection.outlook.com/x", domains)


# --- exceptions keyed by profile --------------------------------------------------------------------


def test_an_exception_for_one_profile_accepts_only_that_profiles_result(tmp_path: Path) -> None:
    from datetime import date

    from cbacheck.report import gate
    from cbacheck.report.exceptions import load_exceptions

    path = tmp_path / "exceptions.toml"
    path.write_text(
        '[[exception]]\nid = "CBA-PERM-003"\nprofile = "security-compliance"\nreason = "pending change"\n'
        'approver = "ciso@contoso.example"\nexpires = 2026-06-30\n',
        encoding="utf-8",
    )
    settings = resolve({"exceptions": str(path), "profile": "exchange-online,security-compliance"}, {}, tmp_path)
    exceptions = load_exceptions(settings)
    failing = {"id": "CBA-PERM-003", "outcome": "failed", "severity": "critical", "message": "m", "remediation": ""}
    today = date(2026, 6, 1)
    judged = gate.judged({**failing, "profile": "security-compliance"}, settings, exceptions, today)
    assert judged["outcome"] == "accepted" and judged["profile"] == "security-compliance"
    assert gate.judged({**failing, "profile": "exchange-online"}, settings, exceptions, today)["outcome"] == "failed"


def test_the_console_tells_two_profiles_results_apart() -> None:
    from cbacheck.report.console import cause_lines

    def record(req_id: str, profile: str, outcome: str, follows: str | None = None) -> dict[str, Any]:
        return {
            "id": req_id,
            "profile": profile,
            "outcome": outcome,
            "severity": "critical",
            "message": f"{req_id} in {profile}",
            "follows_from": follows,
        }

    lines = cause_lines(
        [
            record("CBA-CERT-001", "exchange-online", "passed"),
            record("CBA-PERM-003", "exchange-online", "failed"),
            record("CBA-PERM-003", "security-compliance", "failed"),
            record("CBA-TOKEN-002", "security-compliance", "blocked", "CBA-PERM-003"),
        ]
    )
    assert any(line.startswith("  CBA-PERM-003 (critical) failed") for line in lines), lines
    assert any(line.startswith("  CBA-PERM-003 [security-compliance] (critical) failed") for line in lines), lines
    assert "      and, following from it: CBA-TOKEN-002 [security-compliance]" in lines


# --- the Security & Compliance token ----------------------------------------------------------------


def token_002(attempt: Any, facts: Any, profile: Any) -> dict[str, Any]:
    import cbacheck.checks.test_connect as connect_checks

    return run(
        connect_checks.test_token_claims_are_right,
        token_attempt=attempt,
        tenant_facts=facts,
        cba_settings=tf.settings(profile=("exchange-online", "security-compliance")),
        cba_profile=profile,
    )


def test_a_security_compliance_token_is_judged_by_its_own_audience_and_roles() -> None:
    sc_token = tf.token(aud=SC.token_resource, wids=[wellknown.COMPLIANCE_ADMINISTRATOR])
    facts = sc_tenant(role_assignments=(tf.role(wellknown.COMPLIANCE_ADMINISTRATOR),))
    record = token_002(sc_token, facts, SC)
    assert record["expected"][0].startswith("aud https://ps.compliance.protection.outlook.com (or 00000007-")
    # The same token is wrong for Exchange Online (audience), and Exchange Online's for S&C.
    with pytest.raises(AssertionError, match="aud is 'https://ps.compliance.protection.outlook.com'"):
        token_002(sc_token, facts, EXO)
    with pytest.raises(AssertionError, match="aud is 'https://outlook.office365.com'"):
        token_002(tf.token(wids=[wellknown.COMPLIANCE_ADMINISTRATOR]), facts, SC)


def test_a_security_compliance_token_with_exchange_administrator_only_is_not_right() -> None:
    sc_token = tf.token(aud=SC.token_resource, wids=[wellknown.EXCHANGE_ADMINISTRATOR])
    facts = sc_tenant(role_assignments=(tf.role(),))
    with pytest.raises(AssertionError, match="with none of the accepted roles: Compliance Administrator"):
        token_002(sc_token, facts, SC)


def test_a_fix_still_propagating_marks_pending_only_its_own_profiles_results() -> None:
    from cbacheck.report.document import mark_pending

    records = [
        {"id": "CBA-TOKEN-002", "profile": "exchange-online", "outcome": "blocked", "message": "m"},
        {"id": "CBA-TOKEN-002", "profile": "security-compliance", "outcome": "blocked", "message": "m"},
    ]
    mark_pending(records, {"CBA-PERM-003@security-compliance": "consent reaches tokens late"})
    assert [r["outcome"] for r in records] == ["blocked", "pending"]


def test_an_exchange_url_override_does_not_redirect_the_security_compliance_probe() -> None:
    from cbacheck.config import Settings

    only_exchange = Settings(exchange_url="https://127.0.0.1:8443")
    url = profiles.probe_url_in(SC, only_exchange.cloud_endpoints, "contoso.onmicrosoft.com")
    assert url == "https://ps.compliance.protection.outlook.com/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"
    both = Settings(exchange_url="https://127.0.0.1:8443", compliance_url="https://127.0.0.1:9443/")
    assert profiles.probe_url_in(SC, both.cloud_endpoints, "contoso.onmicrosoft.com").startswith(
        "https://127.0.0.1:9443/adminapi/beta/"
    )
    # Exchange Online's own profile still follows exchange_url.
    assert profiles.probe_url_in(EXO, only_exchange.cloud_endpoints, "x").startswith("https://127.0.0.1:8443/")


def test_the_security_compliance_endpoint_and_token_follow_the_cloud() -> None:
    from cbacheck.config import Settings

    gcchigh = Settings(cloud="gcchigh")
    assert profiles.probe_url_in(SC, gcchigh.cloud_endpoints, "x").startswith("https://ps.compliance.protection.office365.us/")
    assert profiles.token_resource_in(SC, "gcchigh") == "https://ps.compliance.protection.office365.us"
    assert profiles.token_resource_in(SC, "dod") == ""  # not asked: UNCONFIRMED
    assert "ps.compliance.protection.office365.us" in profiles.service_domains_in(SC, "gcchigh")
    assert "127.0.0.1" not in profiles.service_domains_in(SC, "global")


# --- Security & Compliance role groups (CBA-ROLE-001 and CBA-TOKEN-002 of security-compliance) ------------------


def sc_role_001(facts: Any) -> dict[str, Any]:
    return run(
        role_checks.test_supported_role_assigned_at_tenant_scope,
        app_sp=tf.app_sp(),
        role_assignments=facts.role_assignments,
        tenant_facts=facts,
        cba_settings=tf.settings(profile=("security-compliance",)),
        cba_profile=SC,
    )


def test_security_compliance_role_groups_read_and_empty_make_exchange_administrator_alone_a_failure() -> None:
    facts = sc_tenant(role_assignments=(tf.role(),), profile_rbac={SC.name: tf.rbac()})  # Exchange Administrator
    with pytest.raises(AssertionError, match="no Security & Compliance RBAC role"):
        sc_role_001(facts)


def test_a_security_compliance_role_group_membership_authorises_the_app_without_a_supported_entra_role() -> None:
    sp_id = tf.app_sp().object_id
    member = tf.rbac(object_id=sp_id, roles=("Sensitivity Label Reader",), group="Label readers")
    facts = sc_tenant(role_assignments=(tf.role(),), profile_rbac={SC.name: member})
    record = sc_role_001(facts)
    assert record["details"]["authorised by"] == ["Security & Compliance RBAC (service principal pointer)"]
    # Exchange's own RBAC does not count for Security & Compliance, nor the reverse.
    exchange_only = sc_tenant(role_assignments=(tf.role(),), exchange_rbac=member, profile_rbac={SC.name: tf.rbac()})
    with pytest.raises(AssertionError):
        sc_role_001(exchange_only)
    # Its token then needs no supported role in wids.
    sc_token = tf.token(aud=SC.token_resource, wids=[wellknown.EXCHANGE_ADMINISTRATOR])
    token_002(sc_token, facts, SC)


def test_security_compliance_role_groups_unread_stay_an_error_naming_what_the_auditor_needs() -> None:
    from cbacheck.facts import Unavailable

    unread = Unavailable("the app's Security & Compliance role groups", "Exchange refused Get-ServicePrincipal: 401")
    facts = sc_tenant(role_assignments=(tf.role(),), profile_rbac={SC.name: unread})
    with pytest.raises(FactUnavailable) as caught:
        sc_role_001(facts)
    assert "Microsoft Exchange Online Protection" in caught.value.missing.missing_permission
    assert "cannot be ruled out" in caught.value.missing.reason
