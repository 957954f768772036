"""`cbacheck audit` against a generated sandbox tenant: every kind of principal, each app's outcomes as declared."""

from __future__ import annotations

import csv
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from cbacheck import cli, wellknown
from cbacheck.catalogue import AUDIT_CATALOGUE, CATALOGUE
from cbacheck.collect import audit, audit_links
from cbacheck.commands import demo as democommand
from cbacheck.errors import ExitCode
from cbacheck.report.audit import AUDIT_SCHEMA
from cbacheck.sandbox import Sandbox, generate
from cbacheck.sandbox.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "audit-generated.json"


# The audit reads with the auditor alone: no app under test, no app's certificate.
NOT_FOR_THE_AUDIT = ("app_id", "cert", "organization")


def _options(sb: Sandbox, tmp_path: Path) -> list[str]:
    options = democommand.sandbox_settings(sb, tmp_path / "reports")
    for name in NOT_FOR_THE_AUDIT:
        options.pop(name, None)
    args: list[str] = []
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def _audit(sb: Sandbox, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "reports"
    status = cli.main(["audit", *_options(sb, tmp_path), *extra])
    return status, json.loads((out / "audit.json").read_text(encoding="utf-8"))


PASSWORD = "pfx-password-5e1a"


def _certificate_folder(sb: Sandbox, folder: Path) -> Path:
    """The app's certificate as a password-protected PFX (it matches the app under test and the generated
    own-certificate apps), and the admin's PEM, which matches no audited app (the admin is a tool)."""
    pem = sb.identities["under_test"].cert_path.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    certificate = x509.load_pem_x509_certificate(pem)
    encryption = serialization.BestAvailableEncryption(PASSWORD.encode())
    folder.mkdir()
    (folder / "app.pfx").write_bytes(pkcs12.serialize_key_and_certificates(b"app", key, certificate, None, encryption))
    (folder / "admin.pem").write_bytes(sb.identities["admin"].cert_path.read_bytes())
    return folder


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], Path, Sandbox]:
    tmp_path = tmp_path_factory.mktemp("audit")
    with Sandbox(SCENARIO, workdir=tmp_path / "sandbox") as sb, pytest.MonkeyPatch.context() as env:
        env.setenv("CBACHECK_CERTIFICATES_PASSWORD", PASSWORD)
        folder = _certificate_folder(sb, tmp_path / "certificates")
        sarif = str(tmp_path / "reports" / "audit.sarif")
        status, document = _audit(sb, tmp_path, "--certificates", str(folder), "--sarif", sarif)
        return status, document, tmp_path, sb


def test_every_generated_holder_fails_exactly_what_the_scenario_declares(audited: Any) -> None:
    status, document, _, _ = audited
    spec = generate.parse_spec(load_scenario(SCENARIO).doc["generate"], "test")
    declared = generate.declared_breaks(spec)
    for app_id, breaks in generate.declared_link_breaks(spec).items():  # their certificate was supplied
        declared[app_id] = declared[app_id] | breaks
    apps = {app["appId"]: app for app in document["apps"]}
    assert set(declared) <= set(apps), "a generated holder was not found"
    kinds = {generate.kind_of(i, spec) for i in range(spec.applications)} - {None}
    assert kinds == set(generate.KINDS), "the scenario must hold every kind of principal"
    differences = {}
    for app_id, breaks in declared.items():
        failed = {r["id"] for r in apps[app_id]["requirements"] if r["outcome"] != "passed"}
        if failed != set(breaks):
            differences[apps[app_id]["displayName"]] = (sorted(failed), sorted(breaks))
    assert not differences, f"(got, declared) per app: {differences}"
    assert status == ExitCode.FAILED and document["verdict"] == "failed"


def test_the_scenario_declares_stale_and_recent_apps_and_the_audit_finds_them(audited: Any) -> None:
    _, document, _, _ = audited
    spec = generate.parse_spec(load_scenario(SCENARIO).doc["generate"], "test")
    declared = generate.declared_breaks(spec)
    signed_in = generate.days_since_sign_in(spec)
    unused = {app_id for app_id, breaks in declared.items() if "CBA-AUD-013" in breaks}
    assert unused & set(signed_in) and unused - set(signed_in), "stale sign-ins and never-signed-in apps"
    never_but_recent = [a for a in set(declared) - set(signed_in) - unused if "managed" not in a]
    apps = {app["appId"]: app for app in document["apps"]}
    recent = [a for a in never_but_recent if apps[a]["type"] == "Application"]
    assert recent, "the scenario must hold an app created within unused_days that never signed in"
    for app_id in recent:
        (record,) = [r for r in apps[app_id]["requirements"] if r["id"] == "CBA-AUD-013"]
        assert record["outcome"] == "passed" and "no sign-in recorded, created 45 days ago" in record["message"]


