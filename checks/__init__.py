"""Requirement checks shipped with cbacheck (one pytest test per requirement)."""
