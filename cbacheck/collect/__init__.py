"""The only package that talks to Entra ID, Microsoft Graph and Exchange Online to collect tenant facts."""

from cbacheck.collect.fetch import FACT_NAMES, collect, collect_in_background

__all__ = ["FACT_NAMES", "collect", "collect_in_background"]
