"""Who may set what: a config file found in the working folder describes the subject and steers nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from cbacheck import cli
from cbacheck.config import Settings, env_name, option_name, resolve, setting_fields
from cbacheck.errors import ConfigError

APP_ID = "11111111-2222-3333-4444-555555555555"
SUBJECT = 'tenant = "contoso.onmicrosoft.com"\napp_id = "' + APP_ID + '"\n'
# What the decision lets a found file set: the subject of the check and where reports go.
SUBJECT_SETTINGS = {
    "tenant",
    "app_id",
    "organization",
    "cert",
    "cert_password",
    "cloud",
    "auditor_credential",
    "auditor_app_id",
    "auditor_cert",
    "auditor_cert_password",
    "admin_credential",
    "admin_app_id",
    "admin_cert",
    "admin_cert_password",
    "certificates_password",
    "report_dir",
    "html",
    "json",
    "junit",
    "sarif",
    "summary",
    "bundle",
}


def toml_value(spec: dataclasses.Field[Any], existing_file: Path) -> str:
    """A TOML value of the setting's kind that would be accepted if the file were allowed to set it."""
    kind = spec.metadata["kind"]
    by_kind = {
        "bool": "true",
        "int": "1",
        "float": "1.0",
        "list": '["Global Administrator"]',
        "url": '"https://graph.microsoft.com"',
        "path": f'"{existing_file}"',
        "guid": f'"{APP_ID}"',
    }
    if kind == "choice":
        return f'"{spec.metadata["choices"][-1]}"'
    return by_kind.get(kind, '"Global Administrator"')


