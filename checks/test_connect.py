"""Link 6, connecting: the organization value, the app's token and Exchange Online's answer (CBA-ORG/TOKEN/EXO)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from cbacheck import wellknown
from cbacheck.catalogue import chain_order, upstream_closure
from cbacheck.chain import UpstreamFailure, require
from cbacheck.config import GUID_RE, Settings, accepted_role_ids
from cbacheck.diagnosis import Diagnosis, diagnose_exchange_error, diagnose_token_error
from cbacheck.facts import (
    ExchangeProbe,
    FactUnavailable,
    Organization,
    TenantFacts,
    TokenAttempt,
    Unavailable,
)

if TYPE_CHECKING:
    from cbacheck.evidence import Evidence

# Entra tolerates this much skew in a client assertion, and the requirement allows no more.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Entra back-dates iat/nbf of the tokens it issues by up to five minutes (the sample v1 token in
# Microsoft's access-token reference has exp - iat = 65 minutes for a one-hour token), so a token
# issued "now" may carry an iat up to five minutes old. The skew window is widened by that much
# on the side it can shift to; see docs/requirements.md (CBA-TOKEN-003).
ISSUER_BACKDATE = timedelta(minutes=5)
_TIME_IN_TEXT = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z?"


def _no_token(attempt: TokenAttempt) -> str:
    code = f"AADSTS{attempt.aadsts}" if attempt.aadsts is not None else attempt.error or "no answer"
    return f"the app obtained no token ({code})"


def _raise_diagnosed(check_id: str, message: str, diagnosis: Diagnosis) -> None:
    """Fail; as following from the diagnosed requirement when that one is upstream of this check."""
    if diagnosis.requirement and diagnosis.requirement in upstream_closure(check_id):
        raise UpstreamFailure(diagnosis.requirement, message)
    raise AssertionError(message)


def _claim_time(claims: dict[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    return None


def _time_after(label: str, text: str) -> datetime | None:
    match = re.search(re.escape(label) + r"\s*" + _TIME_IN_TEXT, text)
    if not match:
        return None
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(match.group(1) + "." + fraction).replace(tzinfo=UTC)


@pytest.mark.requirement("CBA-ORG-001", severity="high", fix="use_initial_domain")
def test_organization_is_initial_domain(
    organization: Organization, tenant_facts: TenantFacts, cba_settings: Settings, evidence: Evidence
) -> None:
    """Organization is the tenant's initial onmicrosoft.com domain

    Connect-ExchangeOnline -Organization takes the initial .onmicrosoft.com domain or the tenant ID;
    a custom domain connects but gives "cryptic permission issues", and another tenant's domain fails
    with AADSTS700016. When organization is not configured the check is skipped, naming the value
    to use: there is no script value to judge.
    """
    setting = tenant_facts.organization_setting
    accepted = (organization.initial_domain, organization.tenant_id)
    evidence.observed("organization setting", setting)
    evidence.add("organization setting source", cba_settings.source("organization"))
    evidence.observed(
        "tenant",
        {
            "id": organization.tenant_id,
            "initialDomain": organization.initial_domain,
            "verifiedDomains": list(organization.verified_domains),
        },
    )
    evidence.expected(f"{organization.initial_domain} or {organization.tenant_id} (case-insensitive)")
    if setting is None:
        pytest.skip(
            f"organization not configured; scripts should use -Organization {organization.initial_domain} "
            f"(or the tenant ID {organization.tenant_id})"
        )
    value = setting.strip().casefold()
    if value in {item.casefold() for item in accepted}:
        return
    verified = {domain.casefold() for domain in organization.verified_domains}
    if value in verified:
        why = "a custom domain of this tenant, which Exchange app-only sessions do not accept"
    else:
        why = f"not a domain of tenant {organization.tenant_id} (another tenant, or a typo)"
    raise AssertionError(
        f"organization {setting!r} ({cba_settings.source('organization')}) is {why}; expected the initial "
        f"domain: use -Organization {organization.initial_domain} (or the tenant ID {organization.tenant_id})"
    )


@pytest.mark.requirement("CBA-TOKEN-001", severity="critical", fix="follows")
def test_app_obtains_exchange_token(token_attempt: TokenAttempt, tenant_facts: TenantFacts, evidence: Evidence) -> None:
    """The app obtains an Exchange token with the certificate

    cbacheck asks for the token exactly as Connect-ExchangeOnline does (client credentials, the
    certificate's client assertion, scope <Exchange>/.default). A refusal is explained: the AADSTS
    code, Microsoft's text, the likely cause and the link that probably broke.
    """
    evidence.observed(
        "token request",
        {
            "authority": token_attempt.authority,
            "scope": token_attempt.scope,
            "client_id": token_attempt.client_id,
            "client assertion": token_attempt.credential_style,
            "elapsed_ms": round(token_attempt.elapsed_ms, 1),
        },
    )
    evidence.expected(f"an access token for {token_attempt.scope}")
    if token_attempt.acquired:
        # Decoded header and claims only: the fact never holds the token or its signature.
        evidence.observed("token header", token_attempt.header)
        evidence.observed("token claims", token_attempt.claims)
        return
    diagnosis = diagnose_token_error(token_attempt, tenant_facts)
    evidence.observed(
        "error",
        {
            "error": token_attempt.error,
            "error_codes": list(token_attempt.error_codes),
            "error_description": token_attempt.error_description,
            "correlation_id": token_attempt.correlation_id,
            "trace_id": token_attempt.trace_id,
            "timestamp": token_attempt.timestamp,
        },
    )
    evidence.add("diagnosis", diagnosis.as_evidence())
    support = ", ".join(
        f"{label} {value}"
        for label, value in (
            ("correlation id", token_attempt.correlation_id),
            ("trace id", token_attempt.trace_id),
            ("timestamp", token_attempt.timestamp),
        )
        if value
    )
    message = (
        f"app {token_attempt.client_id} got no token from {token_attempt.authority} for {token_attempt.scope}; "
        f"expected an access token. {diagnosis.sentence()}" + (f" ({support})" if support else "")
    )
    _raise_diagnosed("CBA-TOKEN-001", message, diagnosis)


def _grant_in_facts(facts: TenantFacts) -> bool | None:
    """Whether Graph shows Exchange.ManageAsApp granted to the app (None when that is unknown)."""
    grants = facts.app_role_grants
    if isinstance(grants, Unavailable):
        return None
    exchange_sp = facts.exchange_sp
    resource_id = (
        exchange_sp.object_id if exchange_sp is not None and not isinstance(exchange_sp, Unavailable) else None
    )
    return any(
        grant.app_role_id == wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
        and (resource_id is None or grant.resource_id == resource_id)
        for grant in grants
    )


def _role_in_facts(facts: TenantFacts, accepted: frozenset[str]) -> bool | None:
    """Whether Graph shows an accepted role assigned actively at tenant scope (None when unknown)."""
    assignments = facts.role_assignments
    if isinstance(assignments, Unavailable):
        return None
    return any((a.role_template_id or a.role_definition_id).lower() in accepted and a.tenant_wide for a in assignments)


def _expected_tenant_id(facts: TenantFacts) -> str | None:
    organization = facts.organization
    if not isinstance(organization, Unavailable):
        return organization.tenant_id.lower()
    if GUID_RE.match(facts.tenant):
        return facts.tenant.lower()
    return None


@pytest.mark.requirement("CBA-TOKEN-002", severity="critical", fix="follows")
def test_token_claims_are_right(
    token_attempt: TokenAttempt, tenant_facts: TenantFacts, cba_settings: Settings, evidence: Evidence
) -> None:
    """The token carries the right audience, tenant, app, role and permission

    This is the effective verdict: configured (CBA-PERM-002) and granted (CBA-PERM-003, CBA-ROLE-001)
    only count once the token carries them. Exchange reads roles for Exchange.ManageAsApp and wids
    for the directory role; new grants reach tokens only after propagation.
    """
    attempt = require(token_attempt if token_attempt.acquired else None, "CBA-TOKEN-001", _no_token(token_attempt))
    claims = attempt.claims
    resource = cba_settings.cloud_endpoints.exchange_resource.rstrip("/")
    accepted = accepted_role_ids(cba_settings)
    tenant_id = _expected_tenant_id(tenant_facts)
    evidence.observed("token claims", claims)
    evidence.expected(
        f"aud {resource} (or {wellknown.EXCHANGE_ONLINE_APP_ID}); tid {tenant_id or tenant_facts.tenant}; "
        f"appid {tenant_facts.app_id}; roles containing {wellknown.EXCHANGE_MANAGE_AS_APP}; wids containing one "
        f"of {', '.join(sorted(accepted))}"
    )

    problems: list[str] = []
    upstream: list[str] = []  # the upstream requirement behind each problem, when Graph shows it broken
    own = False

    aud = str(claims.get("aud", ""))
    if aud.rstrip("/").lower() not in {resource.lower(), wellknown.EXCHANGE_ONLINE_APP_ID}:
        problems.append(f"aud is {aud or 'missing'!r}, expected {resource!r}")
        own = True
    tid = str(claims.get("tid", "")).lower()
    if tenant_id is not None and tid != tenant_id:
        problems.append(f"tid is {tid or 'missing'!r}, expected {tenant_id!r}")
        own = True
    app_claim = str(claims.get("appid") or claims.get("azp") or "").lower()
    if app_claim != tenant_facts.app_id.lower():
        problems.append(f"appid is {app_claim or 'missing'!r}, expected {tenant_facts.app_id!r}")
        own = True

    roles = claims.get("roles") or []
    if wellknown.EXCHANGE_MANAGE_AS_APP not in roles:
        granted = _grant_in_facts(tenant_facts)
        text = f"roles is {list(roles)!r}, without {wellknown.EXCHANGE_MANAGE_AS_APP}"
        if granted:
            text += (
                "; Graph shows the admin consent, so the grant may still be propagating or the token predates it "
                "(wait a few minutes and run again)"
            )
            own = True
        elif granted is False:
            text += "; admin consent is not granted (CBA-PERM-003)"
            upstream.append("CBA-PERM-003")
        else:
            own = True
        problems.append(text)

    if "wids" not in claims:
        problems.append("the token carries no wids claim, so Exchange sees no directory role")
        assigned = _role_in_facts(tenant_facts, accepted)
        if assigned is False:
            upstream.append("CBA-ROLE-001")
        else:
            own = True
    else:
        wids = {str(w).lower() for w in claims.get("wids") or []}
        if not wids & accepted:
            assigned = _role_in_facts(tenant_facts, accepted)
            names = ", ".join(f"{wellknown.DIRECTORY_ROLE_NAMES.get(r, r)} ({r})" for r in sorted(accepted))
            text = f"wids is {sorted(wids)!r}, with none of the accepted roles: {names}"
            if assigned:
                text += (
                    "; Graph shows the role assigned, so the assignment may still be propagating or the token "
                    "predates it"
                )
                own = True
            elif assigned is False:
                text += "; no accepted role is actively assigned at tenant scope (CBA-ROLE-001)"
                upstream.append("CBA-ROLE-001")
            else:
                own = True
            problems.append(text)

    if not problems and tenant_id is None:
        raise FactUnavailable(
            Unavailable(
                "the tenant ID",
                f"tenant {tenant_facts.tenant!r} is a domain and the organization could not be read, so the "
                f"token's tid {tid!r} cannot be compared",
                missing_permission="Organization.Read.All",
            )
        )
    message = f"the token of app {tenant_facts.app_id} is not right: {'; '.join(problems)}"
    if problems and upstream and not own:
        raise UpstreamFailure(min(upstream, key=chain_order), message)
    assert not problems, message


@pytest.mark.requirement("CBA-TOKEN-003", severity="medium", fix="manual")
def test_local_clock_agrees_with_entra(
    token_attempt: TokenAttempt, tenant_facts: TenantFacts, evidence: Evidence
) -> None:
    """The local clock agrees with Entra ID

    The client assertion is signed with the local time; Entra refuses one outside its time window
    (AADSTS700024). The skew is read from the token's iat (or nbf) against the collection time,
    or from Entra's own text when it refused the assertion for its time.
    """
    now = tenant_facts.collected_at
    evidence.add("local time (collected_at)", now.isoformat())
    evidence.expected(f"local clock within {int(MAX_CLOCK_SKEW.total_seconds() // 60)} minutes of Entra's")
    if not token_attempt.acquired and token_attempt.aadsts == 700024:
        text = token_attempt.error_description
        entra_now = _time_after("Current time:", text)
        assertion_from = _time_after("valid from", text)
        evidence.observed("Entra's answer", text)
        skew = ""
        if entra_now and assertion_from:
            seconds = int((assertion_from - entra_now).total_seconds())
            evidence.observed("assertion valid from - Entra's time (seconds)", seconds)
            skew = (
                f" (assertion valid from {assertion_from.isoformat()}, Entra's time {entra_now.isoformat()}: "
                f"the local clock is about {abs(seconds)} s {'ahead' if seconds > 0 else 'behind'})"
            )
        raise AssertionError(
            f"Entra refused the client assertion of app {token_attempt.client_id} as outside its valid time range"
            f"{skew}; expected the local clock within 5 minutes of Entra's: synchronise it (NTP)"
        )
    attempt = require(token_attempt if token_attempt.acquired else None, "CBA-TOKEN-001", _no_token(token_attempt))
    issued = _claim_time(attempt.claims, "iat") or _claim_time(attempt.claims, "nbf")
    if issued is None:
        raise FactUnavailable(
            Unavailable("the token's issue time", "the token carries neither iat nor nbf, so no skew can be measured")
        )
    offset = now - issued
    evidence.observed("token iat/nbf", issued.isoformat())
    evidence.observed("collected_at - iat (seconds)", round(offset.total_seconds(), 1))
    evidence.add(
        "rule",
        f"-{int(MAX_CLOCK_SKEW.total_seconds())} s <= collected_at - iat <= "
        f"{int((MAX_CLOCK_SKEW + ISSUER_BACKDATE).total_seconds())} s (Entra back-dates iat by up to "
        f"{int(ISSUER_BACKDATE.total_seconds())} s)",
    )
    low, high = -MAX_CLOCK_SKEW, MAX_CLOCK_SKEW + ISSUER_BACKDATE
    direction = "behind" if offset < low else "ahead of"
    assert low <= offset <= high, (
        f"the local clock is {abs(int(offset.total_seconds()))} s {direction} the token's issue time "
        f"{issued.isoformat()} (local {now.isoformat()}); expected it within "
        f"{int(MAX_CLOCK_SKEW.total_seconds())} s of Entra's: synchronise the host clock (NTP)"
    )


@pytest.mark.requirement("CBA-EXO-001", severity="critical", fix="follows")
def test_exchange_accepts_token(
    exchange_probe: ExchangeProbe | None, tenant_facts: TenantFacts, evidence: Evidence
) -> None:
    """Exchange Online accepts the token

    The end-to-end proof: one read-only cmdlet through Exchange's admin API with the app's token.
    Exchange checks Exchange.ManageAsApp, the directory role and the organization; its answer is
    quoted and explained.
    """
    probe = require(exchange_probe, "CBA-TOKEN-001", "no token, so Exchange was not asked")
    evidence.observed(
        "Exchange answer",
        {
            "cmdlet": probe.cmdlet,
            "url": probe.url,
            "status": probe.status,
            "summary": probe.summary,
            "error_code": probe.error_code,
            "error_message": probe.error_message,
            "request_id": probe.request_id,
            "elapsed_ms": round(probe.elapsed_ms, 1),
        },
    )
    evidence.expected(f"{probe.cmdlet} succeeds (HTTP 200)")
    if probe.ok:
        return
    if probe.status is None or probe.status == 429 or probe.status >= 500:
        # No verdict from Exchange: an outage or throttling proves nothing about the setup.
        raise FactUnavailable(
            Unavailable(
                "Exchange's answer",
                f"{probe.cmdlet} via {probe.url} -> {probe.status or 'no response'}: {probe.error_message}",
            )
        )
    token = tenant_facts.token if isinstance(tenant_facts.token, TokenAttempt) else None
    organization = tenant_facts.organization if isinstance(tenant_facts.organization, Organization) else None
    diagnosis = diagnose_exchange_error(probe, token, organization)
    evidence.add("diagnosis", diagnosis.as_evidence())
    request_id = f" (request-id {probe.request_id})" if probe.request_id else ""
    message = (
        f"Exchange refused {probe.cmdlet} for app {tenant_facts.app_id}: HTTP {probe.status} "
        f"{probe.error_code} {probe.error_message!r}{request_id}; expected success. {diagnosis.sentence()}"
    )
    _raise_diagnosed("CBA-EXO-001", message, diagnosis)
