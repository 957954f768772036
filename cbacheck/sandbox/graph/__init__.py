"""Microsoft Graph v1.0 of the sandbox: routes, permissions, OData shaping, $batch and the error table."""

from __future__ import annotations

from cbacheck.sandbox.graph.errors import GRAPH_ERRORS, GraphFault, error_body
from cbacheck.sandbox.graph.service import GraphService
from cbacheck.sandbox.graph.shaping import GraphResult

__all__ = ["GRAPH_ERRORS", "GraphFault", "GraphResult", "GraphService", "error_body"]
