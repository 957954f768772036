"""The only package that talks to Entra ID, Microsoft Graph and Exchange Online to collect tenant facts."""

from cbacheck.collect.fetch import collect, collect_in_background
from cbacheck.facts import FACT_NAMES

__all__ = ["FACT_NAMES", "collect", "collect_in_background"]
