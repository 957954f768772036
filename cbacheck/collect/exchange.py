"""The Exchange Online probe: one read-only cmdlet through the admin API, as the V3 module sends it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

import requests

from cbacheck import wellknown
from cbacheck.collect.transport import send, stats_of, trusted_target
from cbacheck.config import Settings
from cbacheck.errors import ConfigError
from cbacheck.facts import ExchangeProbe, Source, Unavailable

# Properties worth showing from what the cmdlet returned; everything else stays out of the report.
SUMMARY_PROPERTIES = ("Name", "Identity", "DisplayName", "Guid", "OrganizationId", "IsDehydrated")
EXCERPT_CHARS = 200
TOKEN_PLACEHOLDER = "[token removed]"
# The probe runs with the app's token, which usually holds Exchange Administrator: only cmdlets
# that change nothing may be sent. Verb-Noun, letters and digits only (no script, no second command).
CMDLET_NAME = re.compile(r"[A-Za-z]+-[A-Za-z0-9]+")
# Read-only cmdlets besides Get-*. Empty: add one only when its documentation shows it changes nothing
# (https://learn.microsoft.com/powershell/exchange/exchange-online-powershell).
READ_ONLY_CMDLETS: frozenset[str] = frozenset()


def is_read_only_cmdlet(name: str) -> bool:
    """Get-* or a name in READ_ONLY_CMDLETS; anything else might write with an administrator's token."""
    return bool(CMDLET_NAME.fullmatch(name)) and (
        name.lower().startswith("get-") or name.lower() in {c.lower() for c in READ_ONLY_CMDLETS}
    )


def require_read_only_cmdlet(settings: Settings) -> None:
    """ConfigError, before any request, when exchange_cmdlet is not known to be read-only."""
    cmdlet = settings.exchange_cmdlet
    if not is_read_only_cmdlet(cmdlet):
        raise ConfigError(
            [
                f"exchange_cmdlet = {cmdlet!r} ({settings.source('exchange_cmdlet')}) is not a read-only cmdlet: "
                "cbacheck sends only Get-* cmdlets (for example Get-OrganizationConfig) to Exchange Online"
            ]
        )


def invoke_command_url(exchange_url: str, tenant_for_url: str) -> str:
    return f"{exchange_url}/adminapi/beta/{quote(tenant_for_url, safe='.-')}/InvokeCommand"


def request_headers(access_token: str, anchor_tenant: str) -> dict[str, str]:
    """The headers the ExchangeOnlineManagement V3 module sends to its REST endpoint.

    Microsoft documents the module (https://learn.microsoft.com/powershell/exchange/exchange-online-powershell-v2),
    not its wire protocol; these are the headers the module is seen to send.
    """
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


@dataclass(frozen=True)
class ProbeTarget:
    """Where a probe goes and what it runs: another profile's endpoint and read-only cmdlet."""

    cmdlet: str
    url: str
    service_domains: tuple[str, ...] = ()


def probe_exchange(
    settings: Settings,
    session: requests.Session,
    access_token: str,
    tenant_for_url: str,
    *,
    anchor_tenant: str | None = None,
    target: ProbeTarget | None = None,
) -> ExchangeProbe | Unavailable:
    """Run `settings.exchange_cmdlet` through `POST {exchange_url}/adminapi/beta/{tenant}/InvokeCommand`.

    `anchor_tenant` is the tenant ID for X-AnchorMailbox (the token's `tid`; defaults to
    `tenant_for_url`). `target` sends another profile's cmdlet to its URL instead, following one redirect
    within its service domains. An answer is an ExchangeProbe (ok or not); no answer, or a redirect cbacheck
    does not follow, is Unavailable. The token is sent, never kept. A cmdlet that is not read-only
    raises ConfigError before anything is sent.
    """
    require_read_only_cmdlet(settings)
    if target is None:
        target = ProbeTarget(
            settings.exchange_cmdlet, invoke_command_url(settings.cloud_endpoints.exchange_url, tenant_for_url)
        )
    if not is_read_only_cmdlet(target.cmdlet):
        raise ConfigError([f"the probe cmdlet {target.cmdlet!r} is not a read-only cmdlet; cbacheck sends only Get-*"])
    cmdlet, url = target.cmdlet, target.url
    body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": {}}}
    headers = request_headers(access_token, anchor_tenant or tenant_for_url)
    posted = post_within(
        session,
        url,
        body,
        headers,
        target.service_domains,
        access_token,
        f"the Exchange Online answer to {cmdlet}",
        "which cbacheck does not follow (only the same origin over https); check exchange_url and any proxy "
        "between cbacheck and Exchange Online",
    )
    if isinstance(posted, Unavailable):
        return posted
    url, response, source = posted
    return probe_from_answer(cmdlet, url, response, source, access_token)


