"""The Exchange Online Admin API (preview): the app's token for the profile's resource and its read-only probe.

Microsoft documents the API as POST-only endpoints `<BaseUrl>/adminapi/v2.0/<TenantID>/<EndpointName>` whose body
is a CmdletInput envelope, sent with `Authorization: Bearer`, `Content-Type: application/json` and an
`X-AnchorMailbox` routing hint (https://learn.microsoft.com/exchange/reference/admin-api-get-started); the
OrganizationConfig endpoint takes Get-OrganizationConfig without parameters and answers one object
(https://learn.microsoft.com/exchange/reference/admin-api-endpoints-organization-config). The token is asked for
`https://outlook.office365.com/.default` (https://learn.microsoft.com/exchange/reference/admin-api-authentication).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import requests

from cbacheck import certs, profiles, wellknown
from cbacheck.collect.exchange import (
    SUMMARY_PROPERTIES,
    is_read_only_cmdlet,
    post_within,
    probe_from_answer,
    summarise,
)
from cbacheck.collect.tokens import acquire_app_token
from cbacheck.config import Settings
from cbacheck.errors import CertificateError, ConfigError
from cbacheck.facts import ExchangeProbe, Source, TokenAttempt, Unavailable


def request_headers(access_token: str, tenant_id: str) -> dict[str, str]:
    """The documented headers. UNCONFIRMED (docs/sandbox.md): the app-only routing hint's value, the system
    mailbox of the tenant, as the Exchange probe and third-party Admin API clients send it."""
    return {
        "Authorization": f"Bearer {access_token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-AnchorMailbox": f"APP:{wellknown.EXCHANGE_ANCHOR_MAILBOX}@{tenant_id}",
    }


def request_body(cmdlet: str) -> dict[str, Any]:
    """The CmdletInput envelope; the OrganizationConfig endpoint takes no parameters."""
    return {"CmdletInput": {"CmdletName": cmdlet}}


def collect_admin_api(
    settings: Settings,
    session: requests.Session,
    material: certs.SigningMaterial | CertificateError,
    profile: profiles.Profile,
) -> tuple[TokenAttempt | Unavailable, ExchangeProbe | None | Unavailable]:
    """The app's token for the profile's resource and, with it, the profile's read-only probe (the bearer is
    dropped after the probe). A profile whose resource is not known in this cloud is not asked for here."""
    resource = profiles.token_resource_in(profile, settings.cloud)
    token, access_token = acquire_app_token(settings, session, material, resource)
    probe = probe_with_token(settings, session, profile, token, access_token)
    del access_token  # the token is not kept beyond the probe
    return token, probe


def shares_exchange_token(settings: Settings, profile: profiles.Profile) -> bool:
    """The profile's token is asked for the very scope of the default chain's Exchange token (the Admin API's
    resource is https://outlook.office365.com, https://learn.microsoft.com/exchange/reference/admin-api-authentication),
    so that one attempt serves both."""
    return profiles.token_resource_in(profile, settings.cloud) == settings.cloud_endpoints.exchange_resource


def as_profile_token(
    token: TokenAttempt | Unavailable, profile: profiles.Profile, cloud: str
) -> TokenAttempt | Unavailable:
    """The default chain's attempt as this profile's evidence: an Unavailable names the profile's resource, as
    `acquire_app_token` does when asked for it."""
    if isinstance(token, TokenAttempt):
        return token
    return dataclasses.replace(token, what=f"the app's token for {profiles.token_resource_in(profile, cloud)}")


def probe_with_token(
    settings: Settings,
    session: requests.Session,
    profile: profiles.Profile,
    token: TokenAttempt | Unavailable,
    access_token: str | None,
) -> ExchangeProbe | None | Unavailable:
    """The profile's read-only probe with the app's token (None: the app got no token to try it with)."""
    if isinstance(token, Unavailable):
        return Unavailable(f"the {profile.name} probe", f"no token to call it with: {token.reason}")
    if not (token.acquired and access_token):
        return None
    # The documented URL names the TenantID (GUID): the token's own tid, else the configured tenant.
    tenant_id = str(token.claims.get("tid") or settings.tenant or "")
    url = profiles.probe_url_in(profile, settings.cloud_endpoints, tenant_id)
    return probe_admin_api(session, access_token, url, tenant_id, profile)


def probe_admin_api(
    session: requests.Session, access_token: str, url: str, tenant_id: str, profile: profiles.Profile
) -> ExchangeProbe | Unavailable:
    """POST the profile's read-only cmdlet; follow one redirect only within the profile's service domains."""
    cmdlet = profile.probe_cmdlet
    if not is_read_only_cmdlet(cmdlet):
        raise ConfigError([f"the probe cmdlet {cmdlet!r} is not a read-only cmdlet; cbacheck sends only Get-*"])
    body, headers = request_body(cmdlet), request_headers(access_token, tenant_id)
    posted = post_within(
        session,
        url,
        body,
        headers,
        profile.service_domains,
        access_token,
        f"the Admin API answer to {cmdlet}",
        f"outside the service domains of profile {profile.name} ({', '.join(profile.service_domains)}), which "
        "cbacheck does not follow with the token",
    )
    if isinstance(posted, Unavailable):
        return posted
    url, response, source = posted
    return admin_api_probe_from_answer(cmdlet, url, response, source, access_token)


def summarise_object(body: dict[str, Any]) -> dict[str, Any]:
    """A few properties of one answered object, or of the first of a `value` list (UNCONFIRMED which one)."""
    if isinstance(body.get("value"), list):
        return summarise(body)
    summary: dict[str, Any] = {"objects": 1}
    for name in SUMMARY_PROPERTIES:
        value = body.get(name)
        if isinstance(value, str | int | float | bool):
            summary[name] = value
    return summary


def admin_api_probe_from_answer(
    cmdlet: str, url: str, response: requests.Response, source: Source, access_token: str
) -> ExchangeProbe:
    """The cmdlet ran (2xx with a JSON object that is no error) or the error the Admin API gave."""
    return probe_from_answer(
        cmdlet,
        url,
        response,
        source,
        access_token,
        summary_of=_object_summary,
        unrecognised="the answer is not a JSON object",
    )


def _object_summary(body: Any) -> dict[str, Any] | None:
    return summarise_object(body) if isinstance(body, dict) and "error" not in body else None
