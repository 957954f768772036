"""Plugin tests run pytest inside pytest (pytester) with a clean CBACHECK_* environment."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # pytest_plugins is only allowed in the rootdir's conftest; loading pytester here keeps these tests
    # self-contained. pytest_configure runs for conftests registered after configuration, too.
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")


@pytest.fixture(autouse=True)
def no_cbacheck_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each run sees only the CBACHECK_* variables its test sets."""
    for name in list(os.environ):
        if name.startswith("CBACHECK_"):
            monkeypatch.delenv(name)
