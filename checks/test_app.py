"""Link 2, the app registration and its service principal (CBA-APP-*)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cbacheck.chain import require
from cbacheck.config import Settings
from cbacheck.facts import AppRegistration, ServicePrincipal, TenantFacts

if TYPE_CHECKING:
    from cbacheck.evidence import Evidence

SINGLE_TENANT = "AzureADMyOrg"
MULTI_TENANT = "AzureADMultipleOrgs"
NO_APP = "the app registration does not exist"


@pytest.mark.requirement("CBA-APP-001")
def test_app_registration_exists(app: AppRegistration | None, tenant_facts: TenantFacts, evidence: Evidence) -> None:
    """The app registration exists

    Everything else hangs off the application object: its keys, its requested permissions and its
    service principal. Without it the token request fails with AADSTS700016.
    """
    evidence.expected(f"an application with appId {tenant_facts.app_id} in tenant {tenant_facts.tenant}")
    if app is not None:
        evidence.observed("application", {"id": app.object_id, "appId": app.app_id, "displayName": app.display_name})
    else:
        evidence.observed("application", None)
    assert app is not None, (
        f"tenant {tenant_facts.tenant} has no app registration with appId {tenant_facts.app_id}; expected one "
        "(a token request would fail with AADSTS700016): check app_id and tenant, or create the app"
    )


@pytest.mark.requirement("CBA-APP-002")
def test_service_principal_exists_and_enabled(
    app: AppRegistration | None, app_sp: ServicePrincipal | None, tenant_facts: TenantFacts, evidence: Evidence
) -> None:
    """Its service principal exists and is enabled

    The service principal is the app's identity in the tenant: consent, directory roles and sign-in
    all attach to it. A disabled one is refused at the token endpoint (AADSTS7000112).
    """
    evidence.expected("a service principal for the app with accountEnabled = true")
    if app_sp is None:
        evidence.observed("servicePrincipal", None)
        require(app, "CBA-APP-001", f"no app registration with appId {tenant_facts.app_id}, so no service principal")
    assert app_sp is not None, (
        f"app {tenant_facts.app_id} has no service principal in tenant {tenant_facts.tenant}; expected one "
        "(create it with New-MgServicePrincipal -AppId, or cbacheck's fix)"
    )
    evidence.observed(
        "servicePrincipal",
        {"id": app_sp.object_id, "appId": app_sp.app_id, "accountEnabled": app_sp.account_enabled},
    )
    assert app_sp.account_enabled, (
        f"service principal {app_sp.object_id} of app {app_sp.app_id} has accountEnabled = false; expected true "
        "(sign-in fails with AADSTS7000112 UnauthorizedClientApplicationDisabled)"
    )


@pytest.mark.requirement("CBA-APP-003")
def test_sign_in_audience_is_this_organization(
    app: AppRegistration | None, cba_settings: Settings, evidence: Evidence
) -> None:
    """Sign-in audience is this organization only

    An app that admits other tenants widens who can consent to it; unattended Exchange automation
    belongs to one organization unless it is deliberately multi-tenant (setting multi_tenant).
    """
    application = require(app, "CBA-APP-001", NO_APP)
    allowed = (SINGLE_TENANT, MULTI_TENANT) if cba_settings.multi_tenant else (SINGLE_TENANT,)
    evidence.observed("signInAudience", application.sign_in_audience)
    evidence.add("multi_tenant", cba_settings.multi_tenant)
    evidence.expected(f"signInAudience one of {', '.join(allowed)}")
    assert application.sign_in_audience in allowed, (
        f"app {application.app_id} has signInAudience {application.sign_in_audience!r}; expected "
        f"{' or '.join(repr(a) for a in allowed)}"
        + ("" if cba_settings.multi_tenant else " (set multi_tenant if the app is meant for several tenants)")
    )


@pytest.mark.requirement("CBA-APP-004")
def test_app_has_no_client_secrets(app: AppRegistration | None, evidence: Evidence) -> None:
    """The app has no client secrets

    A secret beside the certificate is a second, weaker way in: it can be copied without a key
    store and is often forgotten. Graph never returns secret values; keyId and hint identify them.
    """
    application = require(app, "CBA-APP-001", NO_APP)
    secrets = [
        {
            "keyId": secret.key_id,
            "displayName": secret.display_name,
            "hint": secret.hint,
            "endDateTime": secret.end.isoformat() if secret.end else None,
        }
        for secret in application.password_credentials
    ]
    evidence.observed("passwordCredentials", secrets)
    evidence.expected("no passwordCredentials (certificate only)")
    listed = ", ".join(f"{s['keyId']} ({s['displayName'] or 'no name'}, hint {s['hint'] or '?'})" for s in secrets)
    assert not secrets, f"app {application.app_id} has {len(secrets)} client secret(s): {listed}; expected none"


@pytest.mark.requirement("CBA-APP-005")
def test_app_has_no_expired_key_credentials(
    app: AppRegistration | None, tenant_facts: TenantFacts, evidence: Evidence
) -> None:
    """No expired key credentials are left on the app

    Expired certificates no longer sign anyone in; left on the app they hide which key is live and
    make rotation mistakes likelier.
    """
    application = require(app, "CBA-APP-001", NO_APP)
    now = tenant_facts.collected_at
    expired = [key for key in application.key_credentials if key.end is not None and key.end <= now]
    evidence.observed("keyCredentials", [key.summary() for key in application.key_credentials])
    evidence.add("collected_at", now.isoformat())
    evidence.expected(f"every keyCredential's endDateTime after {now.isoformat()}")
    listed = ", ".join(
        f"{key.key_id} ({key.display_name or 'no name'}, ended {key.end:%Y-%m-%d})"
        for key in expired
        if key.end is not None
    )
    assert not expired, (
        f"app {application.app_id} keeps {len(expired)} expired key credential(s): {listed}; expected none"
    )
