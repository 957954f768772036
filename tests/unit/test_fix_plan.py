"""Planners on hand-built facts, the secrets the plan must never show, confirmation and the propagation wait."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cbacheck import catalogue, certs, cli, wellknown
from cbacheck.config import Settings, setting_fields
from cbacheck.errors import FixError
from cbacheck.facts import (
    AppRegistration,
    AppRole,
    AppRoleAssignment,
    CertFacts,
    DirectoryRoleAssignment,
    ExchangeProbe,
    ExchangeRbac,
    ExchangeServicePrincipal,
    KeyCredential,
    ManagementRoleAssignment,
    Organization,
    RequiredResource,
    ResourceAccess,
    RoleGroup,
    ServicePrincipal,
    TenantFacts,
    TokenAttempt,
    Unavailable,
)
from cbacheck.fixers.actions import (
    AddKeyCredential,
    AddRequiredResourceAccess,
    AddRoleGroupMember,
    AssignDirectoryRole,
    CreateApplication,
    CreateCertificate,
    CreateExchangeServicePrincipal,
    CreateServicePrincipal,
    EnableServicePrincipal,
    GrantAppRole,
    ManualStep,
    Ref,
    RemoveKeyCredentials,
    redact,
)
from cbacheck.fixers.apply import FixRun, confirm_apply, effect_probes, settings_after
from cbacheck.fixers.journal import Journal
from cbacheck.fixers.outcomes import MANUAL, ActionResult
from cbacheck.fixers.planners import plan, plan_from_results
from cbacheck.fixers.planning import PLANNERS, OptIns
from cbacheck.fixers.verify import PENDING_PROPAGATION, VERIFIED, FactsPerRound, Probe, wait_for_propagation

APP_ID = "11111111-2222-3333-4444-555555555555"
TENANT = "contoso.onmicrosoft.com"
APP_OBJECT = "aaaaaaaa-0000-0000-0000-000000000001"
SP_OBJECT = "bbbbbbbb-0000-0000-0000-000000000002"
EXO_SP_OBJECT = "cccccccc-0000-0000-0000-000000000003"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PASSWORD = "pfx-password-never-shown-7"


@pytest.fixture(scope="module")
def cert_facts(tmp_path_factory: pytest.TempPathFactory) -> CertFacts:
    folder = tmp_path_factory.mktemp("cert")
    made = certs.generate_certificate(
        "CN=exo-automation", folder, days=365, password=PASSWORD, now=NOW - timedelta(days=10)
    )
    return certs.read_certificate(made.pem_path, PASSWORD, "test", now=NOW)


@pytest.fixture(scope="module")
def other_cert(tmp_path_factory: pytest.TempPathFactory) -> CertFacts:
    folder = tmp_path_factory.mktemp("other")
    made = certs.generate_certificate("CN=old-automation", folder, now=NOW - timedelta(days=400), days=365)
    return certs.read_certificate(made.pem_path, None, "test", now=NOW)


def settings(**changes: Any) -> Settings:
    return dataclasses.replace(Settings(tenant=TENANT, app_id=APP_ID, organization=TENANT), **changes)


def key_of(cert: CertFacts, key_id: str, *, end: datetime | None = None) -> KeyCredential:
    import base64

    return KeyCredential(
        key_id=key_id,
        type="AsymmetricX509Cert",
        usage="Verify",
        display_name=cert.subject,
        start=cert.not_before,
        end=end or cert.not_after,
        custom_key_identifier=None,
        key_der=base64.b64decode(cert.der_base64),
    )


def healthy(cert: CertFacts, **changes: Any) -> TenantFacts:
    app = AppRegistration(
        object_id=APP_OBJECT,
        app_id=APP_ID,
        display_name="exo automation",
        sign_in_audience="AzureADMyOrg",
        key_credentials=(key_of(cert, "key-current"),),
        password_credentials=(),
        required_resource_access=(
            RequiredResource(
                wellknown.EXCHANGE_ONLINE_APP_ID,
                (ResourceAccess(wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID, "Role"),),
            ),
        ),
        raw={},
    )
    facts = TenantFacts(
        collected_at=NOW,
        tenant=TENANT,
        app_id=APP_ID,
        organization_setting=TENANT,
        organization=Organization("tid", "Contoso", TENANT, (TENANT, "contoso.com")),
        app=app,
        app_sp=ServicePrincipal(SP_OBJECT, APP_ID, "exo automation", True, ()),
        exchange_sp=ServicePrincipal(
            EXO_SP_OBJECT,
            wellknown.EXCHANGE_ONLINE_APP_ID,
            wellknown.EXCHANGE_ONLINE_DISPLAY_NAME,
            True,
            (
                AppRole(
                    wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
                    wellknown.EXCHANGE_MANAGE_AS_APP,
                    "Manage",
                    ("Application",),
                ),
            ),
        ),
        app_role_grants=(
            AppRoleAssignment(
                "grant-1",
                SP_OBJECT,
                EXO_SP_OBJECT,
                "Office 365 Exchange Online",
                wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
            ),
        ),
        role_assignments=(
            DirectoryRoleAssignment(
                "ra-1",
                SP_OBJECT,
                wellknown.EXCHANGE_ADMINISTRATOR,
                wellknown.EXCHANGE_ADMINISTRATOR,
                "Exchange Administrator",
                "/",
                None,
            ),
        ),
        role_eligibilities=(),
        token=token(roles=[wellknown.EXCHANGE_MANAGE_AS_APP], wids=[wellknown.EXCHANGE_ADMINISTRATOR]),
        exchange=None,
        auditor="test auditor",
    )
    return dataclasses.replace(facts, **changes)


def token(*, roles: list[str] | None = None, wids: list[str] | None = None, acquired: bool = True) -> TokenAttempt:
    claims: dict[str, Any] = {"aud": "https://outlook.office365.com", "appid": APP_ID}
    if roles is not None:
        claims["roles"] = roles
    if wids is not None:
        claims["wids"] = wids
    return TokenAttempt(
        authority=f"https://login.microsoftonline.com/{TENANT}",
        scope="https://outlook.office365.com/.default",
        client_id=APP_ID,
        credential_style="RS256 x5t",
        acquired=acquired,
        claims=claims if acquired else {},
    )


def app_of(facts: TenantFacts) -> AppRegistration:
    assert isinstance(facts.app, AppRegistration)
    return facts.app


def ids(actions: list[Any]) -> list[str]:
    return [action.id for action in actions]


# --- planners -----------------------------------------------------------------------------------------


def test_every_catalogue_fix_has_a_planner() -> None:
    assert set(PLANNERS) == set(catalogue.FIXES)


def test_plan_is_empty_when_nothing_failed(cert_facts: CertFacts) -> None:
    assert plan(settings(), healthy(cert_facts), cert_facts, set()) == []


def test_plan_is_empty_when_failed_requirements_are_already_mended_in_the_facts(cert_facts: CertFacts) -> None:
    # The state a second plan sees after a successful apply (the checks may still lag behind tokens).
    failed = {"CBA-APP-002", "CBA-KEY-001", "CBA-PERM-002", "CBA-PERM-003", "CBA-ROLE-001", "CBA-TOKEN-002"}
    assert plan(settings(), healthy(cert_facts), cert_facts, failed) == []


def test_missing_consent_plans_one_grant_naming_the_tenant_exchange_sp(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, app_role_grants=())
    actions = plan(settings(), facts, cert_facts, {"CBA-PERM-003", "CBA-TOKEN-002"})
    assert ids(actions) == ["grant-exchange-consent"]
    grant = actions[0]
    assert isinstance(grant, GrantAppRole)
    assert grant.mends == ("CBA-PERM-003",)
    assert grant.permission == "AppRoleAssignment.ReadWrite.All and Application.Read.All"
    assert grant.describe() == {
        "method": "POST",
        "path": f"/servicePrincipals/{SP_OBJECT}/appRoleAssignments",
        "body": {
            "principalId": SP_OBJECT,
            "resourceId": EXO_SP_OBJECT,
            "appRoleId": wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID,
        },
    }


@pytest.mark.parametrize(
    "assignment",
    [
        None,
        DirectoryRoleAssignment(
            "ra-au",
            SP_OBJECT,
            wellknown.EXCHANGE_ADMINISTRATOR,
            wellknown.EXCHANGE_ADMINISTRATOR,
            "Exchange Administrator",
            "/administrativeUnits/au1",
            None,
        ),
        DirectoryRoleAssignment(
            "ra-el",
            SP_OBJECT,
            wellknown.EXCHANGE_ADMINISTRATOR,
            wellknown.EXCHANGE_ADMINISTRATOR,
            "Exchange Administrator",
            "/",
            None,
            status="eligible",
        ),
    ],
    ids=["none", "scoped-to-administrative-unit", "only-eligible"],
)
def test_role_is_assigned_active_at_tenant_scope_unless_it_already_is(
    cert_facts: CertFacts, assignment: DirectoryRoleAssignment | None
) -> None:
    facts = healthy(cert_facts, role_assignments=(assignment,) if assignment else ())
    actions = plan(settings(), facts, cert_facts, {"CBA-ROLE-001"})
    assert len(actions) == 1
    role = actions[0]
    assert isinstance(role, AssignDirectoryRole)
    assert role.permission == "RoleManagement.ReadWrite.Directory"
    assert role.describe()["body"] == {
        "@odata.type": "#microsoft.graph.unifiedRoleAssignment",
        "roleDefinitionId": wellknown.EXCHANGE_ADMINISTRATOR,
        "principalId": SP_OBJECT,
        "directoryScopeId": "/",
    }


def test_required_role_setting_chooses_the_role_assigned(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, role_assignments=())
    actions = plan(settings(required_role="Global Reader"), facts, cert_facts, {"CBA-ROLE-001"})
    assert isinstance(actions[0], AssignDirectoryRole)
    assert actions[0].role_definition_id == wellknown.GLOBAL_READER


def test_upload_keeps_existing_keys_and_describes_the_new_one_without_its_bytes(
    cert_facts: CertFacts, other_cert: CertFacts
) -> None:
    facts = healthy(cert_facts)
    facts = dataclasses.replace(
        facts, app=dataclasses.replace(app_of(facts), key_credentials=(key_of(other_cert, "key-old"),))
    )
    actions = plan(settings(), facts, cert_facts, {"CBA-KEY-001"})
    assert ids(actions) == [f"add-key-{cert_facts.sha1_thumbprint[:8].lower()}"]
    upload = actions[0]
    assert isinstance(upload, AddKeyCredential)
    described = upload.describe()
    assert described["reads"] == [
        {"method": "GET", "path": f"/applications/{APP_OBJECT}", "params": {"$select": "id,appId,keyCredentials"}}
    ]
    assert described["method"] == "PATCH"
    kept, new = described["body"]["keyCredentials"]
    assert "key-old" in kept and other_cert.sha1_thumbprint in kept
    assert new["type"] == "AsymmetricX509Cert" and new["usage"] == "Verify"
    assert new["key"].startswith("<base64 DER, ") and cert_facts.sha1_thumbprint in new["key"]
    assert cert_facts.der_base64[:40] not in json.dumps(described)


def test_missing_app_plans_the_whole_chain_in_dependency_order_with_references(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, app=None, app_sp=None, app_role_grants=(), role_assignments=())
    actions = plan(settings(), facts, cert_facts, {"CBA-APP-001"}, OptIns(create_app=True))
    assert ids(actions) == [
        "create-app",
        "use-new-app-id",
        "create-service-principal",
        f"add-key-{cert_facts.sha1_thumbprint[:8].lower()}",
        "add-exchange-permission",
        "grant-exchange-consent",
        f"assign-role-{wellknown.EXCHANGE_ADMINISTRATOR[:8]}",
    ]
    by_id = {action.id: action for action in actions}
    create_sp = by_id["create-service-principal"]
    assert isinstance(create_sp, CreateServicePrincipal) and create_sp.app_id == Ref("create-app", "appId")
    grant = by_id["grant-exchange-consent"]
    assert isinstance(grant, GrantAppRole) and grant.principal_id == Ref("create-service-principal", "id")
    assert grant.describe()["path"] == "/servicePrincipals/{create-service-principal.id}/appRoleAssignments"
    permission = by_id["add-exchange-permission"]
    assert isinstance(permission, AddRequiredResourceAccess) and permission.depends_on == ("create-app",)
    position = {action.id: index for index, action in enumerate(actions)}
    for action in actions:
        assert all(position[dep] < position[action.id] for dep in action.depends_on), action.id
    assert isinstance(by_id["create-app"], CreateApplication)
    assert by_id["create-app"].permission == "AppRegistration.Create"


def test_disabled_service_principal_is_enabled_not_created_again(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, app_sp=ServicePrincipal(SP_OBJECT, APP_ID, "exo", False, ()))
    actions = plan(settings(), facts, cert_facts, {"CBA-APP-002"}, OptIns(enable_service_principal=True))
    assert ids(actions) == ["enable-service-principal"]
    assert isinstance(actions[0], EnableServicePrincipal)
    assert actions[0].describe() == {
        "method": "PATCH",
        "path": f"/servicePrincipals/{SP_OBJECT}",
        "body": {"accountEnabled": True},
    }


def test_missing_service_principal_is_created_and_granted_what_it_needs(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, app_sp=None, app_role_grants=(), role_assignments=())
    actions = plan(settings(), facts, cert_facts, {"CBA-APP-002"})
    assert ids(actions) == [
        "create-service-principal",
        "grant-exchange-consent",
        f"assign-role-{wellknown.EXCHANGE_ADMINISTRATOR[:8]}",
    ]
    create_sp = actions[0]
    assert isinstance(create_sp, CreateServicePrincipal) and create_sp.app_id == APP_ID


def test_rotation_uploads_a_new_key_beside_the_old_and_keeps_the_old_without_remove_old_key(
    cert_facts: CertFacts,
) -> None:
    actions = plan(settings(), healthy(cert_facts), cert_facts, {"CBA-CERT-004"})
    assert ids(actions) == ["create-certificate", "use-new-certificate", "add-key-new-certificate", "remove-old-key"]
    create, switch, upload, keep_old = actions
    assert (
        isinstance(create, CreateCertificate) and create.subject == "CN=exo-automation" and create.encrypt_key is False
    )
    assert isinstance(upload, AddKeyCredential)
    assert upload.certificate == Ref("create-certificate", "der_base64")
    assert upload.prove_old_certificate is True
    assert any("key-current" in text for text in upload.existing_keys)
    assert isinstance(switch, ManualStep) and switch.setting == "cert"
    assert isinstance(keep_old, ManualStep) and "--remove-old-key" in keep_old.explanation


def test_old_key_is_removed_only_after_proof_when_remove_old_key_is_set(cert_facts: CertFacts) -> None:
    actions = plan(settings(remove_old_key=True), healthy(cert_facts), cert_facts, {"CBA-CERT-004"})
    remove = actions[-1]
    assert isinstance(remove, RemoveKeyCredentials)
    assert remove.key_ids == ("key-current",)
    assert remove.requires_verified == ("add-key-new-certificate",)
    assert remove.depends_on == ("add-key-new-certificate",)
    # The PATCH goes only with a read that holds the key this run added (a stale read would delete it).
    assert remove.keeps_key_of == "add-key-new-certificate"
    assert "add-key-new-certificate" in remove.describe()["only_if_read_holds"]


def test_new_certificate_and_rotation_share_one_certificate_and_one_upload(cert_facts: CertFacts) -> None:
    actions = plan(settings(), healthy(cert_facts), cert_facts, {"CBA-CERT-006", "CBA-CERT-004", "CBA-KEY-001"})
    assert ids(actions).count("create-certificate") == 1
    assert ids(actions).count("add-key-new-certificate") == 1
    create = next(action for action in actions if action.id == "create-certificate")
    assert set(create.mends) >= {"CBA-CERT-006", "CBA-CERT-004"}


def test_expired_keys_are_removed_only_when_opted_in(cert_facts: CertFacts, other_cert: CertFacts) -> None:
    expired = key_of(other_cert, "key-expired", end=NOW - timedelta(days=3))
    facts = healthy(cert_facts)
    facts = dataclasses.replace(
        facts, app=dataclasses.replace(app_of(facts), key_credentials=(*app_of(facts).key_credentials, expired))
    )
    step = plan(settings(), facts, cert_facts, {"CBA-APP-005"})
    assert ids(step) == ["remove-expired-keys"] and isinstance(step[0], ManualStep)
    removal = plan(settings(remove_expired_keys=True), facts, cert_facts, {"CBA-APP-005"})
    assert isinstance(removal[0], RemoveKeyCredentials) and removal[0].key_ids == ("key-expired",)


def test_wrong_organization_shows_the_initial_domain(cert_facts: CertFacts) -> None:
    actions = plan(settings(organization="contoso.com"), healthy(cert_facts), cert_facts, {"CBA-ORG-001"})
    assert len(actions) == 1
    step = actions[0]
    assert isinstance(step, ManualStep)
    assert step.describe()["set"] == {"organization": TENANT}


def test_secrets_extra_permissions_and_big_roles_stay_manual_with_a_portal_link(cert_facts: CertFacts) -> None:
    actions = plan(
        settings(), healthy(cert_facts), cert_facts, {"CBA-APP-004", "CBA-PERM-005", "CBA-ROLE-002", "CBA-APP-003"}
    )
    assert all(isinstance(action, ManualStep) and not action.automated for action in actions)
    assert sorted(action.mends[0] for action in actions) == [
        "CBA-APP-003",
        "CBA-APP-004",
        "CBA-PERM-005",
        "CBA-ROLE-002",
    ]
    assert all(action.describe()["portal"].startswith("https://") for action in actions)


def test_missing_exchange_service_principal_is_a_licensing_step(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, exchange_sp=None, app_role_grants=())
    actions = plan(settings(), facts, cert_facts, {"CBA-PERM-003"})
    assert ids(actions) == ["exchange-licence"]
    assert "CBA-PERM-001" in actions[0].mends
    # Microsoft's documented remedy first (the manifest entry and consent make the principal appear),
    # the subscription second.
    step = actions[0].describe()["step"]
    assert step.startswith("Add Office 365 Exchange Online > Exchange.ManageAsApp to the app's manifest")
    assert step.index("manifest") < step.index("subscription")


def test_a_fact_that_could_not_be_read_gives_a_step_naming_why_not_silence(cert_facts: CertFacts) -> None:
    missing = Unavailable(
        "app role grants", "403 Authorization_RequestDenied", missing_permission="Application.Read.All"
    )
    actions = plan(settings(), healthy(cert_facts, app_role_grants=missing), cert_facts, {"CBA-PERM-003"})
    assert len(actions) == 1
    assert isinstance(actions[0], ManualStep)
    assert "Application.Read.All" in actions[0].reason


def test_plan_from_results_plans_failed_outcomes_only(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, app_role_grants=(), role_assignments=())
    requirements = [
        {"id": "CBA-PERM-003", "outcome": "failed", "fix": "grant_exchange_consent"},
        {"id": "CBA-ROLE-001", "outcome": "error", "fix": "assign_directory_role"},
        {"id": "CBA-CERT-001", "outcome": "passed", "fix": "new_certificate"},
    ]
    rows = plan_from_results(requirements, settings(), facts, cert_facts)
    assert [row["id"] for row in rows] == ["grant-exchange-consent"]
    assert set(rows[0]) >= {"id", "kind", "mends", "reason", "permission", "depends_on", "request"}
    assert rows[0]["kind"] == "GrantAppRole"
    json.dumps(rows)  # the reports serialise it as is


def test_failures_that_follow_from_an_upstream_one_get_no_fix_of_their_own(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts)
    facts = dataclasses.replace(facts, app=dataclasses.replace(app_of(facts), key_credentials=()))
    requirements = [
        {"id": "CBA-KEY-001", "outcome": "failed", "follows_from": None},
        {"id": "CBA-KEY-002", "outcome": "failed", "follows_from": "CBA-KEY-001"},
        {"id": "CBA-TOKEN-001", "outcome": "failed", "follows_from": "CBA-KEY-001"},
        {"id": "CBA-TOKEN-003", "outcome": "failed", "follows_from": "CBA-TOKEN-001"},
    ]
    rows = plan_from_results(requirements, settings(), facts, cert_facts)
    assert [row["kind"] for row in rows] == ["AddKeyCredential"]
    assert rows[0]["mends"] == ["CBA-KEY-001"]


def test_plan_never_shows_key_bytes_pem_password_or_token(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, app=None, app_sp=None, app_role_grants=(), role_assignments=())
    everything = {r.id for r in catalogue.CATALOGUE.values()}
    rows = plan_from_results(
        [{"id": req, "outcome": "failed"} for req in everything],
        settings(cert_password=PASSWORD, remove_old_key=True, remove_expired_keys=True),
        facts,
        cert_facts,
    )
    text = json.dumps(rows)
    assert rows
    assert PASSWORD not in text
    assert "BEGIN" not in text and "PRIVATE" not in text
    assert cert_facts.der_base64[:32] not in text
    assert "eyJ" not in text and "Bearer" not in text


def test_redact_elides_keys_secrets_pem_and_tokens() -> None:
    import base64

    der = base64.b64encode(b"\x30\x82" + bytes(300)).decode()
    data = {
        "keyCredentials": [{"keyId": "k1", "key": der}],
        "secretText": "s3cret",
        "note": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----",
        "access": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    }
    shown = json.dumps(redact(data))
    assert der not in shown and "302 bytes" in shown
    assert "s3cret" not in shown and "PRIVATE" not in shown and "eyJ" not in shown


# --- confirmation --------------------------------------------------------------------------------------


def two_changes(cert_facts: CertFacts) -> list[Any]:
    facts = healthy(cert_facts, app_role_grants=(), role_assignments=())
    return plan(settings(), facts, cert_facts, {"CBA-PERM-003", "CBA-ROLE-001"})


def never_asked(prompt: str) -> str:
    raise AssertionError(f"asked {prompt!r}")


def test_apply_is_refused_without_a_terminal_and_without_yes(cert_facts: CertFacts) -> None:
    with pytest.raises(FixError) as refused:
        confirm_apply(two_changes(cert_facts), assume_yes=False, interactive=False, ask=never_asked)
    assert str(refused.value) == "refusing to apply 2 changes without confirmation: run at a terminal or pass --yes"


def test_yes_applies_without_asking(cert_facts: CertFacts) -> None:
    confirm_apply(two_changes(cert_facts), assume_yes=True, interactive=False, ask=never_asked)


@pytest.mark.parametrize("answer", ["", "n", "no", "maybe"])
def test_anything_but_yes_at_the_terminal_refuses(cert_facts: CertFacts, answer: str) -> None:
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return answer

    with pytest.raises(FixError, match="nothing was changed"):
        confirm_apply(two_changes(cert_facts), assume_yes=False, interactive=True, ask=ask)
    assert prompts == ["Apply these 2 changes to the tenant? Type yes to go on: "]


def test_yes_at_the_terminal_goes_on_and_closed_input_refuses(cert_facts: CertFacts) -> None:
    confirm_apply(two_changes(cert_facts), assume_yes=False, interactive=True, ask=lambda prompt: " Yes\n")

    def closed(prompt: str) -> str:
        raise EOFError

    with pytest.raises(FixError):
        confirm_apply(two_changes(cert_facts), assume_yes=False, interactive=True, ask=closed)


def test_a_plan_of_manual_steps_needs_no_confirmation(cert_facts: CertFacts) -> None:
    actions = plan(settings(), healthy(cert_facts), cert_facts, {"CBA-APP-004"})
    assert actions
    confirm_apply(actions, assume_yes=False, interactive=False, ask=never_asked)


# --- waiting for propagation -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_effect_seen_after_some_rounds_is_verified_with_the_time_waited() -> None:
    clock = FakeClock()
    lines: list[str] = []
    probe = Probe(
        "grant", "Exchange.ManageAsApp to appear in the token", lambda round_no: None if round_no >= 3 else "roles []"
    )
    [result] = wait_for_propagation([probe], timeout_s=300, progress=lines.append, sleep=clock.sleep, clock=clock)
    assert result.status == VERIFIED
    assert clock.sleeps == [2, 4, 8]
    assert result.waited_s == 14
    assert lines == [
        "waiting for Exchange.ManageAsApp to appear in the token (0 s of 300 s)",
        "waiting for Exchange.ManageAsApp to appear in the token (2 s of 300 s)",
        "waiting for Exchange.ManageAsApp to appear in the token (6 s of 300 s)",
    ]


def test_effect_not_seen_in_time_is_pending_propagation_and_the_wait_is_bounded() -> None:
    clock = FakeClock()
    never = Probe("role", "Exchange Administrator to appear in the token's wids", lambda round_no: "wids []")
    quick = Probe("sp", "the service principal", lambda round_no: None)
    results = wait_for_propagation(
        [never, quick], timeout_s=100, progress=lambda line: None, sleep=clock.sleep, clock=clock
    )
    assert [r.status for r in results] == [PENDING_PROPAGATION, VERIFIED]
    assert results[0].waited_s == 100 and results[0].detail == "wids []"
    assert clock.sleeps == [2, 4, 8, 16, 30, 30, 10]
    assert max(clock.sleeps) <= 30


def test_a_probe_that_cannot_collect_keeps_waiting_instead_of_passing() -> None:
    clock = FakeClock()

    def broken(round_no: int) -> str | None:
        raise FixError("collection failed: 503")

    [result] = wait_for_propagation(
        [Probe("x", "y", broken)], timeout_s=5, progress=lambda line: None, sleep=clock.sleep, clock=clock
    )
    assert result.status == PENDING_PROPAGATION
    assert "503" in result.detail


def test_consent_and_role_are_verified_in_the_token_not_in_the_directory(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, app_role_grants=(), role_assignments=())
    actions = plan(settings(), facts, cert_facts, {"CBA-PERM-003", "CBA-ROLE-001"})
    results = [ActionResult(action.id, action.kind, "applied") for action in actions]
    rounds = [
        healthy(cert_facts, token=token(roles=[], wids=[])),
        healthy(cert_facts, token=token(roles=[wellknown.EXCHANGE_MANAGE_AS_APP], wids=[])),
        healthy(cert_facts),
    ]
    collected: list[int] = []

    def collect() -> TenantFacts:
        collected.append(1)
        return rounds[min(len(collected) - 1, 2)]

    probes = effect_probes(actions, results, settings=settings(), collect=collect, token_with=lambda path, pw: token())
    clock = FakeClock()
    outcome = wait_for_propagation(probes, timeout_s=60, progress=lambda line: None, sleep=clock.sleep, clock=clock)
    assert [(r.action_id, r.status, r.waited_s) for r in outcome] == [
        ("grant-exchange-consent", VERIFIED, 2),
        (f"assign-role-{wellknown.EXCHANGE_ADMINISTRATOR[:8]}", VERIFIED, 6),
    ]
    assert len(collected) == 3  # one collection per round, shared by both probes


def test_facts_are_collected_once_per_round() -> None:
    calls: list[int] = []

    def collect() -> Any:
        calls.append(1)
        return object()

    facts = FactsPerRound(collect)
    facts(0)
    facts(0)
    facts(1)
    assert len(calls) == 2


def test_settings_after_take_the_new_app_id_and_certificate() -> None:
    results = [
        ActionResult(
            "use-new-app-id",
            "ManualStep",
            MANUAL,
            output={"setting": "app_id", "value": "99999999-0000-0000-0000-000000000000"},
        ),
        ActionResult(
            "use-new-certificate", "ManualStep", MANUAL, output={"setting": "cert", "value": "certs/x/exo.pem"}
        ),
    ]
    after = settings_after(settings(), results)
    assert after.app_id == "99999999-0000-0000-0000-000000000000"
    assert after.cert == Path("certs/x/exo.pem")
    assert after.source("cert") == "fix"


def test_journal_skips_a_line_cut_short_by_a_crash(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.finished(ActionResult("grant-exchange-consent", "GrantAppRole", "applied", output={"id": "g1"}), TENANT)
    with journal.path.open("a", encoding="utf-8") as handle:
        handle.write('{"event": "started", "tenant": "contoso.onmicrosoft.com", "act')
    assert journal.outputs(TENANT) == {"grant-exchange-consent": {"id": "g1"}}
    assert journal.outputs("other.onmicrosoft.com") == {}


def test_permission_probe_is_not_satisfied_by_a_delegated_scope_entry(cert_facts: CertFacts) -> None:
    """Exchange.ManageAsApp listed as a delegated Scope is not the application permission the fix added."""
    scope_only = dataclasses.replace(
        app_of(healthy(cert_facts)),
        required_resource_access=(
            RequiredResource(
                wellknown.EXCHANGE_ONLINE_APP_ID,
                (ResourceAccess(wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID, "Scope"),),
            ),
        ),
    )
    facts = healthy(cert_facts, app=scope_only)
    actions = plan(settings(), facts, cert_facts, {"CBA-PERM-002"})
    assert ids(actions) == ["add-exchange-permission"]
    results = [ActionResult(action.id, action.kind, "applied") for action in actions]
    probes = effect_probes(
        actions, results, settings=settings(), collect=lambda: facts, token_with=lambda path, pw: token()
    )
    clock = FakeClock()
    [outcome] = wait_for_propagation(probes, timeout_s=10, progress=lambda line: None, sleep=clock.sleep, clock=clock)
    assert outcome.status == PENDING_PROPAGATION
    assert "requiredResourceAccess" in outcome.detail


# --- trust boundaries: what the default plan never writes -------------------------------------------------


def only_manual(actions: list[Any]) -> list[str]:
    """The ids of a plan that must hold manual steps only."""
    assert all(isinstance(action, ManualStep) for action in actions), [action.kind for action in actions]
    return ids(actions)


def test_an_over_privileged_required_role_is_never_assigned(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, role_assignments=())
    actions = plan(settings(required_role="Global Administrator"), facts, cert_facts, {"CBA-ROLE-001"})
    assert only_manual(actions) == ["assign-role-manually"]
    assert "over-privileged" in actions[0].reason and "CBA-ROLE-002" in actions[0].reason


def test_an_over_privileged_role_stays_manual_even_when_allowed(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, role_assignments=())
    opt_ins = OptIns(allow_roles=frozenset({wellknown.GLOBAL_ADMINISTRATOR}))
    actions = plan(settings(required_role="Global Administrator"), facts, cert_facts, {"CBA-ROLE-001"}, opt_ins)
    assert only_manual(actions) == ["assign-role-manually"]


def test_a_role_outside_the_supported_set_is_assigned_only_with_allow_role(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, role_assignments=())
    chosen = settings(required_role="Application Administrator")
    actions = plan(chosen, facts, cert_facts, {"CBA-ROLE-001"})
    assert only_manual(actions) == ["assign-role-manually"]
    assert "--allow-role" in actions[0].describe()["step"]
    opt_ins = OptIns(allow_roles=frozenset({wellknown.APPLICATION_ADMINISTRATOR}))
    allowed = plan(chosen, facts, cert_facts, {"CBA-ROLE-001"}, opt_ins)
    assert [type(action) for action in allowed] == [AssignDirectoryRole]


@pytest.mark.parametrize("failed", [{"CBA-CERT-001"}, {"CBA-CERT-002"}, {"CBA-KEY-002"}])
def test_a_certificate_that_was_not_read_never_leads_to_a_new_one_or_an_upload(
    cert_facts: CertFacts, failed: set[str]
) -> None:
    # A wrong password, a .cer without its key, an unparsable file: the input is wrong, not the certificate.
    unreadable = None if failed != {"CBA-CERT-002"} else cert_facts
    actions = plan(settings(), healthy(cert_facts), unreadable, failed)
    assert only_manual(actions) == ["fix-certificate-input"]


def test_a_disabled_service_principal_is_enabled_only_on_request(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, app_sp=ServicePrincipal(SP_OBJECT, APP_ID, "exo", False, ()))
    actions = plan(settings(), facts, cert_facts, {"CBA-APP-002"})
    assert only_manual(actions) == ["enable-service-principal-manually"]
    assert "--enable-service-principal" in actions[0].describe()["step"]


def test_a_missing_app_is_registered_only_on_request(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, app=None, app_sp=None, app_role_grants=(), role_assignments=())
    actions = plan(settings(), facts, cert_facts, {"CBA-APP-001"})
    assert only_manual(actions) == ["check-app-id"]
    assert APP_ID in actions[0].reason and "--create-app" in actions[0].describe()["step"]


def test_outcomes_that_still_need_the_automation_switched_are_named() -> None:
    switch = ActionResult(
        "use-new-certificate", "ManualStep", MANUAL, output={"setting": "cert", "value": "certs/x/exo.pem"}
    )
    other = ActionResult("remove-old-key", "ManualStep", MANUAL)
    run = FixRun((), (switch, other), (), settings())
    assert run.switches_needed() == ["use-new-certificate: set cert = certs/x/exo.pem where the automation runs"]


def test_opt_ins_come_only_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    # No setting carries them, so neither the environment nor a config file (found or named) can.
    assert not {spec.name for spec in setting_fields()} & {"allow_role", "enable_service_principal", "create_app"}
    assert cli.main(["run", "--allow-role", "Chief Everything Officer"]) == 2
    assert "--allow-role 'Chief Everything Officer'" in capsys.readouterr().err


# --- Exchange RBAC: never an Entra role for an app Exchange accepts or that uses RBAC ------------------


def rbac_with(
    pointer_object_id: str, group: str = "Automation readers", roles: tuple[str, ...] = ("View-Only Configuration",)
) -> ExchangeRbac:
    pointer = ExchangeServicePrincipal(APP_ID, pointer_object_id, pointer_object_id, "exo automation")
    assignments = tuple(
        ManagementRoleAssignment(
            pointer_object_id, f"{r}-{group}", r, group, "RoleGroup", "Organization", None, None, True
        )
        for r in roles
    )
    groups = (
        RoleGroup(group, roles, (pointer_object_id,)),
        RoleGroup("Organization Management", ("Role Management", "View-Only Configuration"), ()),
    )
    return ExchangeRbac((pointer,), assignments, groups, {})


def test_no_entra_role_is_planned_for_an_app_exchange_accepts(cert_facts: CertFacts) -> None:
    probe = ExchangeProbe("Get-OrganizationConfig", "https://x", 200, ok=True)
    facts = healthy(cert_facts, role_assignments=(), exchange=probe)
    [step] = plan(settings(), facts, cert_facts, {"CBA-ROLE-001"})
    assert isinstance(step, ManualStep) and "Exchange already accepts the app" in step.reason


def test_a_pointer_with_the_wrong_object_id_gets_the_rbac_fix_not_an_entra_role(cert_facts: CertFacts) -> None:
    facts = healthy(cert_facts, role_assignments=(), exchange_rbac=rbac_with(APP_OBJECT))
    actions = plan(settings(), facts, cert_facts, {"CBA-ROLE-001"})
    assert not any(isinstance(a, AssignDirectoryRole) for a in actions)
    pointer, cleanup, member = actions
    assert isinstance(pointer, CreateExchangeServicePrincipal) and pointer.object_id == SP_OBJECT
    assert pointer.describe()["body"]["CmdletInput"]["Parameters"]["ObjectId"] == SP_OBJECT
    assert isinstance(cleanup, ManualStep) and APP_OBJECT in cleanup.explanation
    assert isinstance(member, AddRoleGroupMember) and member.group == "Automation readers"
    assert member.member == SP_OBJECT and member.depends_on == ("create-exchange-pointer",)


def test_organization_management_is_refused_unless_named_on_the_command_line(cert_facts: CertFacts) -> None:
    facts = healthy(
        cert_facts, role_assignments=(), exchange_rbac=ExchangeRbac((), (), rbac_with(SP_OBJECT).role_groups)
    )
    chosen = settings(rbac_role_group="Organization Management")
    refused = plan(chosen, facts, cert_facts, {"CBA-ROLE-001"})
    assert [type(a).__name__ for a in refused] == ["CreateExchangeServicePrincipal", "ManualStep"]
    assert "--allow-role-group 'Organization Management'" in refused[1].reason
    allowed = plan(
        chosen, facts, cert_facts, {"CBA-ROLE-001"}, OptIns(allow_role_groups=frozenset({"organization management"}))
    )
    assert isinstance(allowed[-1], AddRoleGroupMember) and allowed[-1].group == "Organization Management"


def test_allow_role_group_comes_only_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from cbacheck.commands import run as runcommand

    assert "allow_role_group" not in {spec.name for spec in setting_fields()}
    seen: list[OptIns] = []
    monkeypatch.setattr(runcommand, "run_checks", lambda *args, opt_ins, **kwargs: seen.append(opt_ins) or 0)
    assert cli.main(["run", "--allow-role-group", "Organization Management"]) == 0
    assert seen[0].allow_role_groups == frozenset({"organization management"})
