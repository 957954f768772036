"""Sandbox tenant: a local Entra ID, Microsoft Graph and Exchange admin API over loopback HTTPS."""

from __future__ import annotations

from cbacheck.sandbox.scenario import Identity, Scenario, scenario_names
from cbacheck.sandbox.server import Sandbox, SandboxInfo, SandboxStats
from cbacheck.sandbox.state import SandboxError, SandboxStateError

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
