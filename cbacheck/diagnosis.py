"""AADSTS and Exchange error catalogue: what Microsoft's answer means in this chain and which link probably broke."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from cbacheck import wellknown
from cbacheck.aadsts import DOC_AADSTS, Entry, find_entry
from cbacheck.catalogue import CATALOGUE, DOC_EXO_APP_ONLY, upstream_closure
from cbacheck.chain import follows_from
from cbacheck.facts import (
    AppRegistration,
    ExchangeProbe,
    Organization,
    ServicePrincipal,
    TenantFacts,
    TokenAttempt,
    most_specific_first,
)


@dataclass(frozen=True)
class Diagnosis:
    """One explained error: Microsoft's code and words, the likely cause here, and the next step."""

    code: str  # "AADSTS700027", or "EXO 401" for Exchange answers, or "" when nothing was recognised
    name: str  # Microsoft's short name for the error
    cause: str  # the likely cause in this chain
    requirement: str  # the requirement that probably broke ("" when none in the catalogue covers it)
    next_step: str
    doc: str
    microsoft_text: str = ""  # Microsoft's own words, first line, unchanged
    setting: str = ""  # the cbacheck setting to check when the cause is configuration, not the tenant

    @property
    def requirement_title(self) -> str:
        entry = CATALOGUE.get(self.requirement)
        return entry.title if entry else ""

    def sentence(self) -> str:
        """One paragraph a person can act on: code, Microsoft's text, cause, broken link, next step, doc."""
        head = " ".join(part for part in (self.code, self.name) if part) or "unrecognised error"
        parts = [f"{head}: {self.microsoft_text!r}" if self.microsoft_text else head]
        parts.append(f"likely cause: {self.cause}")
        if self.requirement:
            parts.append(f"probably broken: {self.requirement} ({self.requirement_title})")
        if self.setting:
            parts.append(f"check the setting {self.setting!r}")
        parts.append(f"next step: {self.next_step}")
        parts.append(f"see {self.doc}")
        return "; ".join(parts)

    def as_evidence(self) -> dict[str, str]:
        return {
            "code": self.code,
            "name": self.name,
            "microsoft_text": self.microsoft_text,
            "cause": self.cause,
            "requirement": self.requirement,
            "setting": self.setting,
            "next_step": self.next_step,
            "doc": self.doc,
        }

    def fail(self, check_id: str, message: str) -> NoReturn:
        """Fail the check; as following from the diagnosed requirement when that one is upstream of `check_id`.

        A diagnosed requirement downstream of the check (a clock error seen by CBA-TOKEN-001 points at
        CBA-TOKEN-003) cannot be what the failure follows from, so the failure stays the check's own.
        """
        __tracebackhide__ = True
        if self.requirement and self.requirement in upstream_closure(check_id):
            follows_from(self.requirement, message)
        raise AssertionError(message)


_AADSTS_IN_TEXT = re.compile(r"AADSTS(\d+)")


def _aadsts_codes(attempt: TokenAttempt) -> tuple[int, ...]:
    """Every code of the answer, most specific first; from the text when error_codes is empty."""
    if attempt.error_codes:
        return attempt.aadsts_codes
    # Some failures arrive without error_codes but with the code(s) in the text.
    return most_specific_first(tuple(int(code) for code in _AADSTS_IN_TEXT.findall(attempt.error_description)))


def _first_entry(codes: tuple[int, ...], text: str) -> Entry | None:
    """The row of the most specific code that has one: a wrapper code is looked up only after the others."""
    for code in codes:
        entry = find_entry(code, text)
        if entry is not None:
            return entry
    return None


def _app_not_found_in_tenant(facts: TenantFacts, text: str) -> Diagnosis | None:
    """AADSTS700016 when Graph shows the app: the service principal is missing, or the request went elsewhere."""
    if not isinstance(facts.app, AppRegistration):
        return None
    if facts.app_sp is None:
        return Diagnosis(
            code="AADSTS700016",
            name="UnauthorizedClient_DoesNotMatchRequest",
            cause="the app registration exists but has no service principal in this tenant, so Entra does not "
            "know the app here",
            requirement="CBA-APP-002",
            next_step="create the service principal (New-MgServicePrincipal -AppId <app id>, or cbacheck's fix)",
            doc=DOC_AADSTS,
            microsoft_text=text,
        )
    if isinstance(facts.app_sp, ServicePrincipal):
        return Diagnosis(
            code="AADSTS700016",
            name="UnauthorizedClient_DoesNotMatchRequest",
            cause="the app and its service principal exist in the tenant Graph was read from, so the token request "
            "went to another tenant or cloud",
            requirement="",
            next_step="make tenant and cloud name the tenant that holds the app",
            doc=DOC_AADSTS,
            microsoft_text=text,
            setting="tenant",
        )
    return None


