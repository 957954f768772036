"""Every Entra ID error the sandbox's login endpoints answer: one AADSTS table, and Microsoft's body.

Codes and texts: https://learn.microsoft.com/entra/identity-platform/reference-error-codes. Texts are
Microsoft's where that page or a recorded response quotes them; entries marked UNCONFIRMED use the
documented code with wording chosen here (docs/sandbox.md lists them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from werkzeug.wrappers import Response

from cbacheck.sandbox.response import Call, json_response
from cbacheck.sandbox.state import TenantState

MULTI_TENANT_ALIASES: Final = frozenset({"common", "organizations", "consumers"})
_TENANT_SHAPE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
_CERT_DOCS: Final = "https://learn.microsoft.com/entra/identity-platform/certificate-credentials"
NO_CACHE: Final = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


@dataclass(frozen=True)
class Aadsts:
    """One Entra error: AADSTS code, OAuth ``error`` value, HTTP status and message template.

    ``wrapped_in`` is an outer (code, text) Entra puts before this one in a multi-code answer
    (``error_codes`` then lists both, the outer one first).
    """

    code: int
    error: str
    status: int
    text: str
    wrapped_in: tuple[int, str] | None = None

    @property
    def codes(self) -> list[int]:
        return [self.wrapped_in[0], self.code] if self.wrapped_in else [self.code]


AADSTS: Final[dict[str, Aadsts]] = {
    "tenant_not_found": Aadsts(
        90002,
        "invalid_request",
        400,
        "Tenant '{tenant}' not found. This may happen if there are no active subscriptions for "
        "the tenant. Check to make sure you have the correct tenant ID. Check with your "
        "subscription administrator.",
    ),
    # UNCONFIRMED: wording from third-party tables.
    "tenant_malformed": Aadsts(
        900023,
        "invalid_request",
        400,
        "Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain.",
    ),
    # UNCONFIRMED: client credentials against /common or /organizations.
    "no_tenant": Aadsts(
        50059,
        "invalid_request",
        400,
        "No tenant-identifying information found in either the request or implied by any provided credentials.",
    ),
    # UNCONFIRMED wording.
    "missing_parameter": Aadsts(
        900144,
        "invalid_request",
        400,
        "The request body must contain the following parameter: '{parameter}'.",
    ),
    # UNCONFIRMED wording.
    "unsupported_grant": Aadsts(
        70003,
        "unsupported_grant_type",
        400,
        "The app requested an unsupported grant type '{grant_type}'.",
    ),
    "app_not_found": Aadsts(
        700016,
        "unauthorized_client",
        400,
        "Application with identifier '{app_id}' was not found in the directory '{directory}'. "
        "This can happen if the application has not been installed by the administrator of the "
        "tenant or consented to by any user in the tenant. You may have sent your "
        "authentication request to the wrong tenant.",
    ),
    # UNCONFIRMED (users' reports, not Microsoft's error table): an application without a service principal
    # in the tenant is refused with 7000229, while 700016 means no application at all.
    "sp_missing": Aadsts(
        7000229,
        "invalid_client",
        401,
        "The client application {app_id} is missing service principal in the tenant {tenant_id}. See "
        "instructions here: https://go.microsoft.com/fwlink/?linkid=2225119",
    ),
    "client_secret": Aadsts(
        7000215,
        "invalid_client",
        401,
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app '{app_id}'.",
    ),
    # UNCONFIRMED: the `error` value.
    "no_assertion": Aadsts(
        7000218,
        "invalid_client",
        401,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ),
    # UNCONFIRMED wording: the doc names the reasons (format, audience, issuer, time range).
    "invalid_jwt": Aadsts(50027, "invalid_client", 401, "JWT token is invalid or malformed. {reason}"),
    "subject_mismatch": Aadsts(
        50048,
        "invalid_client",
        401,
        "Subject mismatches Issuer claim in the client assertion. Contact the tenant admin.",
    ),
    # UNCONFIRMED wording.
    "issuer_mismatch": Aadsts(
        700021,
        "invalid_client",
        401,
        "Client assertion application identifier doesn't match 'client_id' parameter. Review "
        f"the documentation at {_CERT_DOCS} .",
    ),
    "time_range": Aadsts(
        700024,
        "invalid_client",
        401,
        "Client assertion is not within its valid time range. Current time: {now}, assertion "
        "valid from {nbf}, expiry time of assertion {exp}. Review the documentation at "
        f"{_CERT_DOCS} .",
    ),
    "key_not_found": Aadsts(
        700027,
        "invalid_client",
        401,
        "The certificate with identifier used to sign the client assertion is not registered on "
        "application. [Reason - The key was not found., Thumbprint of key used by client: "
        "'{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph "
        "to see configured keys for app Id '{app_id}'. Review the documentation at "
        "https://docs.microsoft.com/en-us/graph/deployments if you are not using the Public "
        "Cloud.]",
    ),
    "key_expired": Aadsts(
        700027,
        "invalid_client",
        401,
        "Client assertion contains an invalid signature. [Reason - The key used is expired., "
        "Thumbprint of key used by client: '{thumbprint}', Found key 'Start={start}, End={end}']",
    ),
    # UNCONFIRMED wording (same family as key_expired).
    "key_not_yet_valid": Aadsts(
        700027,
        "invalid_client",
        401,
        "Client assertion contains an invalid signature. [Reason - The key is not yet valid., "
        "Thumbprint of key used by client: '{thumbprint}', Found key 'Start={start}, End={end}']",
    ),
    # The doc text, with the bracketed detail Entra adds (detail wording UNCONFIRMED).
    "bad_signature": Aadsts(
        700027,
        "invalid_client",
        401,
        "Client assertion failed signature validation. [Reason - The provided signature value "
        "did not match the expected signature value., Thumbprint of key used by client: "
        "'{thumbprint}', Found key 'Start={start}, End={end}']",
    ),
    "no_thumbprint": Aadsts(700027, "invalid_client", 401, "Client assertion failed signature validation."),
    # 50032 WeakRsaKey is Microsoft's code; the only real answer users report wraps it in 70002
    # ("error_codes":[70002,50032]): that form is UNCONFIRMED for today's Entra.
    "small_key": Aadsts(
        50032,
        "invalid_client",
        401,
        "RSA key size {size} is less than the minimum required 2048 bits.",
        wrapped_in=(70002, "Error validating credentials."),
    ),
    # UNCONFIRMED wording; the doc says "The application is disabled."
    "app_disabled": Aadsts(7000112, "unauthorized_client", 400, "Application '{app_id}'({name}) is disabled."),
    "scope_missing": Aadsts(
        70011, "invalid_scope", 400, "The provided request must include a 'scope' input parameter."
    ),
    "scope_invalid": Aadsts(
        70011,
        "invalid_scope",
        400,
        "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
    ),
    "resource_not_found": Aadsts(
        500011,
        "invalid_resource",
        400,
        "The resource principal named {resource} was not found in the tenant named {directory}. "
        "This can happen if the application has not been installed by the administrator of the "
        "tenant or consented to by any user in the tenant. You might have sent your "
        "authentication request to the wrong tenant.",
    ),
}


class AadstsError(Exception):
    """A token request fails with an AADSTS error; ``response`` renders Microsoft's body."""

    def __init__(self, key: str, **values: str) -> None:
        self.spec = AADSTS[key]
        self.key = key
        self.message = self.spec.text.format(**values)
        super().__init__(f"AADSTS{self.spec.code}: {self.message}")

    def response(self, call: Call) -> Response:
        now = datetime.now(UTC)
        timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        trace_id = call.request_id
        correlation_id = call.client_request_id
        outer = f"AADSTS{self.spec.wrapped_in[0]}: {self.spec.wrapped_in[1]} " if self.spec.wrapped_in else ""
        codes = self.spec.codes
        body = {
            "error": self.spec.error,
            "error_description": (
                f"{outer}AADSTS{self.spec.code}: {self.message}\r\nTrace ID: {trace_id}\r\n"
                f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
            ),
            "error_codes": codes,
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={codes[0]}",
        }
        return json_response(body, self.spec.status, headers=NO_CACHE)


def check_tenant(state: TenantState, tenant: str, *, allow_alias: bool) -> None:
    """The tenant path segment must name this tenant (by id or domain), or be an alias where allowed."""
    if tenant.lower() in MULTI_TENANT_ALIASES:
        if allow_alias:
            return
        raise AadstsError("no_tenant")
    if not _TENANT_SHAPE.match(tenant):
        raise AadstsError("tenant_malformed", tenant=tenant)
    if not state.resolve_tenant(tenant):
        raise AadstsError("tenant_not_found", tenant=tenant)
