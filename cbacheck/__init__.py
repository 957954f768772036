"""cbacheck: prove, fix and evidence an Exchange Online app-only CBA setup."""

from __future__ import annotations

__version__ = "0.1.0"
