"""Fixtures for the sandbox tests: shared running sandboxes and authenticated clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sandboxkit import GRAPH_SCOPE, Client, token

from cbacheck.sandbox import Sandbox


@pytest.fixture(scope="session")
def healthy() -> Iterator[Sandbox]:
    """A healthy tenant shared by read-only tests."""
    with Sandbox("healthy") as sb:
        yield sb


@pytest.fixture(scope="session")
def auditor_token(healthy: Sandbox) -> str:
    return token(healthy, "auditor", GRAPH_SCOPE)


@pytest.fixture(scope="session")
def auditor(healthy: Sandbox, auditor_token: str) -> Client:
    return Client(healthy, auditor_token)


@pytest.fixture(scope="session")
def exchange(healthy: Sandbox) -> Client:
    return Client(healthy, token(healthy))


@pytest.fixture
def fresh() -> Iterator[Sandbox]:
    """A healthy tenant for tests that write."""
    with Sandbox("healthy") as sb:
        yield sb
