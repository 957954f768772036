"""A test after an in-process pytester run sees the same modules as when it runs alone (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

# The first test imports the product's HTTP stack only inside a pytester run (as `cbacheck run` does
# in-process); the second then uses requests as any later sandbox test does. With `http` kept in the
# snapshot and `http.cookiejar` dropped, requests' `from http import cookiejar` took the stale attribute
# while `from http.cookiejar import CookieJar` loaded a new copy: "You can only merge into CookieJar".
TWO_TESTS = '''
import http.server  # collected first, as tests importing the sandbox do: the `http` package stays loaded


def test_an_in_process_run_imports_the_collectors_first(pytester):
    pytester.makepyfile("def test_imports():\\n    from cbacheck.collect import fetch, tokens\\n")
    assert pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly").ret == 0


def test_a_later_session_still_prepares_requests():
    import requests  # here, not at collection: the first import happens inside the run above

    session = requests.Session()
    session.cookies.set("probe", "1")
    prepared = session.prepare_request(requests.Request("GET", "https://127.0.0.1/"))
    assert prepared.headers["Cookie"] == "probe=1"
'''


def test_modules_first_imported_inside_a_pytester_run_do_not_break_the_next_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SHARED_CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(test_two=TWO_TESTS)
    # A fresh interpreter: this session has long imported everything, which would hide the leak.
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