def diagnose_token_error(attempt: TokenAttempt, facts: TenantFacts | None = None) -> Diagnosis:
    """Explain why the identity platform refused the app's token request.

    Pure: reads the attempt, and the collected facts when given, which tell an app missing from the
    tenant (AADSTS700016) apart from a missing service principal or a request sent to another tenant.
    """
    text = attempt.error_description
    codes = _aadsts_codes(attempt)
    code = codes[0] if codes else None
    if code == 700016 and facts is not None:
        refined = _app_not_found_in_tenant(facts, text)
        if refined is not None:
            return refined
    entry = _first_entry(codes, text)
    if entry is not None:
        return Diagnosis(
            code=f"AADSTS{entry.code}",
            name=entry.name,
            cause=entry.cause,
            requirement=entry.requirement,
            next_step=entry.next_step,
            doc=entry.doc,
            microsoft_text=text,
            setting=entry.setting,
        )
    return Diagnosis(
        code=f"AADSTS{code}" if code is not None else "",
        name=attempt.error or "unknown error",
        cause="an error cbacheck's catalogue does not list; Microsoft's text is the best guide",
        requirement="",
        next_step="look the code up in Microsoft's error reference, with the correlation id for support",
        doc=DOC_AADSTS,
        microsoft_text=text,
    )


@dataclass(frozen=True)
class ExchangeEntry:
    """One Exchange answer, matched on a fragment of its text (lower case), its status and the token it refused.

    A row with empty `text` is a status's fallback: it matches any text, and `name` stands in only when
    Exchange gave no error code of its own.
    """

    text: str
    name: str
    cause: str
    requirement: str
    next_step: str
    doc: str = DOC_EXO_APP_ONLY
    status: int | None = None
    manage_as_app_in_token: bool | None = None  # None: whatever the token carries

    def matches(self, lowered: str, status: int | None, manage_as_app_in_token: bool) -> bool:
        return (
            self.text in lowered
            and (self.status is None or self.status == status)
            and (self.manage_as_app_in_token is None or self.manage_as_app_in_token == manage_as_app_in_token)
        )


# Exchange's own texts for an app without a usable role or cmdlet; the supported roles are listed at
# https://learn.microsoft.com/powershell/exchange/app-only-auth-powershell-v2#assign-microsoft-entra-roles-to-the-application
# Rows with text decide first, then the organization in the URL, then the status fallbacks (empty text) in order.
EXCHANGE: tuple[ExchangeEntry, ...] = (
    ExchangeEntry(
        "isn't supported in this scenario",
        "Role not supported for app-only",
        "the app's service principal holds no directory role Exchange supports for app-only access "
        "(or the role is scoped to an administrative unit, or only eligible)",
        "CBA-ROLE-001",
        "assign Exchange Administrator (or another supported role) actively at tenant scope",
        DOC_EXO_APP_ONLY,
    ),
    ExchangeEntry(
        "isn't assigned to any management roles",
        "AuthZ-CmdletAccessDeniedException",
        "the app's service principal holds no directory role Exchange maps to management roles",
        "CBA-ROLE-001",
        "assign Exchange Administrator (or another supported role) actively at tenant scope",
        DOC_EXO_APP_ONLY,
    ),
    ExchangeEntry(
        "is not allowed to call",
        "Cmdlet not allowed",
        "the app's role is accepted by Exchange but does not include this cmdlet (a read-only role, or a role "
        "without this cmdlet in its management roles)",
        "",
        "assign a role that includes the cmdlet (Exchange Administrator covers every task), or set "
        "exchange_cmdlet to a cmdlet the role allows",
        DOC_EXO_APP_ONLY,
    ),
    ExchangeEntry(
        "is not recognized",
        "Cmdlet not available",
        "the cmdlet is not exposed to the app: its role has no management role with it, or the name is wrong",
        "",
        "check exchange_cmdlet, or assign a role that includes the cmdlet",
        DOC_EXO_APP_ONLY,
    ),
    ExchangeEntry(
        "",
        "Unauthorized",
        "Exchange refused a token that carries Exchange.ManageAsApp: the directory role is missing, "
        "not supported, or not yet in the token",
        "CBA-ROLE-001",
        "assign Exchange Administrator actively at tenant scope, then wait for a new token",
        status=401,
        manage_as_app_in_token=True,
    ),
    ExchangeEntry(
        "",
        "Unauthorized",
        "the token does not carry Exchange.ManageAsApp in roles: admin consent (CBA-PERM-003) is missing "
        "or not yet in the token",
        "CBA-TOKEN-002",
        "grant admin consent for Exchange.ManageAsApp, wait a few minutes, and run again",
        status=401,
        manage_as_app_in_token=False,
    ),
    ExchangeEntry(
        "",
        "Forbidden",
        "Exchange accepted the sign-in but the role does not allow this cmdlet or object",
        "",
        "assign a role that includes the cmdlet (Exchange Administrator covers every task)",
        status=403,
    ),
    ExchangeEntry(
        "",
        "NotFound",
        "Exchange does not know the organization in the request URL (a custom domain or a tenant "
        "without Exchange Online)",
        "CBA-ORG-001",
        "use the tenant's initial .onmicrosoft.com domain as organization",
        status=404,
    ),
    ExchangeEntry(
        "",
        "unrecognised answer",
        "an answer cbacheck's catalogue does not list; Exchange's text is the best guide",
        "",
        "retry later; with the request id, ask Microsoft support if it persists",
    ),
)


