"""Generated tenants: a scenario's `generate` object, 999-item pages, key lookups through the index, relationships."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandboxkit import GRAPH_SCOPE, Client, token

from cbacheck.sandbox import Sandbox, SandboxStateError, generate
from cbacheck.sandbox.scenario import build, load_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "e2e" / "scenarios" / "audit-generated.json"


def _scenario(tmp_path: Path, **generate_spec: object) -> Path:
    doc = json.loads(SCENARIO.read_text(encoding="utf-8"))
    doc["generate"].update(generate_spec)
    path = tmp_path / "generated.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Client]]:
    path = _scenario(tmp_path_factory.mktemp("gen"), applications=2500, exchange_share=0.1)
    with Sandbox(path) as sb:
        yield sb, Client(sb, token(sb, "auditor", GRAPH_SCOPE))


def test_a_generated_tenant_shares_one_certificate_across_its_keys(tmp_path: Path) -> None:
    # Without supplied_certificate the own-certificate kinds too are keyed with the shared certificate.
    built = build(load_scenario(_scenario(tmp_path, applications=300, supplied_certificate=None)))
    generated = [a for a in built.state["applications"] if a["displayName"].startswith("generated")]
    assert len(generated) >= 290  # managed identities have no application
    assert len({key["customKeyIdentifier"] for app in generated for key in app["keyCredentials"]}) == 1
    assert len({key["keyId"] for app in generated for key in app["keyCredentials"]}) > len(generated)


def test_a_bad_generate_object_is_refused_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(SandboxStateError, match=r"\$\.generate"):
        build(load_scenario(_scenario(tmp_path, ews="sometimes")))


def test_applications_list_in_pages_of_999(big: tuple[Sandbox, Client]) -> None:
    _, client = big
    body = client.graph("GET", "/applications", params={"$top": "999", "$select": "id,appId"}).json()
    assert len(body["value"]) == 999 and "@odata.nextLink" in body


def test_a_key_filter_answers_through_the_index_as_the_full_filter_would(big: tuple[Sandbox, Client]) -> None:
    sb, client = big
    spec = generate.parse_spec(load_scenario(SCENARIO).doc["generate"] | {"applications": 2500}, "test")
    wanted = generate.app_id_of(7, spec)
    found = client.graph("GET", "/servicePrincipals", params={"$filter": f"appId eq '{wanted}'"}).json()["value"]
    assert [sp["appId"] for sp in found] == [wanted]
    none = client.graph("GET", "/applications", params={"$filter": "appId eq '00000000-0000-0000-0000-000000000000'"})
    assert none.json()["value"] == []
    assert sb.info.tenant_id


def test_owners_and_federated_credentials_are_served_per_application(big: tuple[Sandbox, Client]) -> None:
    sb, client = big
    state = sb.dump()
    owned = next(iter(state["owners"]))
    owners = client.graph("GET", f"/applications/{owned}/owners").json()["value"]
    assert owners and owners[0]["@odata.type"] == "#microsoft.graph.user"
    federated = next(iter(state["federatedIdentityCredentials"]))
    creds = client.graph("GET", f"/applications/{federated}/federatedIdentityCredentials").json()["value"]
    assert creds[0]["issuer"] == "https://token.actions.githubusercontent.com"


def test_the_own_certificate_kinds_are_keyed_with_the_supplied_certificate(tmp_path: Path) -> None:
    built = build(load_scenario(_scenario(tmp_path, applications=300)))
    spec = generate.parse_spec(load_scenario(SCENARIO).doc["generate"] | {"applications": 300}, "test")
    own = set(generate.declared_link_breaks(spec))
    supplied = built.certificates["app"].thumbprint_sha1
    for app in built.state["applications"]:
        if app["displayName"].startswith("generated"):
            thumbprints = {base64.b64decode(k["customKeyIdentifier"]).hex().upper() for k in app["keyCredentials"]}
            assert (thumbprints == {supplied}) is (app["appId"] in own), app["displayName"]
    assert own


def test_rbac_for_applications_kinds_hold_application_roles_with_and_without_a_scope(tmp_path: Path) -> None:
    built = build(load_scenario(_scenario(tmp_path, applications=300)))
    exchange = built.state["exchange"]
    assert [s["Name"] for s in exchange["managementScopes"]] == [generate.GENERATED_SCOPE]
    application = [a for a in exchange["managementRoleAssignments"] if a["Role"].startswith("Application ")]
    assert {a["RoleAssigneeType"] for a in application} == {"ServicePrincipal"}
    assert {a["RecipientWriteScope"] for a in application} == {"CustomRecipientScope", "Organization"}
