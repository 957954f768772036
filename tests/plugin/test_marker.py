"""The requirement marker is validated at collection: wrong markers are collection errors with clear text."""

from __future__ import annotations

import json

import pytest

from cbacheck import catalogue


def collect_errors(pytester: pytest.Pytester, **files: str) -> str:
    pytester.makepyfile(**files)
    result = pytester.runpytest("--cba-run", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    return result.stdout.str()


def test_duplicate_id_across_files_is_rejected(pytester: pytest.Pytester) -> None:
    check = '''
import pytest

@pytest.mark.requirement("CUSTOM-DUP-001", severity="low")
def test_{name}():
    """A custom check"""
'''
    output = collect_errors(pytester, test_one=check.format(name="one"), test_two=check.format(name="two"))
    assert "requirement ID CUSTOM-DUP-001 is already used by test_one.py::test_one" in output
    assert "ERROR test_two.py" in output


def test_parametrised_instances_share_one_id(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        '''
import pytest

@pytest.mark.requirement("CUSTOM-PARAM-001", severity="low")
@pytest.mark.parametrize("n", [1, 2])
def test_each(n):
    """A parametrised custom check"""
'''
    )
    result = pytester.runpytest("--cba-run", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_unknown_severity_lists_the_known_ones(pytester: pytest.Pytester) -> None:
    output = collect_errors(
        pytester,
        test_sev='''
import pytest

@pytest.mark.requirement("CUSTOM-SEV-001", severity="urgent")
def test_sev():
    """A custom check"""
''',
    )
    assert "severity 'urgent' is not one of: critical, high, medium, low, info" in output


def test_unknown_fix_lists_the_known_planners(pytester: pytest.Pytester) -> None:
    output = collect_errors(
        pytester,
        test_fix='''
import pytest

@pytest.mark.requirement("CUSTOM-FIX-001", severity="low", fix="reboot")
def test_fix():
    """A custom check"""
''',
    )
    assert "fix 'reboot' is not a known planner; known: new_certificate, rotate_certificate" in output


def test_catalogue_id_must_agree_with_the_catalogue(pytester: pytest.Pytester) -> None:
    output = collect_errors(
        pytester,
        test_cat='''
import pytest

@pytest.mark.requirement("CBA-APP-001", severity="low", fix="manual")
def test_app():
    """Some other title"""
''',
    )
    assert "severity 'low' disagrees with the catalogue's 'critical' for CBA-APP-001" in output
    assert "fix 'manual' disagrees with the catalogue's 'create_app' for CBA-APP-001" in output
    assert "docstring title 'Some other title' disagrees with the catalogue's 'The app registration exists'" in output


def test_marker_called_wrongly_names_the_signature(pytester: pytest.Pytester) -> None:
    output = collect_errors(
        pytester,
        test_sig='''
import pytest

@pytest.mark.requirement("CUSTOM-SIG-001", "high")
def test_sig():
    """A custom check"""
''',
    )
    assert "the requirement marker must be requirement(id, *, severity, fix='manual')" in output


def test_custom_check_without_docstring_is_rejected(pytester: pytest.Pytester) -> None:
    output = collect_errors(
        pytester,
        test_doc="""
import pytest

@pytest.mark.requirement("CUSTOM-DOC-001", severity="low")
def test_doc():
    pass
""",
    )
    assert "has no docstring" in output


def results_of(pytester: pytest.Pytester, checks: str) -> dict[str, dict[str, object]]:
    pytester.makepyfile(test_checks=checks)
    result = pytester.runpytest("--cba-run", "--cba-json=results.json", "-p", "no:cacheprovider")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stdout.str()
    document = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))
    return {record["id"]: record for record in document["requirements"]}


def test_a_catalogue_check_needs_only_the_id(pytester: pytest.Pytester) -> None:
    records = results_of(
        pytester,
        """
import pytest

@pytest.mark.requirement("CBA-APP-001")
def test_app():
    assert False, "no app"
""",
    )
    entry = catalogue.CATALOGUE["CBA-APP-001"]
    record = records["CBA-APP-001"]
    assert (record["severity"], record["fix"], record["title"]) == (entry.severity, entry.fix, entry.title)
    assert record["link"] == entry.link and record["remediation"] == entry.remediation


def test_a_catalogue_check_may_repeat_what_the_catalogue_says(pytester: pytest.Pytester) -> None:
    records = results_of(
        pytester,
        '''
import pytest

@pytest.mark.requirement("CBA-APP-001", severity="critical", fix="create_app")
def test_app():
    """The app registration exists"""
''',
    )
    assert records["CBA-APP-001"]["outcome"] == "passed"


def test_a_custom_check_must_give_its_severity(pytester: pytest.Pytester) -> None:
    output = collect_errors(
        pytester,
        test_custom='''
import pytest

@pytest.mark.requirement("CUSTOM-NOSEV-001")
def test_custom():
    """A custom check"""
''',
    )
    assert "a check outside the catalogue must give severity= (one of: critical, high" in output


def test_configured_cert_facts_is_a_plugin_fixture(pytester: pytest.Pytester) -> None:
    # A custom link-3 check gets the same skip-versus-fail policy as the shipped ones: None, not a skip.
    records = results_of(
        pytester,
        '''
import pytest

@pytest.mark.requirement("CUSTOM-CERT-001", severity="low")
def test_custom(configured_cert_facts):
    """A custom check that needs the configured certificate"""
    assert configured_cert_facts is not None, "no certificate is configured"
''',
    )
    assert records["CUSTOM-CERT-001"]["outcome"] == "failed"
    assert records["CUSTOM-CERT-001"]["message"] == "no certificate is configured"
