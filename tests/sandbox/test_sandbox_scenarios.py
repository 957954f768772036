"""Each scenario gives the app under test the token and Exchange outcome it is designed for."""

from __future__ import annotations

import pytest
from sandboxkit import Client, acquire

from cbacheck import wellknown
from cbacheck.sandbox import Sandbox, scenario_names

# scenario -> (AADSTS codes of the token request or None, HTTP status of Get-OrganizationConfig)
OUTCOMES: dict[str, tuple[int | list[int] | None, int | None]] = {
    "healthy": (None, 200),
    "rbac-only": (None, 200),
    "rbac-wrong-object-id": (None, 401),
    "rbac-cmdlet-missing": (None, 200),
    "option3-combined": (None, 200),
    "demo-broken": (700027, None),
    "app-missing": (700016, None),
    "sp-missing": (7000229, None),
    "sp-disabled": (7000112, None),
    "cert-not-uploaded": (700027, None),
    "key-expired": (700027, None),
    "rsa-1024": ([70002, 50032], None),
    "consent-missing": (None, 401),
    "permission-missing": (None, 401),
    "wrong-permission-id": (None, 401),
    "role-missing": (None, 401),
    "role-unsupported": (None, 401),
    "role-scoped-to-unit": (None, 401),
    "role-eligible-only": (None, 401),
    "role-too-weak": (None, 200),
    "wrong-organization": (None, 401),
    "exchange-sp-missing": (500011, None),
    "client-secret": (None, 200),
    "full-access-as-app": (None, 200),
    "global-admin": (None, 200),
    "expiring-soon": (None, 200),
    "multi-tenant-audience": (None, 200),
    "expired-leftover-key": (None, 200),
    "cert-expired": (700027, None),
    "no-p2": (None, 200),
    # Apps for another profile: their Exchange Online token carries no Exchange.ManageAsApp, so Exchange
    # Online refuses it; the scenario's own profile is what its breaks speak of.
    "sc-healthy": (None, 401),
    "sc-exchange-admin-only": (None, 401),
    "sc-permission-missing": (None, 401),
    "both-profiles-one-consent-missing": (None, 200),
    "adminapi-healthy": (None, 401),
    "adminapi-rbac-missing": (None, 401),
    "adminapi-v1-permission-only": (None, 200),
    "gcchigh-sc-healthy": (None, 401),
    "gcchigh-exchange-online": (None, 401),
    "sc-role-group-only": (None, 401),
}


def test_every_shipped_scenario_has_an_expected_outcome() -> None:
    assert set(OUTCOMES) == set(scenario_names())


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_scenario_outcome(name: str) -> None:
    code, status = OUTCOMES[name]
    with Sandbox(name) as sb:
        # A national cloud's tenant answers its own Exchange resource name (docs/sandbox.md, choice 37).
        cloud = wellknown.CLOUDS[str(sb.scenario.settings.get("cloud", "global"))]
        result = acquire(sb, scope=f"{cloud.exchange_resource}/.default")
        if code is not None:
            assert result.get("error_codes") == (code if isinstance(code, list) else [code]), result
            assert any(b.startswith("CBA-TOKEN-001") for b in sb.scenario.breaks)
            return
        assert "access_token" in result, result.get("error_description")
        resp = Client(sb, result["access_token"]).exchange("Get-OrganizationConfig")
        assert resp.status_code == status, resp.text
        if "exchange-online" in sb.scenario.settings.get("profile", ["exchange-online"]):
            assert ("CBA-EXO-001" in sb.scenario.breaks) == (status != 200)
