"""Where a token may go: nextLinks and redirects stay on the origin asked, and only read-only cmdlets are sent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import responses
from mockhttp import APP_ID, EXO, GRAPH, TENANT_ID, Waits, make_session
from test_collection import SP_ID, Tenant, run

from cbacheck import certs, cli, profiles
from cbacheck.collect import collect
from cbacheck.collect.exchange import ProbeTarget, is_read_only_cmdlet, probe_exchange
from cbacheck.collect.graph import GraphClient
from cbacheck.collect.transport import trusted_target
from cbacheck.config import Settings
from cbacheck.errors import ConfigError, ExitCode, GraphError
from cbacheck.facts import ExchangeProbe, Unavailable

EVIL = "https://graph.evil.example"
TOKEN = "eyJ.fake-bearer.sig"
INVOKE = f"{EXO}/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"


class StaticToken:
    def token(self, scope: str) -> str:
        return TOKEN


@pytest.fixture
def tenant(mock: responses.RequestsMock, app_cert: certs.GeneratedCertificate) -> Tenant:
    return Tenant(mock, app_cert)


def hosts_called(mock: responses.RequestsMock) -> set[str]:
    return {str(call.request.url).split("/")[2] for call in mock.calls}


# --- @odata.nextLink --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "next_link",
    [
        f"{EVIL}/v1.0/servicePrincipals/{SP_ID}/appRoleAssignments?$skiptoken=abc",
        f"{GRAPH.replace('https://', 'http://')}/servicePrincipals/{SP_ID}/appRoleAssignments?$skiptoken=abc",
        f"{GRAPH.replace('graph.microsoft.com', 'graph.microsoft.com:8443')}/servicePrincipals?$skiptoken=abc",
    ],
    ids=["another host", "http on the same host", "another port"],
)
def test_a_next_link_off_the_origin_is_not_followed_and_the_list_is_unavailable(
    tenant: Tenant, settings: Settings, waits: Waits, next_link: str
) -> None:
    tenant.mock.assert_all_requests_are_fired = False
    status, body = tenant.answers["app_role_grants"]
    tenant.answers["app_role_grants"] = (status, {**body, "@odata.nextLink": next_link})
    tenant.everything()
    tenant.mock.get(next_link, json={"value": []})

    facts = run(settings, waits)

    assert isinstance(facts.app_role_grants, Unavailable), "a list with an unfollowed page must not be believed"
    assert "was not followed" in facts.app_role_grants.reason
    assert not any(str(call.request.url).startswith(next_link.split("?")[0]) for call in tenant.mock.calls)


@pytest.mark.parametrize(
    ("origin", "target", "trusted"),
    [
        ("https://graph.microsoft.com/v1.0", "https://graph.microsoft.com/v1.0/x?$skiptoken=1", True),
        ("https://graph.microsoft.com/v1.0", "https://GRAPH.microsoft.com/v1.0/x", True),
        ("https://graph.microsoft.com/v1.0", "http://graph.microsoft.com/v1.0/x", False),
        ("https://graph.microsoft.com/v1.0", "https://graph.microsoft.com.evil.example/v1.0/x", False),
        ("https://graph.microsoft.com/v1.0", "https://graph.microsoft.com:444/v1.0/x", False),
        ("https://graph.microsoft.com/v1.0", "/v1.0/relative", False),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/x", False),
    ],
)
def test_trusted_target_is_the_same_origin_over_https(origin: str, target: str, trusted: bool) -> None:
    assert trusted_target(origin, target) is trusted


def test_a_service_domain_admits_its_regional_hosts_only_over_https() -> None:
    domains = ("ps.compliance.protection.outlook.com",)
    origin = "https://ps.compliance.protection.outlook.com/adminapi/beta/t/InvokeCommand"

    assert trusted_target(origin, "https://eur02b.ps.compliance.protection.outlook.com/adminapi/x", domains)
    assert not trusted_target(origin, "http://eur02b.ps.compliance.protection.outlook.com/adminapi/x", domains)
    assert not trusted_target(origin, "https://evilps.compliance.protection.outlook.com.evil.example/x", domains)


# --- Redirects ----------------------------------------------------------------------------------------------


def test_a_graph_redirect_to_another_origin_is_not_followed(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    mock.assert_all_requests_are_fired = False
    mock.get(f"{GRAPH}/organization", status=302, headers={"Location": f"{EVIL}/v1.0/organization"})
    mock.get(f"{EVIL}/v1.0/organization", json={"value": []})
    graph = GraphClient("https://graph.microsoft.com", StaticToken(), make_session(settings, waits))

    with pytest.raises(GraphError) as caught:
        graph.get("/organization")

    assert caught.value.code == "Redirected" and "graph.evil.example" in str(caught.value)
    assert hosts_called(mock) == {"graph.microsoft.com"}


def test_a_graph_redirect_within_the_origin_is_followed(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    mock.get(f"{GRAPH}/organization", status=302, headers={"Location": f"{GRAPH}/organization/moved"})
    mock.get(f"{GRAPH}/organization/moved", json={"value": [{"id": "t"}]})
    graph = GraphClient("https://graph.microsoft.com", StaticToken(), make_session(settings, waits))

    assert graph.get("/organization").value == [{"id": "t"}]


def test_an_exchange_redirect_to_another_origin_is_unavailable_not_believed(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    mock.assert_all_requests_are_fired = False
    elsewhere = "https://exchange.evil.example/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"
    mock.post(INVOKE, status=307, headers={"Location": elsewhere})
    mock.post(elsewhere, json={"value": [{"Name": "contoso"}]})

    result = probe_exchange(settings, make_session(settings, waits), TOKEN, "contoso.onmicrosoft.com")

    assert isinstance(result, Unavailable) and "does not follow" in result.reason
    assert hosts_called(mock) == {"outlook.office365.com"}


def test_a_security_compliance_probe_follows_a_regional_redirect_only_within_its_service_domain(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    sc = profiles.PROFILES[profiles.SECURITY_COMPLIANCE]
    origin = profiles.probe_url_in(sc, settings.cloud_endpoints, "contoso.onmicrosoft.com")
    regional = "https://eur05b.ps.compliance.protection.outlook.com/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"
    mock.post(origin, status=302, headers={"Location": regional})
    mock.post(regional, json={"value": []})
    target = ProbeTarget(sc.probe_cmdlet, origin, sc.service_domains)

    result = probe_exchange(settings, make_session(settings, waits), TOKEN, "contoso.onmicrosoft.com", target=target)

    assert isinstance(result, ExchangeProbe) and result.ok and result.url == regional
    assert (
        mock.calls[-1].request.method == "POST" and mock.calls[-1].request.headers["Authorization"] == f"Bearer {TOKEN}"
    )
    # Outside the profile's service domain the token is not sent on.
    mock.replace(responses.POST, origin, status=302, headers={"Location": "https://outlook.office365.com/x"})
    refused = probe_exchange(settings, make_session(settings, waits), TOKEN, "contoso.onmicrosoft.com", target=target)
    assert isinstance(refused, Unavailable) and "does not follow" in refused.reason


# --- Only read-only cmdlets are sent ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmdlet", "read_only"),
    [
        ("Get-OrganizationConfig", True),
        ("get-mailbox", True),
        ("Set-OrganizationConfig", False),
        ("Remove-Mailbox", False),
        ("New-ManagementRoleAssignment", False),
        ("Get-Mailbox; Remove-Mailbox", False),
        ("Get-Mailbox -Identity x", False),
        ("Getter-Thing", False),
        ("", False),
    ],
)
def test_only_get_cmdlets_count_as_read_only(cmdlet: str, read_only: bool) -> None:
    assert is_read_only_cmdlet(cmdlet) is read_only


@pytest.mark.parametrize("cmdlet", ["Set-OrganizationConfig", "Remove-Mailbox", "Get-Mailbox; Remove-Mailbox"])
def test_the_probe_refuses_a_cmdlet_that_may_write_before_sending_anything(
    mock: responses.RequestsMock, settings: Settings, waits: Waits, cmdlet: str
) -> None:
    changed = dataclasses.replace(settings, exchange_cmdlet=cmdlet)

    with pytest.raises(ConfigError, match="exchange_cmdlet"):
        probe_exchange(changed, make_session(changed, waits), TOKEN, "contoso.onmicrosoft.com")

    assert len(mock.calls) == 0


def test_collect_refuses_a_cmdlet_that_may_write_before_any_request(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    changed = dataclasses.replace(settings, exchange_cmdlet="Set-OrganizationConfig")

    with pytest.raises(ConfigError, match="Set-OrganizationConfig"):
        collect(changed, session=make_session(changed, waits))

    assert len(mock.calls) == 0


def test_run_with_a_cmdlet_that_may_write_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    argv = ["--tenant", TENANT_ID, "--app-id", APP_ID, "--exchange-cmdlet", "Remove-Mailbox"]

    code = cli.main(["run", "--report-dir", str(reports), *argv])

    assert code == ExitCode.USAGE
    assert "exchange_cmdlet = 'Remove-Mailbox'" in capsys.readouterr().err
    assert not reports.exists() or not list(reports.glob("*.json"))


def test_the_read_only_probe_is_retried_on_a_503(
    mock: responses.RequestsMock, settings: Settings, waits: Waits
) -> None:
    # InvokeCommand is a POST, retried only because Get-* cmdlets change nothing (transport.READ_METHODS).
    mock.post(INVOKE, status=503, json={"error": {"code": "ServiceUnavailable", "message": "busy"}})
    mock.post(INVOKE, json={"value": [{"Name": "contoso"}]})

    result = probe_exchange(settings, make_session(settings, waits), TOKEN, "contoso.onmicrosoft.com")

    assert isinstance(result, ExchangeProbe) and result.ok
    assert len(mock.calls) == 2
