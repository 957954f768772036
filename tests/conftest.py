"""Shared test set-up: pytester for the plugin tests, and a clean CBACHECK_* environment for every test."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def no_cbacheck_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the CBACHECK_* variables it sets, whatever the developer's shell exports."""
    for name in list(os.environ):
        if name.startswith("CBACHECK_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def own_cache_directory(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test starts without discovery documents another test (or the developer's runs) left behind."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
