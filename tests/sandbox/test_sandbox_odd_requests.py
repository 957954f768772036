"""Odd requests get the error Graph, Entra or Exchange would give (4xx), never a 500 or a traceback."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sandboxkit import GRAPH_SCOPE, Client, assertion, token, token_form

from cbacheck.sandbox import Sandbox

DEEP = 100_000
Send = Callable[[Client], requests.Response]


def skiptoken(raw: str) -> str:
    """A skip token shaped like the sandbox's own, carrying raw JSON."""
    return "RFNwdAoAAQAAA" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def post(path: str, body: Any, **kwargs: Any) -> Send:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = kwargs.pop("headers", {"Content-Type": "application/json"})
    return lambda c: c.graph("POST", path, data=data, headers=headers, **kwargs)


def get(path: str, **params: str) -> Send:
    return lambda c: c.graph("GET", path, params=params)


def batch(*items: Any) -> Send:
    return post("/$batch", {"requests": list(items)})


GRAPH_ODDITIES: dict[str, Send] = {
    "body not JSON": post("/applications", b"{"),
    "body not UTF-8": post("/applications", b"\xff\xfe{}"),
    "body an array": post("/applications", []),
    "body a string": post("/applications", "x"),
    "body nested 100k deep": post("/applications", b"[" * DEEP + b"]" * DEEP),
    "no content-type": post("/applications", {"displayName": "no type"}, headers={}),
    "displayName a number": post("/applications", {"displayName": 5}),
    "identifierUris a number": post("/applications", {"displayName": "x", "identifierUris": 5}),
    "tags a string": post("/applications", {"displayName": "x", "tags": "a"}),
    "keyCredentials a string": post("/applications", {"displayName": "x", "keyCredentials": "abc"}),
    "key a number": post("/applications", {"displayName": "x", "keyCredentials": [{"key": 5}]}),
    "api a list": post("/applications", {"displayName": "x", "api": []}),
    "NaN in the body": post("/applications", b'{"displayName": "x", "notes": NaN}'),
    "@odata only": post("/applications", {"@odata.type": "#microsoft.graph.application"}),
    "$top huge": get("/applications", **{"$top": "9" * 40}),
    "$top negative": get("/applications", **{"$top": "-1"}),
    "$top non-ASCII digits": get("/applications", **{"$top": "١٠"}),
    "$select unknown": get("/applications", **{"$select": "nosuch"}),
    "$select empty": get("/applications", **{"$select": ""}),
    "$select commas": get("/applications", **{"$select": ",,id,,"}),
    "$filter nested parentheses": get("/applications", **{"$filter": "(" * 5000 + "id eq 'x'" + ")" * 5000}),
    "$filter long": get("/applications", **{"$filter": " or ".join(["appId eq 'x'"] * 3000)}),
    "$filter unbalanced": get("/applications", **{"$filter": "appId eq 'x' and ("}),
    "$filter non-ASCII": get("/applications", **{"$filter": "displayName eq 'ü' or ü eq 1"}),
    "$skiptoken Infinity": get("/applications", **{"$skiptoken": skiptoken('{"o": Infinity}')}),
    "$skiptoken 1e400": get("/applications", **{"$skiptoken": skiptoken('{"o": 1e400}')}),
    "$skiptoken a list": get("/applications", **{"$skiptoken": skiptoken("[1]")}),
    "$expand unknown": get("/applications", **{"$expand": "owners"}),
    "$expand empty on roles": get("/roleManagement/directory/roleAssignments", **{"$expand": ""}),
    "$count odd": get("/applications", **{"$count": "maybe"}),
    "unknown option": get("/applications", **{"$apply": "x"}),
    "non-ASCII id": get("/applications/ü"),
    "non-ASCII appId": get("/applications(appId='ü')"),
    "percent-encoded bytes in id": lambda c: c.graph("GET", "/servicePrincipals/%FF%FE"),
    "bad percent escape in query": lambda c: c.graph("GET", "/applications?%ZZ=1&$filter=%ff"),
    "unknown route": get("/nosuch/ü"),
    "wrong method": lambda c: c.graph("PUT", "/applications"),
    "role assignment with appScopeId a number": post(
        "/roleManagement/directory/roleAssignments",
        {"principalId": "x", "roleDefinitionId": "y", "directoryScopeId": "/", "appScopeId": 5},
    ),
    "role assignment with scope a number": post(
        "/roleManagement/directory/roleAssignments",
        {"principalId": "x", "roleDefinitionId": "y", "directoryScopeId": 5},
    ),
    "batch requests not a list": post("/$batch", {"requests": "x"}),
    "batch body not an object": post("/$batch", []),
    "batch item headers a string": batch({"id": "1", "method": "GET", "url": "/applications", "headers": "x"}),
    "batch item headers a list": batch({"id": "1", "method": "GET", "url": "/applications", "headers": [1]}),
    "batch item body non-ASCII text": batch(
        {"id": "1", "method": "POST", "url": "/applications", "body": "ü", "headers": {"Content-Type": "text/plain"}}
    ),
    "batch item body lone surrogate": batch(
        {"id": "1", "method": "POST", "url": "/applications", "body": "\ud800", "headers": {"content-type": "x"}}
    ),
    "batch item url non-ASCII": batch({"id": "1", "method": "GET", "url": "/applications/ü?$top=ü"}),
    "batch item url lone surrogate": batch({"id": "1", "method": "GET", "url": "/applications/\ud800"}),
    "batch item method odd": batch({"id": "1", "method": "GET\r\nX: y", "url": "/applications"}),
    "batch item id a number": batch({"id": 1, "method": "GET", "url": "/applications"}),
    "batch dependsOn itself": batch({"id": "1", "method": "GET", "url": "/applications", "dependsOn": ["1"]}),
    "batch dependsOn a string": batch({"id": "1", "method": "GET", "url": "/applications", "dependsOn": "1"}),
    "batch nested": batch({"id": "1", "method": "POST", "url": "/$batch", "body": {}, "headers": {"a": "b"}}),
}


