"""Entra ID of the sandbox: discovery and JWKS, the token endpoint, assertion checks and the AADSTS table."""

from __future__ import annotations

from cbacheck.sandbox.entra.discovery import DiscoveryService
from cbacheck.sandbox.entra.errors import AADSTS, AadstsError
from cbacheck.sandbox.entra.signer import AccessTokenError, TokenSigner
from cbacheck.sandbox.entra.token import TokenService

__all__ = ["AADSTS", "AadstsError", "AccessTokenError", "DiscoveryService", "TokenService", "TokenSigner"]
