"""Settings sources and precedence, the provenance header, usage errors, and staying inert elsewhere."""

from __future__ import annotations

import json

import pytest

APP_ID = "11111111-2222-3333-4444-555555555555"

SETTINGS_CHECK = '''
import pytest

@pytest.mark.requirement("CUSTOM-SETTINGS-001", severity="info")
def test_settings_visible(cba_settings, evidence):
    """The settings reach the checks"""
    evidence.observed("tenant", cba_settings.tenant)
'''


def run_document(pytester: pytest.Pytester, *args: str) -> dict:
    result = pytester.runpytest("--cba-json=results.json", *args)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    return json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))


def test_option_beats_env_beats_file_beats_default(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_settings=SETTINGS_CHECK)
    pytester.makefile(
        ".toml",
        cbacheck=(
            f'tenant = "file.onmicrosoft.com"\napp_id = "{APP_ID}"\n'
            'organization = "file.onmicrosoft.com"\ncloud = "gcc"\n'
        ),
    )
    monkeypatch.setenv("CBACHECK_TENANT", "env.onmicrosoft.com")
    monkeypatch.setenv("CBACHECK_ORGANIZATION", "env.onmicrosoft.com")
    monkeypatch.setenv("CBACHECK_EXPIRY_DAYS", "20")
    settings = run_document(pytester, "--cba-expiry-days=40", "--cba-organization=option.onmicrosoft.com")["run"][
        "settings"
    ]
    assert settings["expiry_days"] == {"value": 40, "source": "option --cba-expiry-days"}
    assert settings["organization"] == {"value": "option.onmicrosoft.com", "source": "option --cba-organization"}
    assert settings["tenant"] == {"value": "env.onmicrosoft.com", "source": "env CBACHECK_TENANT"}
    assert settings["cloud"]["value"] == "gcc"
    assert settings["cloud"]["source"].startswith("file ") and settings["cloud"]["source"].endswith("cbacheck.toml")
    assert settings["max_lifetime_days"] == {"value": 365, "source": "default"}


def test_pyproject_tool_cbacheck_table_is_read(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_settings=SETTINGS_CHECK)
    pytester.makepyprojecttoml('[tool.cbacheck]\ncloud = "gcchigh"\norganization = "contoso.onmicrosoft.us"\n')
    settings = run_document(pytester, "--cba-run")["run"]["settings"]
    assert settings["cloud"]["value"] == "gcchigh"
    assert settings["organization"]["value"] == "contoso.onmicrosoft.us"
    assert "[tool.cbacheck]" in settings["cloud"]["source"]


def test_explicit_config_file_option_is_read(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_settings=SETTINGS_CHECK)
    (pytester.path / "elsewhere.toml").write_text("expiry_days = 7\n", encoding="utf-8")
    settings = run_document(pytester, "--cba-config=elsewhere.toml")["run"]["settings"]
    assert settings["expiry_days"]["value"] == 7
    assert "elsewhere.toml" in settings["expiry_days"]["source"]


def test_header_names_each_value_with_its_source(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_plain="def test_nothing():\n    pass\n")
    monkeypatch.setenv("CBACHECK_CLOUD", "gcc")
    result = pytester.runpytest("--cba-expiry-days=45", "-v")
    header = [line for line in result.outlines if line.startswith("cbacheck: ")]
    assert len(header) == 1, result.outlines
    assert "cloud=gcc (from env CBACHECK_CLOUD)" in header[0]
    assert "fix=plan (default)" in header[0]
    assert "expiry_days=45 (from option --cba-expiry-days)" in header[0]
    assert "tenant=(not set) (default)" in header[0]


def test_without_v_the_header_names_the_subject_and_counts_the_rest(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_plain="def test_nothing():\n    pass\n")
    monkeypatch.setenv("CBACHECK_CLOUD", "gcc")
    result = pytester.runpytest("--cba-expiry-days=45")
    (header,) = [line for line in result.outlines if line.startswith("cbacheck: ")]
    assert "tenant=(not set) (default)" in header and "fix=plan (default)" in header
    assert "expiry_days" not in header and "cloud=" not in header
    assert "(+2 more settings: -v, or Run details in the report)" in header


def test_every_settings_problem_is_its_own_error_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--cba-cloud=mars", "--cba-expiry-days=soon", "--cba-tenant=contoso.onmicrosoft.com")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR: cbacheck:")]
    assert any("cloud = 'mars'" in line and "global" in line for line in errors), result.errlines
    assert any("expiry_days = 'soon'" in line and "whole number" in line for line in errors), result.errlines
    assert any("app_id is not set" in line for line in errors), result.errlines
    assert len(errors) == 3
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_a_secret_has_no_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--cba-cert-password=hunter2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unrecognized arguments: --cba-cert-password=hunter2" in result.stderr.str()


def test_missing_config_file_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--cba-config=nowhere.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any("nowhere.toml" in line and "does not exist" in line for line in result.errlines), result.errlines


def test_invalid_config_file_is_named_with_the_toml_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_nothing():\n    pass\n")
    pytester.makefile(".toml", cbacheck="tenant = \n")
    result = pytester.runpytest("--cba-run")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any("cbacheck.toml" in line and "not valid TOML" in line for line in result.errlines), result.errlines


def test_plugin_is_inert_in_an_unrelated_session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_plain="def test_nothing():\n    pass\n")
    # A setting that would be an error if the plugin were evaluating settings.
    monkeypatch.setenv("CBACHECK_CLOUD", "mars")
    before = {path.name for path in pytester.path.iterdir()}
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 0
    assert not any(line.startswith("cbacheck") for line in result.outlines), result.outlines
    assert {path.name for path in pytester.path.iterdir()} == before  # no reports/ folder, no files


def test_requirement_markers_alone_activate_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_settings=SETTINGS_CHECK)
    result = pytester.runpytest()
    assert result.ret == 0
    assert any(line.startswith("cbacheck: tenant=") for line in result.outlines), result.outlines
    written = sorted(path.suffix for path in (pytester.path / "reports").iterdir())
    assert written == [".html", ".json", ".xml"]
    stems = {path.stem for path in (pytester.path / "reports").iterdir()}
    assert len(stems) == 1 and stems.pop().startswith("cbacheck-")


def test_markers_alone_with_bad_settings_stop_with_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_settings=SETTINGS_CHECK)
    monkeypatch.setenv("CBACHECK_CLOUD", "mars")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any("cloud = 'mars' (env CBACHECK_CLOUD)" in line for line in result.errlines), result.errlines
    assert not (pytester.path / "reports").exists()


def test_endpoints_from_a_named_file_get_a_loud_line_in_header_and_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_settings=SETTINGS_CHECK)
    named = pytester.path / "policy.toml"
    named.write_text('graph_url = "https://graph.microsoft.com"\n', encoding="utf-8")
    result = pytester.runpytest(f"--cba-config={named}", "--cba-report-dir=out")
    assert result.ret == 0, result.errlines
    line = f"endpoints overridden: graph_url=https://graph.microsoft.com from file {named}"
    assert f"cbacheck: {line}" in result.outlines
    assert line in next((pytester.path / "out").glob("*.html")).read_text(encoding="utf-8")


def test_a_found_file_that_would_apply_fixes_stops_the_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_settings=SETTINGS_CHECK)
    pytester.makefile(".toml", cbacheck='fix = "apply"\nyes = true\n')
    result = pytester.runpytest("--cba-run")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR: cbacheck:")]
    assert len(errors) == 2 and all("cbacheck.toml" in line for line in errors), result.errlines
    assert not (pytester.path / "reports").exists()