_ORGANIZATION_IN_URL = re.compile(r"/adminapi/[^/]+/([^/]+)/", re.IGNORECASE)


def organization_in_url(url: str) -> str | None:
    """The organization segment of an admin API URL (…/adminapi/beta/{organization}/InvokeCommand)."""
    match = _ORGANIZATION_IN_URL.search(url)
    return match.group(1) if match else None


def _other_organization(probe: ExchangeProbe, organization: Organization | None, code: str) -> Diagnosis | None:
    """A refusal of a request made for an organization that is neither the initial domain nor the tenant ID."""
    asked_for = organization_in_url(probe.url)
    if organization is None or asked_for is None or probe.status not in (401, 403, 404):
        return None
    if asked_for.casefold() in {organization.initial_domain.casefold(), organization.tenant_id.casefold()}:
        return None
    return Diagnosis(
        code=code,
        name=probe.error_code or "Refused",
        cause=f"the request names the organization {asked_for!r}, which is not the tenant's initial domain "
        f"{organization.initial_domain!r} or its tenant ID",
        requirement="CBA-ORG-001",
        next_step=f"use {organization.initial_domain} as organization",
        doc=DOC_EXO_APP_ONLY,
        microsoft_text=probe.error_message,
    )


def diagnose_exchange_error(
    probe: ExchangeProbe,
    token: TokenAttempt | None = None,
    organization: Organization | None = None,
    *,
    role_to_assign: str = "",
    permission: str = wellknown.EXCHANGE_MANAGE_AS_APP,
) -> Diagnosis:
    """Explain Exchange's refusal of the probe cmdlet (`role_to_assign`: another profile's role, named instead;
    `permission`: the profile's, which the token's roles must carry, e.g. Exchange.ManageAsAppV2).

    Known texts decide first. Otherwise the tenant's organization, when given, reveals a request made
    for a domain Exchange does not take, and the token's claims, when given, sharpen a bare 401.
    """
    text = probe.error_message
    lowered = text.lower()
    code = f"EXO {probe.status}" if probe.status is not None else "EXO"
    in_token = token is not None and permission in token.roles
    entry = next((row for row in EXCHANGE if row.text and row.matches(lowered, probe.status, in_token)), None)
    if entry is None:
        other_organization = _other_organization(probe, organization, code)
        if other_organization is not None:
            return other_organization
        # The last row (no text, no status) takes any answer, so a fallback is always found.
        entry = next(row for row in EXCHANGE if not row.text and row.matches(lowered, probe.status, in_token))
    return Diagnosis(
        code=code,
        name=entry.name if entry.text else probe.error_code or entry.name,
        cause=entry.cause,
        requirement=entry.requirement,
        next_step=entry.next_step.replace("Exchange Administrator", role_to_assign)
        if role_to_assign and entry.requirement == "CBA-ROLE-001"
        else entry.next_step,
        doc=entry.doc,
        microsoft_text=text,
    )
