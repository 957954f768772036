"""Per-request context and JSON responses shared by the sandbox's endpoints."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from cbacheck.sandbox.values import graph_time, utcnow


@dataclass(frozen=True)
class Call:
    """Ids and time of one HTTP request; every response carries them in headers and errors."""

    request_id: str
    client_request_id: str
    date: str
    base_url: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_request(cls, request: Request) -> Call:
        request_id = str(uuid.uuid4())
        client_id = request.headers.get("client-request-id") or request_id
        return cls(
            request_id=request_id,
            client_request_id=client_id,
            date=graph_time(utcnow()),
            base_url=request.host_url.rstrip("/"),
        )


def json_response(
    body: Any,
    status: int = 200,
    *,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json; charset=utf-8",
) -> Response:
    """A JSON response (compact, UTF-8) with the given status and extra headers."""
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
    response = Response(payload, status=status, content_type=content_type if payload else None)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