def test_an_audit_needs_a_tenant_and_no_app(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["audit", "--report-dir", str(tmp_path)]) == ExitCode.USAGE
    assert "tenant is not set" in capsys.readouterr().err


def test_non_holders_and_the_auditor_are_not_listed(audited: Any) -> None:
    _, document, _, sb = audited
    listed = {app["appId"] for app in document["apps"]}
    assert sb.identities["auditor"].app_id not in listed and sb.identities["admin"].app_id not in listed
    assert not any(" app " in app["displayName"] for app in document["apps"])  # generated non-holders
    assert document["counts"]["applications_seen"] > len(document["apps"])


def test_managed_identities_are_judged_by_roles_and_permissions_only(audited: Any) -> None:
    _, document, _, _ = audited
    managed = [app for app in document["apps"] if app["type"] == "ManagedIdentity"]
    assert managed
    for app in managed:
        assert {r["id"] for r in app["requirements"]} == {"CBA-AUD-007", "CBA-AUD-008"}


def test_the_document_follows_its_schema_and_the_catalogue(audited: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    _, document, _, _ = audited
    jsonschema.validate(document, AUDIT_SCHEMA)
    for app in document["apps"]:
        for record in app["requirements"]:
            entry = AUDIT_CATALOGUE.get(record["id"]) or CATALOGUE[record["id"]]
            assert (record["title"], record["severity"]) == (entry.title, entry.severity)


def test_html_and_csv_list_every_principal(audited: Any) -> None:
    _, document, tmp_path, _ = audited
    html = (tmp_path / "reports" / "audit.html").read_text(encoding="utf-8")
    rows = list(csv.DictReader((tmp_path / "reports" / "audit.csv").open(encoding="utf-8")))
    assert len(rows) == len(document["apps"])
    for app in document["apps"]:
        assert f'id="app-{app["appId"]}"' in html
    assert "<script" not in html


def test_compare_names_the_principals_that_appeared_and_disappeared(tmp_path: Path) -> None:
    earlier = {"schema": "cbacheck-audit", "apps": [{"appId": "gone-1", "displayName": "retired app"}]}
    (tmp_path / "earlier.json").write_text(json.dumps(earlier), encoding="utf-8")
    with Sandbox(SCENARIO, workdir=tmp_path / "sandbox") as sb:
        _, document = _audit(sb, tmp_path, "--compare", str(tmp_path / "earlier.json"))
    assert document["compare"]["disappeared"] == ["retired app (gone-1)"]
    assert len(document["compare"]["appeared"]) == len(document["apps"])


def test_each_full_access_holder_is_listed_with_whether_ews_accepts_it(audited: Any) -> None:
    _, document, _, _ = audited
    spec = generate.parse_spec(load_scenario(SCENARIO).doc["generate"], "test")
    apps = {app["appId"]: app for app in document["apps"]}
    accepts = generate.ews_accepts(spec)
    assert set(accepts.values()) == {True, False}, "the scenario must hold both"
    for app_id, accepted in accepts.items():
        (record,) = [r for r in apps[app_id]["requirements"] if r["id"] == "CBA-AUD-010"]
        assert ("EWS accepts it now" in record["message"]) is accepted, record
        assert ("EWS refuses it" in record["message"]) is not accepted, record


def test_an_exchange_rbac_holder_is_authorised_as_cbacheck_run_judges_it(audited: Any) -> None:
    _, document, _, _ = audited
    rbac_only = [app for app in document["apps"] if "rbac-only" in app["displayName"]]
    assert rbac_only
    for app in rbac_only:
        (record,) = [r for r in app["requirements"] if r["id"] == "CBA-AUD-008"]
        assert record["outcome"] == "passed" and "Exchange RBAC: View-Only Configuration" in record["message"]


def test_owners_and_federated_credentials_are_read_in_batches_and_shown(audited: Any) -> None:
    _, document, tmp_path, _ = audited
    owned = [app for app in document["apps"] if "owned" in app["displayName"]]
    federated = [app for app in document["apps"] if "federated" in app["displayName"]]
    assert owned and federated
    assert all(app["owners"] and app["owners"][0].startswith("owner") for app in owned)
    assert all(any(c["kind"] == "federated" for c in app["credentials"]) for app in federated)
    others = [app for app in document["apps"] if app["type"] == "Application" and app not in owned]
    assert all(app["owners"] == [] for app in others if "multi" not in app["displayName"])
    html = (tmp_path / "reports" / "audit.html").read_text(encoding="utf-8")
    assert "token.actions.githubusercontent.com" in html and owned[0]["owners"][0] in html
    assert document["requests"]["per_endpoint"]["/applications/{id}/owners"] >= len(owned)


def test_last_sign_in_and_the_app_management_policy_are_read_and_shown(audited: Any) -> None:
    _, document, tmp_path, _ = audited
    spec = generate.parse_spec(load_scenario(SCENARIO).doc["generate"], "test")
    days = generate.days_since_sign_in(spec)
    assert "last sign-in" not in document["not_read"] and "app management policy" not in document["not_read"]
    apps = {app["appId"]: app for app in document["apps"]}
    never = [app_id for app_id in generate.declared_breaks(spec) if app_id not in days]
    assert never, "the scenario must hold holders that never signed in"
    for app_id in never:
        assert apps[app_id]["lastSignIn"] == "none recorded"
    today = datetime.now(UTC)
    for app_id in set(generate.declared_breaks(spec)) & set(days):
        shown = datetime.fromisoformat(apps[app_id]["lastSignIn"].replace("Z", "+00:00"))
        assert abs((today - shown) - timedelta(days=days[app_id])) < timedelta(hours=1), apps[app_id]
    assert document["app_management_policy"] == {
        "isEnabled": True,
        "passwordCredentials": ["passwordAddition"],
        "keyCredentials": [],
    }
    rows = {row["appId"]: row for row in csv.DictReader((tmp_path / "reports" / "audit.csv").open(encoding="utf-8"))}
    assert rows[never[0]]["lastSignIn"] == "none recorded"
    html = (tmp_path / "reports" / "audit.html").read_text(encoding="utf-8")
    assert "read: app management policy" in html and "passwordAddition" in html


def test_sign_in_activity_and_app_management_policy_unreadable_are_named_and_the_audit_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(SCENARIO.read_text(encoding="utf-8"))
    unread = {wellknown.GRAPH_PERMISSION_IDS["AuditLog.Read.All"], wellknown.GRAPH_PERMISSION_IDS["Policy.Read.All"]}
    state = doc["state"]
    state["appRoleAssignments"] = [a for a in state["appRoleAssignments"] if a["appRoleId"] not in unread]
    scenario = tmp_path / "audit-without-audit-log.json"
    scenario.write_text(json.dumps(doc), encoding="utf-8")
    with Sandbox(scenario, workdir=tmp_path / "sandbox") as sb:
        _, document = _audit(sb, tmp_path)
    assert "needs AuditLog.Read.All" in document["not_read"]["last sign-in"]
    assert "needs Policy.Read.All" in document["not_read"]["app management policy"]
    console = capsys.readouterr().out  # said on the console too, not only in the reports
    assert "last sign-in: not read" in console and "app management policy: not read" in console
    assert all(app["lastSignIn"] is None for app in document["apps"])
    for app in document["apps"]:  # CBA-AUD-013 cannot pass unread
        for record in (r for r in app["requirements"] if r["id"] == "CBA-AUD-013"):
            assert record["outcome"] == "error" and "needs AuditLog.Read.All" in record["message"], record
    assert document["app_management_policy"] is None
    assert document["counts"]["apps"] > 0


def test_the_markdown_summary_lists_every_principal_that_did_not_pass(audited: Any) -> None:
    _, document, tmp_path, _ = audited
    summary = (tmp_path / "reports" / "audit.md").read_text(encoding="utf-8")
    failing = [app for app in document["apps"] if app["verdict"] != "passed"]
    assert failing and all(app["appId"] in summary for app in failing)
    assert not any(app["appId"] in summary for app in document["apps"] if app["verdict"] == "passed")


def test_an_exception_naming_an_app_accepts_its_finding_and_no_other(tmp_path: Path) -> None:
    spec = generate.parse_spec(load_scenario(SCENARIO).doc["generate"], "test")
    declared = generate.declared_breaks(spec)
    # The accepted app fails CBA-AUD-003 alone; the other one fails it too (with or without other findings).
    (accepted_app,) = [app_id for app_id, breaks in declared.items() if breaks == {"CBA-AUD-003"}][:1]
    other_app = next(app_id for app_id, found in declared.items() if "CBA-AUD-003" in found and app_id != accepted_app)
    exceptions = tmp_path / "exceptions.toml"
    exceptions.write_text(
        f'[[exception]]\nid = "CBA-AUD-003"\napp_id = "{accepted_app}"\n'
        'reason = "vendor tool, secret rotated monthly"\napprover = "security@contoso.example"\n'
        'expires = "2099-12-31"\n',
        encoding="utf-8",
    )
    with Sandbox(SCENARIO, workdir=tmp_path / "sandbox") as sb:
        _, document = _audit(sb, tmp_path, "--exceptions", str(exceptions))
    apps = {app["appId"]: app for app in document["apps"]}
    assert apps[accepted_app]["verdict"] == "passed"
    (record,) = [r for r in apps[accepted_app]["requirements"] if r["id"] == "CBA-AUD-003"]
    assert record["outcome"] == "accepted" and "security@contoso.example" in record["message"]
    assert apps[other_app]["verdict"] == "failed"
    (other,) = [r for r in apps[other_app]["requirements"] if r["id"] == "CBA-AUD-003"]
    assert other["outcome"] == "failed"


def test_the_sarif_log_has_one_result_per_failed_app_and_requirement_and_validates(audited: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    _, document, tmp_path, _ = audited
    log = json.loads((tmp_path / "reports" / "audit.sarif").read_text(encoding="utf-8"))
    schema = json.loads((SCENARIO.parents[2] / "schemas" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(log)
    failing = {
        (app["appId"], r["id"]) for app in document["apps"] for r in app["requirements"] if r["outcome"] == "failed"
    }
    (run,) = log["runs"]
    found = [(r["properties"]["app"], r["ruleId"]) for r in run["results"]]
    assert sorted(found) == sorted(failing) and failing
    apps = {app["appId"]: app for app in document["apps"]}
    for result in run["results"]:
        (logical,) = result["locations"][0]["logicalLocations"]
        assert logical["name"] == apps[result["properties"]["app"]]["displayName"]


def _of_kind(document: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    spec = generate.parse_spec(load_scenario(SCENARIO).doc["generate"], "test")
    apps = {app["appId"]: app for app in document["apps"]}
    found = [apps[generate.app_id_of(i, spec)] for i in range(spec.applications) if generate.kind_of(i, spec) == kind]
    assert found, f"the scenario must hold a {kind} app"
    return found


def _record(app: dict[str, Any], req_id: str) -> dict[str, Any]:
    (record,) = [r for r in app["requirements"] if r["id"] == req_id]
    return record


def test_rbac_for_applications_is_read_and_an_entra_grant_stays_unscoped_beside_it(audited: Any) -> None:
    _, document, tmp_path, _ = audited
    assert "RBAC for Applications" not in document["not_read"]
    scoped_note = f"management scope {generate.GENERATED_SCOPE} ({generate.GENERATED_SCOPE_FILTER})"
    for app in _of_kind(document, "graph-mail-scoped"):  # found through Exchange alone
        assert app["permissions"] == [f"{wellknown.RBAC_FOR_APPLICATIONS}/Application Mail.Read"]
        assert _record(app, "CBA-AUD-014")["outcome"] == "passed"
        assert scoped_note in _record(app, "CBA-AUD-014")["message"]
        assert app["applicationRbac"] == [f"Application Mail.Read over {scoped_note}"]
    for app in _of_kind(document, "graph-mail-both"):
        record = _record(app, "CBA-AUD-011")
        assert record["outcome"] == "failed" and "remove the Entra grant" in record["message"], record
        assert scoped_note in record["message"] and _record(app, "CBA-AUD-014")["outcome"] == "passed"
    for app in _of_kind(document, "graph-mail"):
        assert "no scoped RBAC for Applications assignment" in _record(app, "CBA-AUD-011")["message"]
    for app in _of_kind(document, "graph-mail-restricted"):  # the older limit on an Entra grant
        record = _record(app, "CBA-AUD-011")
        assert record["outcome"] == "passed" and "Application Access Policy" in record["message"], record
    for app in _of_kind(document, "rbac-app-unscoped"):
        record = _record(app, "CBA-AUD-014")
        assert record["outcome"] == "failed" and "the whole organization (no scope)" in record["message"]
    html = (tmp_path / "reports" / "audit.html").read_text(encoding="utf-8")
    assert generate.GENERATED_SCOPE in html


def test_rbac_for_applications_unreadable_is_named_in_the_graph_mailbox_finding(tmp_path: Path) -> None:
    doc = json.loads(SCENARIO.read_text(encoding="utf-8"))
    doc["state"]["exchange"]["roleGroups"] = []  # the auditor holds no Exchange role: no RBAC read
    scenario = tmp_path / "audit-without-exchange-roles.json"
    scenario.write_text(json.dumps(doc), encoding="utf-8")
    with Sandbox(scenario, workdir=tmp_path / "sandbox") as sb:
        _, document = _audit(sb, tmp_path)
    assert "needs View-Only Organization Management" in document["not_read"]["RBAC for Applications"]
    for app in _of_kind(document, "graph-mail") + _of_kind(document, "graph-mail-restricted"):
        record = _record(app, "CBA-AUD-011")  # an Application Access Policy could limit it: not verified
        assert record["outcome"] == "error" and "Application Access Policies not read" in record["message"], record
        assert "RBAC for Applications not read" in record["message"] and app["applicationRbac"] is None


def test_apps_whose_certificate_was_supplied_get_the_token_and_exchange_links(audited: Any) -> None:
    _, document, tmp_path, sb = audited
    apps = {app["appId"]: app for app in document["apps"]}
    under_test = apps[sb.identities["under_test"].app_id]  # healthy: every link holds
    links = {r["id"]: r["outcome"] for r in under_test["requirements"] if r["id"].startswith(("CBA-TOKEN", "CBA-EXO"))}
    assert links == dict.fromkeys(("CBA-TOKEN-001", "CBA-TOKEN-002", "CBA-TOKEN-003", "CBA-EXO-001"), "passed")
    assert under_test["certificate"]["file"] == "app.pfx"
    claims = _record(under_test, "CBA-TOKEN-002")["evidence"]["observed"]["token claims"]  # the token's, not it
    assert "Exchange.ManageAsApp" in claims["roles"] and claims["appid"] == under_test["appId"]
    for app in _of_kind(document, "own-certificate-no-role"):  # the same functions `cbacheck run` judges with
        assert _record(app, "CBA-EXO-001")["outcome"] in ("failed", "blocked")
        assert "isn't supported in this scenario" in _record(app, "CBA-EXO-001")["message"]
        assert "(in this audit: CBA-AUD-008)" in _record(app, "CBA-TOKEN-002")["message"]
    others = [app for app in document["apps"] if app["certificate"] is None]
    assert others and not any(r["id"].startswith("CBA-TOKEN") for app in others for r in app["requirements"])
    files = {f["file"]: f for f in document["certificates"]}
    assert set(files["app.pfx"]["appIds"]) == {sb.identities["under_test"].app_id} | {
        app["appId"] for kind in generate.LINK_BREAKS for app in _of_kind(document, kind)
    }
    unmatched = files["admin.pem"]  # the admin is a tool, not an audited app: listed, not dropped
    assert unmatched["appIds"] == [] and len(unmatched["thumbprint"]) == 40
    assert unmatched["thumbprint"] in document["not_read"]["supplied certificates"]
    html = (tmp_path / "reports" / "audit.html").read_text(encoding="utf-8")
    assert "admin.pem" in html and "CBA-EXO-001" in html


def test_the_links_run_beside_the_reads_that_follow_the_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The owner batches wait (bounded) for the links to start: before, the links began only after every read.
    links_started = threading.Event()
    waited: list[bool] = []
    collect_links, relations = audit_links.collect_links, audit._relations

    def links_beside(*args: Any) -> Any:
        links_started.set()
        return collect_links(*args)

    def relations_after_the_links_started(*args: Any) -> Any:
        waited.append(links_started.wait(5))
        return relations(*args)

    monkeypatch.setattr(audit_links, "collect_links", links_beside)
    monkeypatch.setattr(audit, "_relations", relations_after_the_links_started)
    monkeypatch.setenv("CBACHECK_CERTIFICATES_PASSWORD", PASSWORD)
    with Sandbox("healthy", workdir=tmp_path / "sandbox") as sb:
        folder = _certificate_folder(sb, tmp_path / "certificates")
        _, document = _audit(sb, tmp_path, "--certificates", str(folder))
    assert waited == [True]
    under_test = next(app for app in document["apps"] if app["appId"] == sb.identities["under_test"].app_id)
    assert _record(under_test, "CBA-EXO-001")["outcome"] == "passed"
    # The $batch of resources, one page per list, then the token and the probe beside the owner batch.
    assert document["requests"]["sequential_round_trips"] == 4
