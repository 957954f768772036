"""Exchange Online admin API of the sandbox: ``POST /adminapi/beta/{tenant}/InvokeCommand``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from werkzeug.wrappers import Request, Response

from cbacheck import wellknown
from cbacheck.sandbox.entra.signer import AccessTokenError, TokenSigner
from cbacheck.sandbox.response import Call, json_response
from cbacheck.sandbox.state import TenantState
from cbacheck.sandbox.values import JsonObject, stable_guid

EXCHANGE_AUDIENCES: Final = frozenset(
    {"https://outlook.office365.com", "https://outlook.office.com", wellknown.EXCHANGE_ONLINE_APP_ID}
)
RATE_LIMIT: Final = 30000
CONTENT_TYPE: Final = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)

# --- which supported Entra role may run which cmdlet: one table (UNCONFIRMED) -------------------
# Microsoft: "The Global Administrator and Exchange Administrator roles provide the required
# permissions for any task in Exchange Online PowerShell ... The Security Administrator role does
# not have the necessary permissions for those same tasks."
# (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2). UNCONFIRMED: Security
# Reader/Administrator get configuration reads only; Get-Mailbox answers them 401 (as reported by
# users of the module, not documented).
_ALL_SUPPORTED: Final = wellknown.EXCHANGE_SUPPORTED_ROLES
_RECIPIENT_READERS: Final = frozenset(
    {
        wellknown.EXCHANGE_ADMINISTRATOR,
        wellknown.GLOBAL_ADMINISTRATOR,
        wellknown.GLOBAL_READER,
        wellknown.EXCHANGE_RECIPIENT_ADMINISTRATOR,
        wellknown.HELPDESK_ADMINISTRATOR,
        wellknown.COMPLIANCE_ADMINISTRATOR,
    }
)
CMDLET_ROLES: Final[dict[str, frozenset[str]]] = {
    "Get-OrganizationConfig": _ALL_SUPPORTED,
    "Get-AcceptedDomain": _ALL_SUPPORTED,
    "Get-Mailbox": _RECIPIENT_READERS,
    "Get-EXOMailbox": _RECIPIENT_READERS,
}

# --- error texts: one table ---------------------------------------------------------------------
EXCHANGE_ERRORS: Final[dict[str, tuple[int, str, str]]] = {
    # UNCONFIRMED: body when the token is missing or not valid (the admin API is undocumented).
    "token": (401, "Unauthorized", "{reason}"),
    # UNCONFIRMED: status and body when roles lacks Exchange.ManageAsApp (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2).
    "no_manage_as_app": (
        401,
        "Unauthorized",
        "The access token of application {app_id} has no Exchange.ManageAsApp role; grant admin "
        "consent for Exchange.ManageAsApp on Office 365 Exchange Online.",
    ),
    # The ExchangeOnlineManagement module's text; the HTTP status is UNCONFIRMED.
    "role_not_supported": (401, "Unauthorized", wellknown.EXCHANGE_ROLE_NOT_SUPPORTED),
    # A 401, as the module reports it (MicrosoftDocs/office-docs-powershell issues 7970 and 8058).
    "cmdlet_not_allowed": (401, "Unauthorized", wellknown.EXCHANGE_CMDLET_NOT_ALLOWED),
    # UNCONFIRMED: the tenant in the URL is not the tenant id or an *.onmicrosoft.com domain of the
    # token's tenant. -Organization must be the initial *.onmicrosoft.com domain (https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2);
    # a custom domain is reported to give permission errors.
    "wrong_tenant": (
        401,
        "Unauthorized",
        "The organization '{tenant}' in the request does not match the tenant of the access token.",
    ),
    # UNCONFIRMED wording.
    "unknown_cmdlet": (
        400,
        "BadRequest",
        "The term '{cmdlet}' is not recognized as a name of a cmdlet, function, script file, or executable program.",
    ),
    "bad_body": (
        400,
        "BadRequest",
        'The request body must be {{"CmdletInput": {{"CmdletName": ..., "Parameters": {{...}}}}}}.',
    ),
    # UNCONFIRMED wording and status.
    "not_found": (
        404,
        "NotFound",
        "The operation couldn't be performed because object '{identity}' couldn't be found on '{server}'.",
    ),
}


class ExchangeFault(Exception):
    """An admin API error (a row of EXCHANGE_ERRORS); rendered as the JSON error the module reads."""

    def __init__(self, key: str, **values: str) -> None:
        self.status, self.code, template = EXCHANGE_ERRORS[key]
        self.message = template.format(**values)
        super().__init__(self.message)


@dataclass(frozen=True)
class _Principal:
    app_id: str
    roles: frozenset[str]
    wids: frozenset[str]


class ExchangeService:
    """The adminapi InvokeCommand endpoint over one tenant state."""

    def __init__(self, state: TenantState, signer: TokenSigner) -> None:
        self.state = state
        self.signer = signer
        self.cmdlets: dict[str, Callable[[Mapping[str, Any]], list[JsonObject]]] = {
            "Get-OrganizationConfig": self.get_organization_config,
            "Get-AcceptedDomain": self.get_accepted_domain,
            "Get-Mailbox": self.get_mailbox,
            "Get-EXOMailbox": self.get_mailbox,
        }

    def invoke(self, request: Request, call: Call, tenant: str) -> Response:
        headers = {
            "Request-Id": call.request_id,
            "Rate-Limit-Limit": str(RATE_LIMIT),
            "Rate-Limit-Remaining": str(RATE_LIMIT - 1),
            "Rate-Limit-Reset": time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(time.time() + 60)),
            "X-Calculatedbetarget": "SANDBOX01.prod.outlook.com",
        }
        try:
            principal = self._authenticate(request, tenant)
            headers["X-Ms-Appid"] = principal.app_id
            name, parameters = self._command(request)
            self._authorize(principal, name)
            with self.state.lock:
                values = self.cmdlets[name](parameters)
            values = _select(values, request.args.get("$select"))
        except ExchangeFault as exc:
            error: JsonObject = {
                "error": {
                    "code": exc.code,
                    "message": exc.message,
                    "details": [{"message": exc.message, "target": "", "code": exc.code}],
                    "innererror": {
                        "message": exc.message,
                        "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                    },
                }
            }
            return json_response(error, exc.status, headers=headers)
        body: JsonObject = {
            "@odata.context": f"{call.base_url}/adminapi/beta/{tenant}/$metadata#Collection(Exchange.GenericHashTable)",
            "adminapi.warnings@odata.type": "#Collection(String)",
            "@adminapi.warnings": [],
            "value": values,
        }
        return json_response(body, headers=headers, content_type=CONTENT_TYPE)

    def _authenticate(self, request: Request, tenant: str) -> _Principal:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        try:
            claims = self.signer.decode(
                token.strip() if scheme.lower() == "bearer" else "",
                audiences=EXCHANGE_AUDIENCES,
                tenant_id=self.state.tenant_id,
            )
        except AccessTokenError as exc:
            raise ExchangeFault("token", reason=str(exc)) from None
        lowered = tenant.lower()
        # UNCONFIRMED: the tenant id in the admin API URL is accepted, as CIPP's requests use it; for
        # -Organization Microsoft documents only the .onmicrosoft.com domain (docs/sandbox.md, choice 27).
        if lowered != self.state.tenant_id.lower() and lowered not in {
            d.lower() for d in self.state.domain_names() if d.lower().endswith(".onmicrosoft.com")
        }:
            raise ExchangeFault("wrong_tenant", tenant=tenant)
        return _Principal(
            str(claims.get("appid")),
            frozenset(str(r) for r in claims.get("roles") or []),
            frozenset(str(w).lower() for w in claims.get("wids") or []),
        )

    def _command(self, request: Request) -> tuple[str, Mapping[str, Any]]:
        try:
            doc = json.loads(request.get_data(as_text=True) or "null")
        except (json.JSONDecodeError, RecursionError):
            doc = None
        cmdlet_input = doc.get("CmdletInput") if isinstance(doc, dict) else None
        if not isinstance(cmdlet_input, dict) or not isinstance(cmdlet_input.get("CmdletName"), str):
            raise ExchangeFault("bad_body")
        parameters = cmdlet_input.get("Parameters") or {}
        if not isinstance(parameters, dict):
            raise ExchangeFault("bad_body")
        wanted = cmdlet_input["CmdletName"].lower()
        name = next((c for c in self.cmdlets if c.lower() == wanted), None)
        if name is None:
            raise ExchangeFault("unknown_cmdlet", cmdlet=cmdlet_input["CmdletName"])
        return name, parameters

    def _authorize(self, principal: _Principal, cmdlet: str) -> None:
        if wellknown.EXCHANGE_MANAGE_AS_APP not in principal.roles:
            raise ExchangeFault("no_manage_as_app", app_id=principal.app_id)
        supported = {r.lower() for r in wellknown.EXCHANGE_SUPPORTED_ROLES}
        held = principal.wids & supported
        if not held:
            raise ExchangeFault("role_not_supported", app_id=principal.app_id)
        allowed = {r.lower() for r in CMDLET_ROLES[cmdlet]}
        if not held & allowed:
            raise ExchangeFault("cmdlet_not_allowed", cmdlet=cmdlet)

    # cmdlets -----------------------------------------------------------------------------------
    def get_organization_config(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        initial = self.state.initial_domain
        name = initial.split(".")[0]
        return [
            {
                "Name": initial,
                "DisplayName": self.state.display_name,
                "Identity": initial,
                "Guid": self.state.tenant_id,
                "OrganizationId": (f"SANDBOX01.prod.outlook.com/Microsoft Exchange Hosted Organizations/{initial}"),
                "ExchangeObjectId": stable_guid(self.state.tenant_id, "exchange-organization"),
                "IsDehydrated": False,
                "OAuth2ClientProfileEnabled": True,
                "DefaultAuthenticationPolicy": None,
                "MicrosoftExchangeRecipientEmailAddresses": [
                    f"MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@{initial}"
                ],
                "ShortName": name,
            }
        ]

    def get_accepted_domain(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        out: list[JsonObject] = []
        for dom in self.state.data["domains"]:
            if not dom.get("isVerified", True):
                continue
            name = str(dom["id"])
            out.append(
                {
                    "Name": name,
                    "DomainName": name,
                    "DomainType": "Authoritative",
                    "Default": bool(dom.get("isDefault")),
                    "InitialDomain": bool(dom.get("isInitial")),
                    "Identity": name,
                    "Guid": stable_guid(self.state.tenant_id, "accepted-domain", name),
                }
            )
        identity = parameters.get("Identity")
        if identity is not None:
            out = [d for d in out if str(d["Name"]).lower() == str(identity).lower()]
            if not out:
                raise ExchangeFault("not_found", identity=str(identity), server=self.state.initial_domain)
        return out

    def get_mailbox(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        boxes = [dict(m) for m in self.state.data["mailboxes"]]
        identity = parameters.get("Identity")
        if identity is not None:
            wanted = str(identity).lower()
            boxes = [
                m
                for m in boxes
                if wanted
                in {
                    str(m.get(k, "")).lower()
                    for k in (
                        "Identity",
                        "PrimarySmtpAddress",
                        "UserPrincipalName",
                        "Alias",
                        "Name",
                        "DisplayName",
                        "Guid",
                    )
                }
            ]
            if not boxes:
                raise ExchangeFault("not_found", identity=str(identity), server=self.state.initial_domain)
        size = parameters.get("ResultSize")
        if isinstance(size, int) and size > 0:
            boxes = boxes[:size]
        return boxes


def _select(values: list[JsonObject], select: str | None) -> list[JsonObject]:
    if not select:
        return values
    names = [n.strip() for n in select.split(",") if n.strip()]
    return [{n: v.get(n) for n in names} for v in values]
