"""The requirement marker is validated at collection: wrong markers are collection errors with clear text."""

from __future__ import annotations

import pytest


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
