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
from cbacheck.sandbox.faults import TableFault
from cbacheck.sandbox.rbac import COMPLIANCE_TABLES, ExchangeRbac, RbacTables, pointer_names
from cbacheck.sandbox.response import Call, json_response
from cbacheck.sandbox.state import TenantState
from cbacheck.sandbox.values import JsonObject, stable_guid

EXCHANGE_AUDIENCES: Final = frozenset(
    {"https://outlook.office365.com", "https://outlook.office.com", wellknown.EXCHANGE_ONLINE_APP_ID}
)
# UNCONFIRMED (docs/sandbox.md): Security & Compliance PowerShell answers on the same admin API path with a token
# for its own resource; in the sandbox one origin serves both, told apart by the token's audience.
COMPLIANCE_AUDIENCES: Final = frozenset({wellknown.SECURITY_COMPLIANCE_RESOURCE})


def audiences_in(cloud: str) -> tuple[frozenset[str], frozenset[str]]:
    """The token audiences Exchange Online and Security & Compliance accept in a tenant of that cloud (its resource
    names: wellknown.CLOUDS; UNCONFIRMED outside the global cloud, docs/sandbox.md choice 37)."""
    endpoints = wellknown.CLOUDS[cloud]
    compliance = {endpoints.compliance_resource} - {""}
    return EXCHANGE_AUDIENCES | {endpoints.exchange_resource}, COMPLIANCE_AUDIENCES | compliance


RATE_LIMIT: Final = 30000
CONTENT_TYPE: Final = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)

# Which role may run which cmdlet: one table, in cbacheck/sandbox/rbac.py (CMDLET_ROLES for Entra roles,
# ROLE_CMDLETS and BUILTIN_ROLE_GROUPS for Exchange RBAC).

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
    # UNCONFIRMED wording and status of the RBAC write refusals.
    "missing_parameter": (400, "BadRequest", "A parameter cannot be found or is missing: -{name}."),
    "duplicate_pointer": (
        400,
        "BadRequest",
        "A service principal with ObjectId '{object_id}' already exists in the organization.",
    ),
    # UNCONFIRMED (R8).
    "already_member": (400, "BadRequest", "The recipient '{member}' is already a member of the group '{group}'."),
    # UNCONFIRMED wording and status.
    "not_found": (
        404,
        "NotFound",
        "The operation couldn't be performed because object '{identity}' couldn't be found on '{server}'.",
    ),
}


class ExchangeFault(TableFault):
    """An admin API error (a row of EXCHANGE_ERRORS); rendered as the JSON error the module reads."""

    TABLE = EXCHANGE_ERRORS


