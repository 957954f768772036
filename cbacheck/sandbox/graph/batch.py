"""Graph JSON batching in the sandbox: up to 20 requests, dependsOn, 424 for dependents of a failure.

https://learn.microsoft.com/graph/json-batching
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, urlsplit

from werkzeug.datastructures import MultiDict

from cbacheck.sandbox.graph.errors import GraphFault
from cbacheck.sandbox.graph.shaping import GraphRequest, GraphResult
from cbacheck.sandbox.values import JsonObject

if TYPE_CHECKING:
    from cbacheck.sandbox.graph.service import GraphService

MAX_BATCH: Final = 20


def run(service: GraphService, request: GraphRequest) -> GraphResult:
    """Answer a $batch request: each item through ``service.handle``, in dependsOn order."""
    items = _items(request.json())
    by_id = {item["id"].lower(): item for item in items}
    results: dict[str, GraphResult] = {}
    visiting: set[str] = set()

    def answer(item: JsonObject) -> GraphResult:
        key = item["id"].lower()
        if key in results:
            return results[key]
        if key in visiting:
            raise GraphFault("batch_cycle")
        visiting.add(key)
        failed = [d for d in item.get("dependsOn", []) if answer(by_id[d.lower()]).status >= 400]
        if failed:
            result = GraphResult.error(GraphFault("failed_dependency", id=failed[0]), request.call)
        else:
            result = _item(service, item, request)
        results[key] = result
        return result

    responses = []
    for item in items:
        result = answer(item)
        entry: JsonObject = {"id": item["id"], "status": result.status}
        headers = dict(result.headers)
        if result.body is not None:
            headers.setdefault("Content-Type", "application/json")
            entry["body"] = result.body
        entry["headers"] = headers
        responses.append(entry)
    return GraphResult(200, {"responses": responses})


def _items(doc: JsonObject) -> list[JsonObject]:
    """The batch's requests, each with a unique id, method and url, headers and known dependsOn ids."""
    items = doc.get("requests")
    if not isinstance(items, list) or not items:
        raise GraphFault("batch_requests")
    if len(items) > MAX_BATCH:
        raise GraphFault("batch_too_many", count=len(items), limit=MAX_BATCH)
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise GraphFault("batch_item_id")
        if not isinstance(item.get("method"), str) or not isinstance(item.get("url"), str):
            raise GraphFault("batch_item_fields", id=item["id"])
        if not isinstance(item.get("headers", {}), dict):
            raise GraphFault("batch_item_headers", id=item["id"])
        if item["id"].lower() in seen:
            raise GraphFault("batch_duplicate_id", id=item["id"])
        seen.add(item["id"].lower())
    for item in items:
        deps = item.get("dependsOn", [])
        if not isinstance(deps, list) or not all(isinstance(d, str) and d.lower() in seen for d in deps):
            raise GraphFault("batch_depends_on", id=item["id"])
    return items


def _item(service: GraphService, item: JsonObject, outer: GraphRequest) -> GraphResult:
    service.count_batch_item()
    url = item["url"]
    if urlsplit(url).scheme:
        return GraphResult.error(GraphFault("batch_absolute_url"), outer.call)
    url = url.lstrip("/")
    if url.lower().startswith("v1.0/"):
        url = url[len("v1.0/") :]
    path, _, query_text = url.partition("?")
    query: MultiDict[str, str] = MultiDict(parse_qsl(query_text, keep_blank_values=True))
    headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
    auth = outer.headers.get("Authorization") or outer.headers.get("authorization")
    if auth:
        headers["Authorization"] = auth
    body_value = item.get("body")
    if body_value is None:
        body = b""
    elif not any(k.lower() == "content-type" for k in headers):
        return GraphResult.error(GraphFault("batch_content_type"), outer.call)
    elif isinstance(body_value, str):
        try:
            body = base64.b64decode(body_value, validate=True)
        except (binascii.Error, ValueError):  # ValueError: not ASCII, so not base64 either
            body = body_value.encode("utf-8", "surrogatepass")
    else:
        body = json.dumps(body_value).encode("utf-8")
    return service.handle(item["method"].upper(), f"/v1.0/{path}", query, headers, body, outer.call, in_batch=True)