def problems_of(**kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        resolve(**kwargs)
    return caught.value.problems


def test_the_subject_settings_are_exactly_what_a_found_file_may_set() -> None:
    assert {s.name for s in setting_fields() if s.metadata["trust"] == "subject"} == SUBJECT_SETTINGS


STEERING = [s for s in setting_fields() if s.metadata["trust"] != "subject"]


@pytest.mark.parametrize("spec", STEERING, ids=[s.name for s in STEERING])
def test_a_found_file_that_steers_is_an_error_naming_the_file_and_the_key(
    spec: dataclasses.Field[Any], tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not read here\n", encoding="utf-8")
    found = tmp_path / "cbacheck.toml"
    found.write_text(SUBJECT + f"{spec.name} = {toml_value(spec, bundle)}\n", encoding="utf-8")
    problems = problems_of(env={}, cwd=tmp_path)
    assert len(problems) == 1, problems
    assert str(found) in problems[0] and spec.name in problems[0]
    if spec.metadata["trust"] == "steering":
        assert env_name(spec.name) in problems[0] and "--config" in problems[0]


@pytest.mark.parametrize(
    "line",
    [
        'graph_url = "https://attacker.example"',
        'fix = "apply"',
        "yes = true",
        'required_role = "Global Administrator"',
        "sandbox = true",
        "expiry_days = 0",
        f'ca_bundle = "{__file__}"',
    ],
)
def test_a_found_pyproject_cannot_steer_either(line: str, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.cbacheck]\n{line}\n", encoding="utf-8")
    problems = problems_of(env={}, cwd=tmp_path)
    assert any("pyproject.toml" in p and line.split(" ")[0] in p for p in problems), problems


def test_a_found_file_may_describe_the_subject(tmp_path: Path) -> None:
    cert = tmp_path / "app.cer"
    cert.write_text("x", encoding="utf-8")
    (tmp_path / "cbacheck.toml").write_text(
        SUBJECT + f'organization = "contoso.onmicrosoft.com"\ncloud = "gcc"\ncert = "{cert}"\n'
        f'auditor_app_id = "{APP_ID}"\nreport_dir = "out"\njson = "out/r.json"\n',
        encoding="utf-8",
    )
    settings = resolve(env={}, cwd=tmp_path)
    assert (settings.tenant, settings.cloud, settings.cert) == ("contoso.onmicrosoft.com", "gcc", cert)
    assert settings.source("cloud") == f"file {tmp_path / 'cbacheck.toml'}"


def test_a_file_named_by_option_or_environment_may_steer(tmp_path: Path) -> None:
    named = tmp_path / "policy.toml"
    named.write_text('fix = "apply"\nyes = true\nexpiry_days = 45\n', encoding="utf-8")
    by_option = resolve(env={}, cwd=tmp_path, config_file=named)
    by_env = resolve(env={"CBACHECK_CONFIG": str(named)}, cwd=tmp_path)
    for settings in (by_option, by_env):
        assert (settings.fix, settings.yes, settings.expiry_days) == ("apply", True, 45)
        assert settings.source("fix") == f"file {named}"


def test_a_named_file_wins_over_the_found_one_which_is_then_not_read(tmp_path: Path) -> None:
    (tmp_path / "cbacheck.toml").write_text('fix = "apply"\n', encoding="utf-8")
    named = tmp_path / "named.toml"
    named.write_text("expiry_days = 10\n", encoding="utf-8")
    settings = resolve(env={}, cwd=tmp_path, config_file=named)
    assert (settings.fix, settings.expiry_days) == ("plan", 10)


def test_options_and_environment_may_steer(tmp_path: Path) -> None:
    settings = resolve(options={"fix": "apply"}, env={"CBACHECK_YES": "true", "CBACHECK_SANDBOX": "1"}, cwd=tmp_path)
    assert (settings.fix, settings.yes, settings.sandbox) == ("apply", True, True)


# --- endpoints ----------------------------------------------------------------------------------


def test_a_named_file_pointing_graph_elsewhere_is_refused_without_the_command_line_flag(tmp_path: Path) -> None:
    named = tmp_path / "named.toml"
    named.write_text('graph_url = "https://attacker.example"\n', encoding="utf-8")
    problems = problems_of(env={}, cwd=tmp_path, config_file=named)
    assert len(problems) == 1
    assert "graph_url" in problems[0] and "attacker.example" in problems[0] and str(named) in problems[0]
    assert "--allow-custom-endpoints" in problems[0]
    settings = resolve(options={"allow_custom_endpoints": True}, env={}, cwd=tmp_path, config_file=named)
    assert settings.graph_url == "https://attacker.example"
    assert (
        settings.endpoint_overrides() == f"endpoints overridden: graph_url=https://attacker.example from file {named}"
    )


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("login_url", "https://login.microsoftonline.com.attacker.example"),
        ("login_url", "https://login.microsoftonline.com@attacker.example"),
        ("graph_url", "https://graph.microsoft.us"),  # a Microsoft host, but not of the global cloud
        ("exchange_url", "https://127.0.0.1:8443"),  # loopback from the environment, not marked sandbox
        ("compliance_url", "https://127.0.0.1:8443"),
        ("compliance_url", "https://ps.compliance.protection.office365.us"),  # GCC High's, not the global cloud's
    ],
)
def test_an_endpoint_from_the_environment_outside_the_cloud_is_refused(name: str, url: str, tmp_path: Path) -> None:
    problems = problems_of(env={env_name(name): url}, cwd=tmp_path)
    assert any(name in p and env_name(name) in p for p in problems), problems


def test_microsoft_hosts_of_the_chosen_cloud_are_accepted_with_a_loud_line(tmp_path: Path) -> None:
    settings = resolve(
        env={"CBACHECK_CLOUD": "gcchigh", "CBACHECK_GRAPH_URL": "https://graph.microsoft.us/"}, cwd=tmp_path
    )
    assert settings.cloud_endpoints.graph_url == "https://graph.microsoft.us"
    assert settings.endpoint_overrides() == (
        "endpoints overridden: graph_url=https://graph.microsoft.us from env CBACHECK_GRAPH_URL"
    )
    assert resolve(env={}, cwd=tmp_path).endpoint_overrides() is None


