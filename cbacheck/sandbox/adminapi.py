"""Exchange Online Admin API (preview) of the sandbox: ``POST /adminapi/v2.0/{tenant}/{endpoint}``.

What Microsoft documents, modelled here: POST-only endpoints under `/adminapi/v2.0/<TenantID>/`, a CmdletInput
body naming the one cmdlet each endpoint supports ("Any other cmdlet in the body of this endpoint results in an
error"), the X-AnchorMailbox routing header (https://learn.microsoft.com/exchange/reference/admin-api-get-started,
https://learn.microsoft.com/exchange/reference/admin-api-endpoints-organization-config); a token for
https://outlook.office365.com carrying Exchange.ManageAsAppV2, authorised by Exchange RBAC role groups of the app's
service principal or an Entra role such as Exchange Administrator, and "Without the appropriate RBAC role
assignments, even valid tokens fail with the error: 403 Forbidden"
(https://learn.microsoft.com/exchange/reference/admin-api-authentication). Every body and every other status is
UNCONFIRMED (docs/sandbox.md, choice 32).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from werkzeug.wrappers import Request, Response

from cbacheck import wellknown
from cbacheck.sandbox.entra.signer import AccessTokenError, TokenSigner
from cbacheck.sandbox.exchange import EXCHANGE_AUDIENCES, ExchangeService
from cbacheck.sandbox.faults import TableFault
from cbacheck.sandbox.response import Call, json_response
from cbacheck.sandbox.state import TenantState
from cbacheck.sandbox.values import JsonObject

# The documented endpoints the sandbox serves and the one cmdlet each takes (admin-api-endpoints-reference).
ENDPOINT_CMDLETS: Final[dict[str, str]] = {
    "OrganizationConfig": "Get-OrganizationConfig",
    "AcceptedDomain": "Get-AcceptedDomain",
}
# The Entra role that authorises app-only calls: Exchange Administrator, the documented example (others UNCONFIRMED).
ADMIN_API_ENTRA_ROLES: Final = frozenset({wellknown.EXCHANGE_ADMINISTRATOR})

# --- error texts: one table (UNCONFIRMED bodies; 403 without RBAC is the documented status) ------------------
ADMIN_API_ERRORS: Final[dict[str, tuple[int, str, str]]] = {
    "token": (401, "Unauthorized", "{reason}"),
    "no_manage_as_app_v2": (
        401,
        "Unauthorized",
        "The access token of application {app_id} has no Exchange.ManageAsAppV2 role; grant admin consent for "
        "Exchange.ManageAsAppV2 on Office 365 Exchange Online.",
    ),
    "wrong_tenant": (401, "Unauthorized", "The tenant '{tenant}' in the request does not match the access token."),
    "no_anchor": (400, "BadRequest", "The X-AnchorMailbox header is required."),
    "unknown_endpoint": (404, "NotFound", "The endpoint '{endpoint}' is not available in the Admin API."),
    "bad_body": (400, "BadRequest", 'The request body must be {{"CmdletInput": {{"CmdletName": ...}}}}.'),
    "cmdlet_not_supported": (
        400,
        "BadRequest",
        "The cmdlet '{cmdlet}' is not supported by the endpoint '{endpoint}'; it supports {supported}.",
    ),
    "parameters_not_supported": (
        400,
        "BadRequest",
        "No parameters of {cmdlet} are available through the endpoint '{endpoint}'.",
    ),
    "forbidden": (
        403,
        "Forbidden",
        "Application {app_id} is not assigned an Exchange role that allows {cmdlet} on the endpoint '{endpoint}'.",
    ),
}


class AdminApiFault(TableFault):
    """An Admin API error (a row of ADMIN_API_ERRORS)."""

    TABLE = ADMIN_API_ERRORS


@dataclass(frozen=True)
class _Caller:
    app_id: str
    roles: frozenset[str]
    wids: frozenset[str]


class AdminApiService:
    """The Admin API endpoints over one tenant state; the cmdlets and RBAC are the Exchange service's."""

    def __init__(self, state: TenantState, signer: TokenSigner, exchange: ExchangeService) -> None:
        self.state = state
        self.signer = signer
        self.exchange = exchange
        self.cmdlets: dict[str, Callable[[Mapping[str, Any]], list[JsonObject]]] = {
            "Get-OrganizationConfig": exchange.get_organization_config,
            "Get-AcceptedDomain": exchange.get_accepted_domain,
        }

    def invoke(self, request: Request, call: Call, tenant: str, endpoint: str) -> Response:
        headers = {"Request-Id": call.request_id}
        try:
            caller = self._authenticate(request, tenant)
            cmdlet = self._cmdlet(request, endpoint)
            self._authorize(caller, cmdlet, endpoint)
            with self.state.lock:
                values = self.cmdlets[cmdlet]({})
        except AdminApiFault as fault:
            error: JsonObject = {"error": {"code": fault.code, "message": fault.message}}
            return json_response(error, fault.status, headers=headers)
        context = f"{call.base_url}/adminapi/v2.0/{tenant}/$metadata#{endpoint}"
        # UNCONFIRMED: OrganizationConfig answers "a single JSON object"; the envelope is not documented.
        body: JsonObject = (
            {"@odata.context": context + "/$entity", **values[0]}
            if endpoint == "OrganizationConfig" and values
            else {"@odata.context": context, "value": values}
        )
        return json_response(body, headers=headers)

    def _authenticate(self, request: Request, tenant: str) -> _Caller:
        if not request.headers.get("X-AnchorMailbox", "").strip():
            raise AdminApiFault("no_anchor")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            claims = self.signer.decode(
                token.strip() if scheme.lower() == "bearer" else "",
                audiences=EXCHANGE_AUDIENCES,
                tenant_id=self.state.tenant_id,
            )
        except AccessTokenError as exc:
            raise AdminApiFault("token", reason=str(exc)) from None
        initial = {d.lower() for d in self.state.domain_names() if d.lower().endswith(".onmicrosoft.com")}
        if tenant.lower() != self.state.tenant_id.lower() and tenant.lower() not in initial:
            raise AdminApiFault("wrong_tenant", tenant=tenant)
        return _Caller(
            str(claims.get("appid")),
            frozenset(str(r) for r in claims.get("roles") or []),
            frozenset(str(w).lower() for w in claims.get("wids") or []),
        )

    def _cmdlet(self, request: Request, endpoint: str) -> str:
        supported = ENDPOINT_CMDLETS.get(endpoint)
        if supported is None:
            raise AdminApiFault("unknown_endpoint", endpoint=endpoint)
        try:
            doc = json.loads(request.get_data(as_text=True) or "null")
        except (json.JSONDecodeError, RecursionError):
            doc = None
        cmdlet_input = doc.get("CmdletInput") if isinstance(doc, dict) else None
        if not isinstance(cmdlet_input, dict) or not isinstance(cmdlet_input.get("CmdletName"), str):
            raise AdminApiFault("bad_body")
        name = str(cmdlet_input["CmdletName"])
        if name.lower() != supported.lower():
            raise AdminApiFault("cmdlet_not_supported", cmdlet=name, endpoint=endpoint, supported=supported)
        if cmdlet_input.get("Parameters"):
            raise AdminApiFault("parameters_not_supported", cmdlet=supported, endpoint=endpoint)
        return supported

    def _authorize(self, caller: _Caller, cmdlet: str, endpoint: str) -> None:
        """Exchange.ManageAsAppV2 in roles, then an Exchange RBAC path allowing the cmdlet or a role in wids."""
        if wellknown.EXCHANGE_MANAGE_AS_APP_V2 not in caller.roles:
            raise AdminApiFault("no_manage_as_app_v2", app_id=caller.app_id)
        if caller.wids & {r.lower() for r in ADMIN_API_ENTRA_ROLES}:
            return
        with self.state.lock:
            sp = self.state.service_principal(app_id=caller.app_id)
            allowed = self.exchange.rbac.cmdlets_for(caller.app_id, str(sp["id"]) if sp else None)
        if cmdlet.lower() not in (allowed or set()):
            raise AdminApiFault("forbidden", app_id=caller.app_id, cmdlet=cmdlet, endpoint=endpoint)
