"""Sandbox tenant: a local Entra ID, Microsoft Graph and Exchange admin API over loopback HTTPS."""

from __future__ import annotations

from cbacheck.sandbox.app import SandboxStats
from cbacheck.sandbox.faults import SandboxError, SandboxStateError
from cbacheck.sandbox.scenario import Identity, Scenario, scenario_names
from cbacheck.sandbox.server import Sandbox, SandboxInfo

__all__ = [
    "Identity",
    "Sandbox",
    "SandboxError",
    "SandboxInfo",
    "SandboxStateError",
    "SandboxStats",
    "Scenario",
    "scenario_names",
]
