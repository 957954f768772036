"""Shared test set-up: pytester for the plugin tests, and a clean CBACHECK_* environment for every test."""

from __future__ import annotations

import importlib
import os
import pkgutil

import azure.identity
import pytest

import cbacheck

pytest_plugins = ["pytester"]


def import_the_whole_product() -> None:
    """Load every cbacheck module (and the libraries they import lazily) before any pytester run.

    pytester restores sys.modules after each test, dropping what an in-process run imported first.
    A parent package kept in the snapshot keeps its attribute to the dropped child, so a later import
    mixes two copies: `http.cookiejar` imported by requests inside a pytester run left requests'
    `cookielib` and `RequestsCookieJar` on different CookieJar classes, and every later Session
    request raised "You can only merge into CookieJar" (msal: "Unable to get authority configuration").
    """
    for module in pkgutil.walk_packages(cbacheck.__path__, "cbacheck."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    assert azure.identity.CertificateCredential  # imported lazily by the auditor's azure-identity credentials


import_the_whole_product()


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