@pytest.fixture(scope="module")
def odd() -> Any:
    with Sandbox("healthy") as sb:
        yield sb, Client(sb, token(sb, "admin", GRAPH_SCOPE))


@pytest.mark.parametrize("name", sorted(GRAPH_ODDITIES))
def test_odd_graph_requests_get_a_graph_error_not_a_500(
    name: str, odd: tuple[Sandbox, Client], caplog: pytest.LogCaptureFixture
) -> None:
    sb, client = odd
    with caplog.at_level(logging.ERROR, logger="cbacheck.sandbox"):
        resp = GRAPH_ODDITIES[name](client)
    assert resp.status_code < 500, (resp.status_code, resp.text[:300])
    assert not caplog.records, caplog.text
    if resp.status_code >= 400:
        assert set(resp.json()["error"]) >= {"code", "message", "innerError"}
    for item in resp.json().get("responses", []) if resp.status_code == 200 else []:
        assert item["status"] < 500, item


def test_written_values_of_the_wrong_type_are_refused_with_400(odd: tuple[Sandbox, Client]) -> None:
    _, client = odd
    for send in (
        GRAPH_ODDITIES["displayName a number"],
        GRAPH_ODDITIES["identifierUris a number"],
        GRAPH_ODDITIES["key a number"],
        GRAPH_ODDITIES["NaN in the body"],
    ):
        assert send(client).status_code == 400
    app = client.graph("POST", "/applications", json={"displayName": "odd times"}).json()
    ident = odd[0].identities["under_test"]
    der = x509.load_pem_x509_certificate(ident.cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    key = {"key": base64.b64encode(der).decode(), "type": "AsymmetricX509Cert", "usage": "Verify"}
    for bad in ({"endDateTime": "garbage"}, {"startDateTime": 5}):
        resp = client.graph("PATCH", f"/applications/{app['id']}", json={"keyCredentials": [{**key, **bad}]})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["code"] == "Request_BadRequest"


@pytest.mark.parametrize("claim", ["nbf", "exp"])
def test_assertion_times_out_of_range_get_an_aadsts_error(odd: tuple[Sandbox, Client], claim: str) -> None:
    sb, client = odd
    ident = sb.identities["under_test"]
    value = 1e308 if claim == "nbf" else -1e308
    form = token_form(ident, assertion(sb, ident, **{claim: value}))
    resp = client.raw("POST", f"/{sb.tenant}/oauth2/v2.0/token", data=form)
    assert resp.status_code in (400, 401), resp.text
    assert resp.json()["error_codes"] == [700024]


def test_exchange_bodies_that_are_odd_get_400(odd: tuple[Sandbox, Client]) -> None:
    sb, _ = odd
    exchange = Client(sb, token(sb))
    url = f"{sb.info.exchange_url}/adminapi/beta/{sb.organization}/InvokeCommand"
    for body in (b"[" * DEEP + b"]" * DEEP, b"\xff", b"{}", b'{"CmdletInput": {"CmdletName": 5}}'):
        resp = exchange.session.post(url, data=body, headers=exchange.headers(), timeout=30)
        assert resp.status_code == 400, (body[:20], resp.status_code, resp.text[:200])