def post_within(
    session: requests.Session,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    service_domains: tuple[str, ...],
    access_token: str,
    what: str,
    not_followed: str,
) -> tuple[str, requests.Response, Source] | Unavailable:
    """POST a cmdlet envelope; follow one redirect only within the service domains (the token goes with it).

    The answer (where it came from, the response, its Source), or Unavailable when there was none or a redirect
    led elsewhere (`not_followed` says why that one was not followed; the token is scrubbed from the location).
    """
    stats_of(session).count("exchange_requests")
    sent = send(session, "POST", url, json=body, headers=headers)
    if sent.response is not None and sent.response.is_redirect and service_domains:
        followed = urljoin(url, sent.response.headers.get("location", ""))
        # A redirect keeps the token only within the profile's service domains (transport.trusted_target).
        if trusted_target(url, followed, service_domains):
            url = followed
            stats_of(session).count("exchange_requests")
            sent = send(session, "POST", url, json=body, headers=headers)
    if sent.response is None:
        failure = type(sent.failure).__name__
        return Unavailable(
            what,
            f"no answer from {url} ({failure}); check exchange_url, the network path and ca_bundle",
            source=sent.source,
        )
    if sent.response.is_redirect:
        location = scrub(sent.response.headers.get("location", ""), access_token)
        return Unavailable(what, f"{url} redirected to {location!r}, {not_followed}", source=sent.source)
    return url, sent.response, sent.source


def value_list_summary(body: Any) -> dict[str, Any] | None:
    """The summary of an answer that shows the cmdlet ran (a `value` list), else None."""
    return summarise(body) if isinstance(body, dict) and isinstance(body.get("value"), list) else None


def probe_from_answer(
    cmdlet: str,
    url: str,
    response: requests.Response,
    source: Source,
    access_token: str,
    *,
    summary_of: Callable[[Any], dict[str, Any] | None] = value_list_summary,
    unrecognised: str = "the answer has no 'value' list",
) -> ExchangeProbe:
    """What an answer says: the cmdlet ran (a 2xx body `summary_of` recognises) or the error it gave."""
    status = response.status_code
    common: dict[str, Any] = {"request_id": source.request_id, "elapsed_ms": source.elapsed_ms}
    try:
        body: Any = response.json() if response.content else None
    except ValueError:
        shown = " ".join(response.text.split())[:EXCERPT_CHARS]
        return ExchangeProbe(
            cmdlet,
            url,
            status,
            ok=False,
            error_code="InvalidResponse",
            error_message=scrub(f"HTTP {status}, not JSON: {shown!r}", access_token),
            **common,
        )
    summary = summary_of(body) if 200 <= status < 300 else None
    if summary is not None:
        return ExchangeProbe(cmdlet, url, status, ok=True, summary=summary, **common)
    code, message = error_text(body)
    if not message:
        message = unrecognised if 200 <= status < 300 else f"HTTP {status} without an error message"
    if status >= 500:
        message += " (Exchange Online server error; run again later)"
    return ExchangeProbe(
        cmdlet,
        url,
        status,
        ok=False,
        error_code=scrub(code or f"HTTP{status}", access_token),
        error_message=scrub(message, access_token),
        **common,
    )
