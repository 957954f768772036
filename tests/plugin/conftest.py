"""Plugin tests run pytest inside pytest (pytester) with a clean CBACHECK_* environment."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def no_cbacheck_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each run sees only the CBACHECK_* variables its test sets."""
    for name in list(os.environ):
        if name.startswith("CBACHECK_"):
            monkeypatch.delenv(name)
