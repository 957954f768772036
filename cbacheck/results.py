"""The documented path of the results validator (docs/reports.md); the document itself is in cbacheck.report."""

from cbacheck.report.document import schema, validate

__all__ = ["schema", "validate"]
