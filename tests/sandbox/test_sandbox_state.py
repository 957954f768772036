"""State files and scenarios: validation messages, built-ins, dump round trip, certificates."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from sandboxkit import Client, acquire, token

from cbacheck import wellknown
from cbacheck.sandbox import Sandbox, SandboxError, SandboxStateError, scenario_names
from cbacheck.sandbox.scenario import load_scenario

REQUIRED = {
    "healthy", "demo-broken", "app-missing", "sp-missing", "sp-disabled", "cert-not-uploaded", "key-expired",
    "rsa-1024", "consent-missing", "permission-missing", "role-missing", "role-unsupported",
    "role-scoped-to-unit", "role-eligible-only", "role-too-weak", "wrong-organization", "exchange-sp-missing",
    "client-secret", "full-access-as-app", "global-admin", "expiring-soon", "multi-tenant-audience",
    "expired-leftover-key", "cert-expired",
}  # fmt: skip
TENANT = "3c6f9a2e-51d4-4b8e-9f07-2a1d5c8e4b60"


def minimal_state() -> dict[str, object]:
    return {
        "organization": [{"id": TENANT, "displayName": "Plain"}],
        "domains": [{"id": "plain.onmicrosoft.com", "isInitial": True, "isDefault": True, "isVerified": True}],
    }


def write(tmp_path: Path, doc: object, name: str = "state.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_scenario_names_are_sorted_and_complete() -> None:
    names = scenario_names()
    assert names == sorted(names)
    assert set(names) >= REQUIRED


@pytest.mark.parametrize("name", scenario_names())
def test_every_scenario_loads_and_names_real_requirements(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.description
    assert all(re.fullmatch(r"CBA-(CERT|APP|KEY|PERM|ROLE|ORG|TOKEN|EXO)-\d{3}", b) for b in scenario.breaks)
    # The healthy tenants break nothing: Microsoft's three ways to authorise the app (Entra role, Exchange
    # RBAC, both), a tenant without a PIM licence, and the healthy apps of the other profiles.
    healthy = (
        *("healthy", "rbac-only", "option3-combined", "no-p2"),
        *("sc-healthy", "sc-role-group-only", "adminapi-healthy", "gcchigh-sc-healthy"),
    )
    assert (scenario.breaks == ()) == (name in healthy)
    with Sandbox(name) as sb:
        assert set(sb.identities) == {"under_test", "auditor", "admin"}
        for ident in sb.identities.values():
            assert stat.S_IMODE(ident.cert_path.stat().st_mode) == 0o600
            text = ident.cert_path.read_text()
            assert "BEGIN CERTIFICATE" in text and "BEGIN PRIVATE KEY" in text
            assert re.fullmatch(r"[0-9A-F]{40}", ident.thumbprint_sha1)
        graph = wellknown.CLOUDS[str(sb.scenario.settings.get("cloud", "global"))].graph_resource
        assert "access_token" in acquire(sb, "auditor", f"{graph}/.default")
        assert sb.scenario.name == name and sb.scenario.breaks == scenario.breaks


def test_workdir_is_removed_after_exit_unless_given(tmp_path: Path) -> None:
    with Sandbox("healthy") as sb:
        temp = Path(sb.info.ca_bundle).parent
        assert temp.is_dir()
    assert not temp.exists()
    with Sandbox("healthy", workdir=tmp_path / "w") as sb:
        assert Path(sb.info.ca_bundle) == tmp_path / "w" / "ca.pem"
    assert (tmp_path / "w" / "ca.pem").is_file()


def test_expiring_soon_certificate_ends_in_ten_days() -> None:
    with Sandbox("expiring-soon") as sb:
        cert = x509.load_pem_x509_certificate(sb.identities["under_test"].cert_path.read_bytes())
        started = cert.not_valid_before_utc
        assert (cert.not_valid_after_utc - started).days == 365
        assert "access_token" in acquire(sb)


def test_plain_state_file_gets_built_ins(tmp_path: Path) -> None:
    with Sandbox(None, state_file=write(tmp_path, minimal_state())) as sb:
        assert sb.identities == {} and sb.tenant == TENANT
        assert sb.organization == "plain.onmicrosoft.com"
        assert sb.state.service_principal(app_id=wellknown.EXCHANGE_ONLINE_APP_ID) is not None
        assert sb.state.service_principal(app_id=wellknown.MICROSOFT_GRAPH_APP_ID) is not None
        assert sb.state.role_definition(wellknown.EXCHANGE_ADMINISTRATOR) is not None
        assert sb.info.tenant_id == TENANT


def test_dump_round_trips_through_a_state_file(tmp_path: Path) -> None:
    with Sandbox("exchange-sp-missing") as sb:
        dumped = sb.dump()
        ident = sb.identities["under_test"]
    assert dumped["builtins"] == {"exchangeServicePrincipal": False}
    path = write(tmp_path, dumped)
    with Sandbox(None, state_file=path) as again:
        assert again.dump() == dumped
        assert again.state.service_principal(app_id=wellknown.EXCHANGE_ONLINE_APP_ID) is None
        assert again.state.application(app_id=ident.app_id) is not None


def test_dump_after_writes_contains_them(tmp_path: Path) -> None:
    with Sandbox("healthy") as sb:
        admin = Client(sb, token(sb, "admin", "https://graph.microsoft.com/.default"))
        admin.graph("POST", "/applications", json={"displayName": "written"})
        names = [a["displayName"] for a in sb.dump()["applications"]]
    assert "written" in names


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ("{not json", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        ("[]", "$: expected a JSON object, found an array"),
        ({"organization": []}, "$.organization: expected exactly one organization"),
        ({**minimal_state(), "aplications": []}, "$.aplications: unknown key"),
        ({**minimal_state(), "applications": {}}, "$.applications: expected a JSON array"),
        (
            {**minimal_state(), "applications": [{"id": "x", "appId": TENANT}]},
            "$.applications[0].id: 'x' is not a GUID",
        ),
        (
            {
                **minimal_state(),
                "applications": [{"id": TENANT, "appId": TENANT, "keyCredentials": [{"key": "bm9wZQ=="}]}],
            },
            "$.applications[0].keyCredentials[0].key: not the DER bytes of an X.509 certificate",
        ),
        (
            {**minimal_state(), "roleAssignments": [{"id": "r", "principalId": TENANT, "roleDefinitionId": TENANT}]},
            "$.roleAssignments[0].principalId: no service principal with id",
        ),
        (
            {"organization": [{"id": TENANT}], "domains": [{"id": "x.com", "isInitial": False}]},
            "no domain has isInitial",
        ),
    ],
)
def test_bad_state_file_names_the_file_and_the_element(tmp_path: Path, doc: object, needle: str) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(SandboxStateError) as caught:
        Sandbox(None, state_file=path)
    message = str(caught.value)
    assert message.startswith(f"state file '{path}': ")
    assert needle in message
    assert "\n" not in message


def test_unknown_scenario_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(SandboxStateError, match="unknown scenario 'nosuch'; known scenarios: .*app-missing"):
        Sandbox("nosuch")
    bad = write(tmp_path, {"description": "x", "state": {"organization": "x"}}, "bad.json")
    with pytest.raises(SandboxStateError, match=r"scenario file '.*bad.json': \$.organization"):
        Sandbox(bad)


def test_scenario_file_by_path_and_bad_knobs(tmp_path: Path) -> None:
    source = load_scenario("healthy").path
    assert source is not None
    copy = write(tmp_path, source.read_text(), "mine.json")
    with Sandbox(copy) as sb:
        assert sb.scenario.name == "mine" and "access_token" in acquire(sb)
    with pytest.raises(SandboxError, match="fault rate"):
        Sandbox("healthy", fault_rate=2.0)


def test_port_in_use_is_a_clear_error() -> None:
    with Sandbox("healthy") as sb:
        other = Sandbox("healthy", port=sb.info.port)
        with pytest.raises(SandboxError, match=f"cannot listen on 127.0.0.1:{sb.info.port}"):
            other.start()
