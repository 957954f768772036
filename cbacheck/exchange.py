"""The Exchange Online probe: one read-only cmdlet through the admin API, as the V3 module sends it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from cbacheck import wellknown
from cbacheck.config import Settings
from cbacheck.facts import ExchangeProbe, Source, Unavailable
from cbacheck.transport import stats_of

# Properties worth showing from what the cmdlet returned; everything else stays out of the report.
SUMMARY_PROPERTIES = ("Name", "Identity", "DisplayName", "Guid", "OrganizationId", "IsDehydrated")
EXCERPT_CHARS = 200
TOKEN_PLACEHOLDER = "[token removed]"


def invoke_command_url(exchange_url: str, tenant_for_url: str) -> str:
    return f"{exchange_url}/adminapi/beta/{quote(tenant_for_url, safe='.-')}/InvokeCommand"


def request_headers(access_token: str, anchor_tenant: str) -> dict[str, str]:
    """The headers of FACTS.md §5 (what CIPP and the V3 module send)."""
    return {
        "Authorization": f"Bearer {access_token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-AnchorMailbox": f"APP:{wellknown.EXCHANGE_ANCHOR_MAILBOX}@{anchor_tenant}",
        "X-ResponseFormat": "json",
        "X-ClientApplication": "ExoManagementModule",
        "Prefer": "odata.maxpagesize=1000",
    }


def scrub(text: str, access_token: str) -> str:
    """Never let the bearer token through, even if a server echoes it back."""
    if access_token and access_token in text:
        text = text.replace(access_token, TOKEN_PLACEHOLDER)
    return text


def error_text(body: Any) -> tuple[str, str]:
    """(code, message) from the admin API's error JSON: details[0], then internalException, then message."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code = str(error.get("code", ""))
    details = error.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict) and details[0].get("message"):
        return code, str(details[0]["message"])
    inner = error.get("innererror")
    if isinstance(inner, dict):
        internal = inner.get("internalException")
        if isinstance(internal, dict) and internal.get("message"):
            return code, str(internal["message"])
    return code, str(error.get("message", ""))


def summarise(body: Any) -> dict[str, Any]:
    values = body.get("value") if isinstance(body, dict) else None
    if not isinstance(values, list):
        return {}
    summary: dict[str, Any] = {"objects": len(values)}
    first = values[0] if values and isinstance(values[0], dict) else {}
    for name in SUMMARY_PROPERTIES:
        value = first.get(name)
        if isinstance(value, str | int | float | bool):
            summary[name] = value
    warnings = body.get("@adminapi.warnings")
    if isinstance(warnings, list) and warnings:
        summary["warnings"] = [str(w) for w in warnings[:5]]
    return summary


def probe_exchange(
    settings: Settings,
    session: requests.Session,
    access_token: str,
    tenant_for_url: str,
    *,
    anchor_tenant: str | None = None,
) -> ExchangeProbe | Unavailable:
    """Run `settings.exchange_cmdlet` through `POST {exchange_url}/adminapi/beta/{tenant}/InvokeCommand`.

    `anchor_tenant` is the tenant ID for X-AnchorMailbox (the token's `tid`; defaults to
    `tenant_for_url`). An answer is an ExchangeProbe (ok or not); no answer is Unavailable.
    The token is sent, never kept.
    """
    cmdlet = settings.exchange_cmdlet
    url = invoke_command_url(settings.cloud_endpoints.exchange_url, tenant_for_url)
    stats = stats_of(session)
    stats.exchange_requests += 1
    started = time.perf_counter()
    at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        response = session.post(
            url,
            json={"CmdletInput": {"CmdletName": cmdlet, "Parameters": {}}},
            headers=request_headers(access_token, anchor_tenant or tenant_for_url),
        )
    except requests.RequestException as err:
        return Unavailable(
            f"the Exchange Online answer to {cmdlet}",
            f"no answer from {url} ({type(err).__name__}); check exchange_url, the network path and ca_bundle",
            source=Source("POST", url, None, elapsed_ms=(time.perf_counter() - started) * 1000, at=at),
        )
    elapsed_ms = (time.perf_counter() - started) * 1000
    request_id = response.headers.get("request-id", "") or response.headers.get("x-ms-request-id", "")
    stats.sources.append(Source("POST", url, response.status_code, request_id=request_id, elapsed_ms=elapsed_ms, at=at))
    try:
        body: Any = response.json() if response.content else None
    except ValueError:
        return ExchangeProbe(
            cmdlet,
            url,
            response.status_code,
            ok=False,
            error_code="InvalidResponse",
            error_message=scrub(
                f"HTTP {response.status_code}, not JSON: {' '.join(response.text.split())[:EXCERPT_CHARS]!r}",
                access_token,
            ),
            request_id=request_id,
            elapsed_ms=elapsed_ms,
        )
    if 200 <= response.status_code < 300 and isinstance(body, dict) and isinstance(body.get("value"), list):
        return ExchangeProbe(
            cmdlet,
            url,
            response.status_code,
            ok=True,
            summary=summarise(body),
            request_id=request_id,
            elapsed_ms=elapsed_ms,
        )
    code, message = error_text(body)
    if not message:
        message = (
            f"HTTP {response.status_code} without an error message"
            if not 200 <= response.status_code < 300
            else "the answer has no 'value' list"
        )
    if response.status_code >= 500:
        message += " (Exchange Online server error; run again later)"
    return ExchangeProbe(
        cmdlet,
        url,
        response.status_code,
        ok=False,
        error_code=scrub(code or f"HTTP{response.status_code}", access_token),
        error_message=scrub(message, access_token),
        request_id=request_id,
        elapsed_ms=elapsed_ms,
    )