def test_the_compliance_endpoint_is_an_endpoint_override_of_its_own(tmp_path: Path) -> None:
    regional = "https://eur05b.ps.compliance.protection.outlook.com"
    settings = resolve(env={"CBACHECK_COMPLIANCE_URL": regional}, cwd=tmp_path)
    line = f"endpoints overridden: compliance_url={regional} from env CBACHECK_COMPLIANCE_URL"
    assert settings.endpoint_overrides() == line
    assert settings.cloud_endpoints.compliance_url == regional
    assert settings.cloud_endpoints.exchange_url == "https://outlook.office365.com"


def test_loopback_endpoints_are_accepted_as_options_or_in_a_sandbox_run(tmp_path: Path) -> None:
    loopback = {
        "login_url": "https://127.0.0.1:8443",
        "graph_url": "https://[::1]:8443",
        "exchange_url": "https://localhost:1",
    }
    assert resolve(options=loopback, env={}, cwd=tmp_path).graph_url == "https://[::1]:8443"
    from_env = {env_name(k): v for k, v in loopback.items()}
    assert resolve(env={**from_env, "CBACHECK_SANDBOX": "true"}, cwd=tmp_path).sandbox is True
    problems = problems_of(
        env={**from_env, "CBACHECK_SANDBOX": "true", "CBACHECK_LOGIN_URL": "https://10.0.0.1"}, cwd=tmp_path
    )
    assert len(problems) == 1 and "10.0.0.1" in problems[0]


def test_allow_custom_endpoints_comes_only_from_the_command_line(tmp_path: Path) -> None:
    problems = problems_of(env={"CBACHECK_ALLOW_CUSTOM_ENDPOINTS": "true"}, cwd=tmp_path)
    assert problems == [
        "CBACHECK_ALLOW_CUSTOM_ENDPOINTS is set, but allow_custom_endpoints can only be given on the command line "
        "(--allow-custom-endpoints)"
    ]
    named = tmp_path / "named.toml"
    named.write_text("allow_custom_endpoints = true\n", encoding="utf-8")
    problems = problems_of(env={}, cwd=tmp_path, config_file=named)
    assert len(problems) == 1 and str(named) in problems[0] and "command line" in problems[0]


def test_the_run_command_has_the_flag() -> None:
    args = cli.build_parser().parse_args(["run", "--allow-custom-endpoints"])
    assert args.setting_allow_custom_endpoints is True


# --- secrets ------------------------------------------------------------------------------------


SECRETS = [s for s in setting_fields() if s.metadata["kind"] == "secret"]


@pytest.mark.parametrize("spec", SECRETS, ids=[s.name for s in SECRETS])
def test_no_secret_setting_has_an_option(spec: dataclasses.Field[Any], tmp_path: Path) -> None:
    assert spec.metadata["cli"] is False
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", option_name(spec.name), "hunter2"])
    problems = problems_of(options={spec.name: "hunter2"}, env={}, cwd=tmp_path)
    assert problems == [
        f"{spec.name} cannot be given as an option; set {env_name(spec.name)} or {env_name(spec.name)}_FILE"
    ]


def test_a_found_file_may_still_hold_a_password_as_documented(tmp_path: Path) -> None:
    (tmp_path / "cbacheck.toml").write_text('cert_password = "hunter2"\n', encoding="utf-8")
    settings = resolve(env={}, cwd=tmp_path)
    assert settings.cert_password == "hunter2"
    assert settings.describe()["cert_password"]["value"] == "(set)"


def test_settings_built_in_code_keep_their_defaults_for_the_new_flag() -> None:
    assert Settings().allow_custom_endpoints is False


def test_the_configuration_doc_says_which_settings_a_found_file_may_set() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[1:-1]]
        for line in doc.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    }
    for spec in setting_fields():
        cells = rows[f"`{spec.name}` ({spec.metadata['kind']})"]
        assert cells[4] == ("yes" if spec.metadata["trust"] == "subject" else "no"), spec.name
        if spec.metadata["minimum"] is not None:
            assert f"{spec.metadata['minimum']:g} to {spec.metadata['maximum']:g}" in cells[6], spec.name