class RbacCmdlets:
    """The RBAC cmdlets, as mixed into ExchangeService (state and rbac are set there)."""

    state: TenantState
    rbac: ExchangeRbac

    def get_service_principal(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        """The pointer -Identity names; every pointer without it, or when it names none.

        "The value $null or a non-existent value for the Identity parameter returns *all* objects"
        (https://learn.microsoft.com/powershell/module/exchangepowershell/get-serviceprincipal).
        """
        identity = _text(parameters, "Identity")
        return [dict(p) for p in self.rbac.find_pointers(identity) or self.rbac.find_pointers(None)]

    def get_role_group(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        """The group -Identity names; every group without it, or when it names none (the same documented caution,
        https://learn.microsoft.com/powershell/module/exchangepowershell/get-rolegroup)."""
        identity = _text(parameters, "Identity")
        groups = [dict(g) for g in self.rbac.role_groups()]
        named = [g for g in groups if identity and str(g["Name"]).lower() == identity.lower()]
        return named or groups

    def get_role_group_member(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        group = self._group(parameters)
        members = {m.lower() for m in group.get("Members", [])}
        return [
            {**p, "Name": p.get("Name", p["ObjectId"]), "RecipientType": "ServicePrincipal"}
            for p in self.rbac.data["servicePrincipals"]
            if pointer_names(p) & members
        ]

    def get_management_role_assignment(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        """-RoleAssignee returns direct and role-group assignments, as documented
        (https://learn.microsoft.com/powershell/module/exchangepowershell/get-managementroleassignment).

        UNCONFIRMED (R6): a pointer is named by its ObjectId, Identity or DisplayName, and role-group
        assignments carry the group's name as RoleAssignee.
        """
        assignee = _text(parameters, "RoleAssignee")
        role = _text(parameters, "Role")
        if assignee:
            group = self.rbac.role_group(assignee)
            pointers = self.rbac.find_pointers(assignee)
            if group is not None:
                found = self.rbac.group_assignments(group)
            elif pointers:
                found = [a for p in pointers for a in self.rbac.assignments_for(p)]
            else:
                raise ExchangeFault("not_found", identity=assignee, server=self.state.initial_domain)
        else:
            found = list(self.state.exchange["managementRoleAssignments"])
            for group in self.rbac.role_groups():
                found += [a for a in self.rbac.group_assignments(group) if a not in found]
        if role:
            found = [a for a in found if str(a["Role"]).lower() == role.lower()]
        return [dict(a) for a in found]

    def get_management_scope(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        """Every management scope, or the one -Identity names."""
        identity = _text(parameters, "Identity").lower()
        scopes = [dict(s) for s in self.state.exchange["managementScopes"]]
        return [s for s in scopes if str(s["Name"]).lower() == identity] if identity else scopes

    def get_application_access_policy(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        """Every Application Access Policy, or the one -Identity names (a missing one returns all, as documented)."""
        identity = _text(parameters, "Identity").lower()
        policies = [dict(p) for p in self.state.exchange["applicationAccessPolicies"]]
        named = [p for p in policies if str(p["Identity"]).lower() == identity]
        return named or policies

    def get_management_role(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        cmdlet = _text(parameters, "Cmdlet")
        custom = {str(r["Name"]): r for r in self.state.exchange["managementRoles"]}
        names = self.rbac.roles_with_cmdlet(cmdlet) if cmdlet else sorted(self.rbac.role_cmdlets())
        return [
            {
                "Name": name,
                "Identity": name,
                "RoleType": "Custom" if name in custom else "BuiltIn",
                "IsRootRole": name not in custom,
                "Parent": custom[name]["Parent"] if name in custom else None,
            }
            for name in names
        ]

    def new_service_principal(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        """A pointer; Exchange does not check ObjectId against Entra (a wrong one is a silent failure).

        UNCONFIRMED (R5): only the same ObjectId twice is refused; the same AppId with another ObjectId is not.
        """
        app_id, object_id = _text(parameters, "AppId"), _text(parameters, "ObjectId")
        if not app_id or not object_id:
            raise ExchangeFault("missing_parameter", name="AppId" if not app_id else "ObjectId")
        with self.state.writing():
            if any(str(p["ObjectId"]).lower() == object_id.lower() for p in self.state.exchange["servicePrincipals"]):
                raise ExchangeFault("duplicate_pointer", object_id=object_id)
            pointer: JsonObject = {
                "AppId": app_id,
                "ObjectId": object_id,
                "DisplayName": _text(parameters, "DisplayName") or app_id,
                "Identity": object_id,
                "Name": object_id,
            }
            self.state.exchange["servicePrincipals"].append(pointer)
        return [dict(pointer)]

    def add_role_group_member(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        group = self._group(parameters)
        member = _text(parameters, "Member")
        pointers = self.rbac.find_pointers(member) if member else []
        if len(pointers) != 1:
            raise ExchangeFault("not_found", identity=member or "(none)", server=self.state.initial_domain)
        with self.state.writing():
            stored = self.rbac.stored_group(str(group["Name"]))
            if pointer_names(pointers[0]) & {m.lower() for m in stored.get("Members", [])}:
                raise ExchangeFault("already_member", member=member, group=str(stored["Name"]))
            stored.setdefault("Members", []).append(str(pointers[0]["Identity"]))
        return []

    def _group(self, parameters: Mapping[str, Any]) -> JsonObject:
        identity = _text(parameters, "Identity")
        group = self.rbac.role_group(identity) if identity else None
        if group is None:
            raise ExchangeFault("not_found", identity=identity or "(none)", server=self.state.initial_domain)
        return group


class ComplianceRbacCmdlets(RbacCmdlets):
    """The RBAC reads on Security & Compliance PowerShell's endpoint, over the state's separate `compliance` objects."""

    def __init__(self, state: TenantState) -> None:
        self.state = state
        self.rbac = ExchangeRbac(state.compliance, COMPLIANCE_TABLES)


@dataclass(frozen=True)
class _Principal:
    app_id: str
    roles: frozenset[str]
    wids: frozenset[str]
    compliance: bool = False  # a Security & Compliance token


class ExchangeService(RbacCmdlets):
    """The adminapi InvokeCommand endpoint over one tenant state."""

    def __init__(self, state: TenantState, signer: TokenSigner) -> None:
        self.state = state
        self.signer = signer
        self.cmdlets: dict[str, Callable[[Mapping[str, Any]], list[JsonObject]]] = {
            "Get-OrganizationConfig": self.get_organization_config,
            "Get-AcceptedDomain": self.get_accepted_domain,
            "Get-Mailbox": self.get_mailbox,
            "Get-EXOMailbox": self.get_mailbox,
            "Get-ServicePrincipal": self.get_service_principal,
            "Get-RoleGroup": self.get_role_group,
            "Get-RoleGroupMember": self.get_role_group_member,
            "Get-ManagementRoleAssignment": self.get_management_role_assignment,
            "Get-ManagementRole": self.get_management_role,
            "Get-ManagementScope": self.get_management_scope,
            "Get-ApplicationAccessPolicy": self.get_application_access_policy,
            "New-ServicePrincipal": self.new_service_principal,
            "Add-RoleGroupMember": self.add_role_group_member,
        }
        # UNCONFIRMED: only the read-only probe cmdlet and the RBAC reads are modelled for Security & Compliance
        # (docs/sandbox.md, choices 33 and 36).
        self.compliance = ComplianceRbacCmdlets(state)
        self.compliance_cmdlets: dict[str, Callable[[Mapping[str, Any]], list[JsonObject]]] = {
            wellknown.SECURITY_COMPLIANCE_PROBE_CMDLET: self.get_label,
            "Get-ServicePrincipal": self.compliance.get_service_principal,
            "Get-RoleGroup": self.compliance.get_role_group,
            "Get-RoleGroupMember": self.compliance.get_role_group_member,
        }
        self.rbac = ExchangeRbac(state.exchange)

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
            cmdlets = self.compliance_cmdlets if principal.compliance else self.cmdlets
            name, parameters = self._command(request, cmdlets)
            self._authorize(principal, name)
            with self.state.lock:
                values = cmdlets[name](parameters)
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
            exchange_audiences, compliance_audiences = audiences_in(self.state.cloud)
            claims = self.signer.decode(
                token.strip() if scheme.lower() == "bearer" else "",
                audiences=exchange_audiences | compliance_audiences,
                tenant_id=self.state.tenant_id,
            )
        except AccessTokenError as exc:
            raise ExchangeFault("token", reason=str(exc)) from None
        lowered = tenant.lower()
        # UNCONFIRMED: the tenant id in the admin API URL is accepted, as CIPP's requests use it; for
        # -Organization Microsoft documents only the .onmicrosoft.com domain (docs/sandbox.md, choice 27).
        suffixes = (".onmicrosoft.com", wellknown.CLOUDS[self.state.cloud].initial_domain_suffix)
        if lowered != self.state.tenant_id.lower() and lowered not in {
            d.lower() for d in self.state.domain_names() if d.lower().endswith(suffixes)
        }:
            raise ExchangeFault("wrong_tenant", tenant=tenant)
        return _Principal(
            str(claims.get("appid")),
            frozenset(str(r) for r in claims.get("roles") or []),
            frozenset(str(w).lower() for w in claims.get("wids") or []),
            str(claims.get("aud")).rstrip("/").lower() in compliance_audiences,
        )

    def _command(
        self, request: Request, cmdlets: Mapping[str, Callable[[Mapping[str, Any]], list[JsonObject]]]
    ) -> tuple[str, Mapping[str, Any]]:
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
        name = next((c for c in cmdlets if c.lower() == wanted), None)
        if name is None:
            raise ExchangeFault("unknown_cmdlet", cmdlet=cmdlet_input["CmdletName"])
        return name, parameters

    def _authorize(self, principal: _Principal, cmdlet: str) -> None:
        """Exchange.ManageAsApp, then a supported role in wids or an RBAC path; the cmdlet must be in one of them.

        Security & Compliance has its own supported roles and its own role groups (`COMPLIANCE_TABLES`).
        """
        if wellknown.EXCHANGE_MANAGE_AS_APP not in principal.roles:
            raise ExchangeFault("no_manage_as_app", app_id=principal.app_id)
        rbac = self.compliance.rbac if principal.compliance else self.rbac
        tables: RbacTables = rbac.tables
        held = principal.wids & {r.lower() for r in tables.supported_roles}
        with self.state.lock:
            sp = self.state.service_principal(app_id=principal.app_id)
            # RBAC combines the permissions of every source (Option 3 of the app-only article).
            rbac_cmdlets = rbac.cmdlets_for(principal.app_id, str(sp["id"]) if sp else None)
        if not held and rbac_cmdlets is None:
            raise ExchangeFault("role_not_supported", app_id=principal.app_id)
        allowed = {r.lower() for r in tables.cmdlet_roles[cmdlet]}
        if not held & allowed and cmdlet.lower() not in (rbac_cmdlets or set()):
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
                **self._ews_settings(),
            }
        ]

    def _ews_settings(self) -> JsonObject:
        """EwsEnabled ($null when not configured) and EwsAllowedAppIDs, as Set-OrganizationConfig documents them
        (https://learn.microsoft.com/powershell/module/exchangepowershell/set-organizationconfig). UNCONFIRMED: that
        Get-OrganizationConfig prints the allow list as EwsAllowedAppIDs (docs/sandbox.md)."""
        configured = (self.state.exchange.get("organizationConfig") or [{}])[0]
        return {
            "EwsEnabled": configured.get("EwsEnabled"),
            "EwsAllowedAppIDs": list(configured.get("EwsAllowedAppIDs") or []),
        }

    def get_label(self, parameters: Mapping[str, Any]) -> list[JsonObject]:
        """Sensitivity labels: none configured in a sandbox tenant (an empty list is a successful answer)."""
        return []

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


def _text(parameters: Mapping[str, Any], name: str) -> str:
    value = parameters.get(name)
    return str(value) if isinstance(value, str | int) else ""


def _select(values: list[JsonObject], select: str | None) -> list[JsonObject]:
    if not select:
        return values
    names = [n.strip() for n in select.split(",") if n.strip()]
    return [{n: v.get(n) for n in names} for v in values]
