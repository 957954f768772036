"""Link 6, connecting: the organization value, the app's token and Exchange Online's answer (CBA-ORG/TOKEN/EXO)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from cbacheck import profiles, wellknown
from cbacheck.catalogue import chain_order
from cbacheck.chain import cannot_verify, follows_from, require
from cbacheck.config import GUID_RE, Settings, accepted_role_ids_for
from cbacheck.diagnosis import diagnose_exchange_error, diagnose_token_error
from cbacheck.facts import AppRoleAssignment, ExchangeProbe, Organization, ServicePrincipal, TenantFacts, TokenAttempt
from cbacheck.profiles import Profile

if TYPE_CHECKING:
    from cbacheck.evidence import Evidence

# Entra tolerates this much skew in a client assertion, and the requirement allows no more.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Whether Entra back-dates iat/nbf of the tokens it issues is UNCONFIRMED: Microsoft documents a random
# lifetime of 60 to 90 minutes (https://learn.microsoft.com/entra/identity-platform/access-tokens), so
# the 65-minute exp - iat of a sample token says nothing about a back-date. A token issued "now" may
# still carry an older iat, so the skew window is widened by five minutes on the side it can shift to;
# see docs/requirements.md (CBA-TOKEN-003).
ISSUER_BACKDATE = timedelta(minutes=5)
_TIME_IN_TEXT = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z?"


def _no_token(attempt: TokenAttempt) -> str:
    code = f"AADSTS{attempt.aadsts}" if attempt.aadsts is not None else attempt.error or "no answer"
    return f"the app obtained no token ({code})"


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


@pytest.mark.requirement("CBA-ORG-001")
def test_organization_is_initial_domain(
    organization: Organization, tenant_facts: TenantFacts, cba_settings: Settings, evidence: Evidence
) -> None:
    """Organization is the tenant's initial onmicrosoft.com domain

    Connect-ExchangeOnline -Organization takes the primary .onmicrosoft.com domain, the one Graph marks
    isInitial (https://learn.microsoft.com/powershell/module/exchangepowershell/connect-exchangeonline);
    nothing documents the tenant ID there. A custom domain connects but gives "cryptic permission
    issues", and another tenant's domain fails with AADSTS700016. When organization is not configured
    the check is skipped, naming the value to use: there is no script value to judge.
    """
    setting = tenant_facts.organization_setting
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
    evidence.expected(f"{organization.initial_domain}, the initial .onmicrosoft.com domain (case-insensitive)")
    if setting is None:
        pytest.skip(f"organization not configured; scripts should use -Organization {organization.initial_domain}")
    value = setting.strip().casefold()
    if value == organization.tenant_id.casefold():
        why = "the tenant ID, which Microsoft does not document for -Organization"
    elif value in {domain.casefold() for domain in organization.verified_domains}:
        why = "a custom domain of this tenant, which Exchange app-only sessions do not accept"
    else:
        why = f"not a domain of tenant {organization.tenant_id} (another tenant, or a typo)"
    assert value == organization.initial_domain.casefold(), (
        f"organization {setting!r} ({cba_settings.source('organization')}) is {why}; expected the initial "
        f"domain: use -Organization {organization.initial_domain}"
    )


@pytest.mark.requirement("CBA-TOKEN-001")
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
    diagnosis.fail("CBA-TOKEN-001", message)


def _consent_in_graph(facts: TenantFacts, profile: Profile = profiles.PROFILES[profiles.DEFAULT]) -> bool | None:
    """Whether Graph shows the profile's permission granted to the app (None when that is unknown)."""
    grants: tuple[AppRoleAssignment, ...] | None = facts.known("app_role_grants")
    if grants is None:
        return None
    resource: ServicePrincipal | None = facts.known_resource_sp(profile.permission.resource_app_id)
    resource_id = resource.object_id if resource is not None else None
    role_id = profile.permission.app_role_id or (resource.role_id(profile.permission.value) if resource else None)
    return any(
        grant.app_role_id == role_id and (resource_id is None or grant.resource_id == resource_id) for grant in grants
    )


def _expected_tenant_id(facts: TenantFacts) -> str | None:
    organization: Organization | None = facts.known("organization")
    if organization is not None:
        return organization.tenant_id.lower()
    if GUID_RE.match(facts.tenant):
        return facts.tenant.lower()
    return None


@dataclass(frozen=True)
class ClaimFinding:
    """One thing wrong with the token; `upstream` names the requirement Graph shows broken behind it."""

    text: str
    upstream: str = ""


@dataclass(frozen=True)
class GrantClaim:
    """A grant the token must carry, judged against what Graph shows when the token lacks it."""

    upstream: str  # the requirement that grants it
    propagating: str  # added when Graph shows the grant: the token may predate it
    absent: str  # added when Graph shows no grant: the failure follows from `upstream`

    def finding(self, text: str, shown: bool | None) -> ClaimFinding:
        if shown:
            return ClaimFinding(text + self.propagating)
        if shown is False:
            return ClaimFinding(text + self.absent, self.upstream)
        return ClaimFinding(text)  # Graph could not tell: the token is what is wrong


CONSENT_CLAIM = GrantClaim(
    "CBA-PERM-003",
    "; Graph shows the admin consent, so the grant may still be propagating or the token predates it "
    "(wait a few minutes and run again)",
    "; admin consent is not granted (CBA-PERM-003)",
)
ROLE_CLAIM = GrantClaim(
    "CBA-ROLE-001",
    "; Graph shows the role assigned, so the assignment may still be propagating or the token predates it",
    "; no accepted role is actively assigned at tenant scope (CBA-ROLE-001)",
)
# A token with no wids claim at all says nothing about propagation; Graph only decides whether the
# finding follows from CBA-ROLE-001.
NO_WIDS_CLAIM = GrantClaim("CBA-ROLE-001", "", "")


def _identity_findings(
    claims: dict[str, Any], resource: str, tenant_id: str | None, app_id: str, resource_app_id: str
) -> list[ClaimFinding]:
    """aud, tid and appid (azp in v2 tokens): each wrong one is the token's own finding."""
    aud = str(claims.get("aud", ""))
    tid = str(claims.get("tid", "")).lower()
    app_claim = str(claims.get("appid") or claims.get("azp") or "").lower()
    # (claim, value in the token, value compared, accepted values or None when nothing can be compared, expected)
    rules: tuple[tuple[str, str, str, set[str] | None, str | None], ...] = (
        ("aud", aud, aud.rstrip("/").lower(), {resource.lower(), resource_app_id}, resource),
        ("tid", tid, tid, None if tenant_id is None else {tenant_id}, tenant_id),
        ("appid", app_claim, app_claim, {app_id.lower()}, app_id),
    )
    return [
        ClaimFinding(f"{claim} is {value or 'missing'!r}, expected {expected!r}")
        for claim, value, compared, accepted, expected in rules
        if accepted is not None and compared not in accepted
    ]


def _grant_findings(
    attempt: TokenAttempt, facts: TenantFacts, accepted: frozenset[str], profile: Profile
) -> list[ClaimFinding]:
    """roles must carry the profile's permission, wids an accepted role; Graph tells propagation from absence."""
    findings = []
    value = profile.permission.value
    if value not in attempt.roles:
        text = f"roles is {list(attempt.roles)!r}, without {value}"
        findings.append(CONSENT_CLAIM.finding(text, _consent_in_graph(facts, profile)))
    # A profile whose RBAC is not read: only its Entra roles can be seen, so wids must carry one.
    if profile.exchange_rbac_collected and not facts.wids_needed(accepted, profile.rbac_key):
        return findings  # Exchange RBAC authorises the app: wids matter only on the Entra-role path
    if "wids" not in attempt.claims:
        text = "the token carries no wids claim, so Exchange sees no directory role"
        findings.append(NO_WIDS_CLAIM.finding(text, facts.holds_role_tenant_wide(accepted)))
    elif not set(attempt.wids) & accepted:
        names = ", ".join(f"{wellknown.DIRECTORY_ROLE_NAMES.get(r, r)} ({r})" for r in sorted(accepted))
        text = f"wids is {sorted(set(attempt.wids))!r}, with none of the accepted roles: {names}"
        findings.append(ROLE_CLAIM.finding(text, facts.holds_role_tenant_wide(accepted)))
    return findings


@pytest.mark.requirement("CBA-TOKEN-002")
def test_token_claims_are_right(
    token_attempt: TokenAttempt,
    tenant_facts: TenantFacts,
    cba_settings: Settings,
    cba_profile: Profile,
    evidence: Evidence,
) -> None:
    """The token carries the right audience, tenant, app, role and permission

    This is the effective verdict: configured (CBA-PERM-002) and granted (CBA-PERM-003, CBA-ROLE-001)
    only count once the token carries them. Exchange reads roles for Exchange.ManageAsApp and wids
    for the directory role; new grants reach tokens only after propagation.
    """
    attempt = require(token_attempt if token_attempt.acquired else None, "CBA-TOKEN-001", _no_token(token_attempt))
    resource = (
        profiles.token_resource_in(cba_profile, cba_settings.cloud) or cba_settings.cloud_endpoints.exchange_resource
    ).rstrip("/")
    resource_app_id = cba_profile.permission.resource_app_id
    accepted = accepted_role_ids_for(cba_settings, cba_profile)
    tenant_id = _expected_tenant_id(tenant_facts)
    evidence.observed("token claims", attempt.claims)
    evidence.expected(
        f"aud {resource} (or {resource_app_id}); tid {tenant_id or tenant_facts.tenant}; "
        f"appid {tenant_facts.app_id}; roles containing {cba_profile.permission.value}; wids containing one "
        f"of {', '.join(sorted(accepted))} (on the Entra-role path only, not for an app Exchange RBAC authorises)"
    )
    findings = _identity_findings(attempt.claims, resource, tenant_id, tenant_facts.app_id, resource_app_id)
    findings += _grant_findings(attempt, tenant_facts, accepted, cba_profile)
    if not findings and tenant_id is None:
        cannot_verify(
            "the tenant ID",
            f"tenant {tenant_facts.tenant!r} is a domain and the organization could not be read, so the "
            f"token's tid {str(attempt.claims.get('tid', '')).lower()!r} cannot be compared",
            permission="Organization.Read.All",
        )
    message = f"the token of app {tenant_facts.app_id} is not right: {'; '.join(f.text for f in findings)}"
    if findings and all(f.upstream for f in findings):
        # Every finding has a broken link behind it in Graph: the token only shows it.
        follows_from(min((f.upstream for f in findings), key=chain_order), message)
    assert not findings, message


def _refused_for_time(attempt: TokenAttempt, evidence: Evidence) -> str | None:
    """The finding when Entra refused the client assertion for its time (AADSTS700024), with the skew it shows."""
    if attempt.acquired or attempt.aadsts != 700024:
        return None
    text = attempt.error_description
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
    return (
        f"Entra refused the client assertion of app {attempt.client_id} as outside its valid time range"
        f"{skew}; expected the local clock within 5 minutes of Entra's: synchronise it (NTP)"
    )


@pytest.mark.requirement("CBA-TOKEN-003")
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
    refusal = _refused_for_time(token_attempt, evidence)
    assert refusal is None, refusal
    attempt = require(token_attempt if token_attempt.acquired else None, "CBA-TOKEN-001", _no_token(token_attempt))
    issued = _claim_time(attempt.claims, "iat") or _claim_time(attempt.claims, "nbf")
    if issued is None:
        cannot_verify("the token's issue time", "the token carries neither iat nor nbf, so no skew can be measured")
    offset = now - issued
    evidence.observed("token iat/nbf", issued.isoformat())
    evidence.observed("collected_at - iat (seconds)", round(offset.total_seconds(), 1))
    evidence.add(
        "rule",
        f"-{int(MAX_CLOCK_SKEW.total_seconds())} s <= collected_at - iat <= "
        f"{int((MAX_CLOCK_SKEW + ISSUER_BACKDATE).total_seconds())} s (widened by "
        f"{int(ISSUER_BACKDATE.total_seconds())} s in case Entra back-dates iat)",
    )
    low, high = -MAX_CLOCK_SKEW, MAX_CLOCK_SKEW + ISSUER_BACKDATE
    direction = "behind" if offset < low else "ahead of"
    assert low <= offset <= high, (
        f"the local clock is {abs(int(offset.total_seconds()))} s {direction} the token's issue time "
        f"{issued.isoformat()} (local {now.isoformat()}); expected it within "
        f"{int(MAX_CLOCK_SKEW.total_seconds())} s of Entra's: synchronise the host clock (NTP)"
    )


@pytest.mark.requirement("CBA-EXO-001")
def test_exchange_accepts_token(
    exchange_probe: ExchangeProbe | None, tenant_facts: TenantFacts, evidence: Evidence, cba_profile: Profile
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
        cannot_verify(
            "Exchange's answer",
            f"{probe.cmdlet} via {probe.url} -> {probe.status or 'no response'}: {probe.error_message}",
        )
    token = tenant_facts.known_token_of(cba_profile.name)
    # Another profile's refusal names its own least-privileged role, not Exchange Administrator.
    other_role = "" if cba_profile.name == profiles.DEFAULT else cba_profile.least_privileged_role
    role_name = wellknown.DIRECTORY_ROLE_NAMES.get(other_role, "")
    diagnosis = diagnose_exchange_error(
        probe,
        token,
        tenant_facts.known("organization"),
        role_to_assign=role_name,
        permission=cba_profile.permission.value,
    )
    evidence.add("diagnosis", diagnosis.as_evidence())
    request_id = f" (request-id {probe.request_id})" if probe.request_id else ""
    message = (
        f"Exchange refused {probe.cmdlet} for app {tenant_facts.app_id}: HTTP {probe.status} "
        f"{probe.error_code} {probe.error_message!r}{request_id}; expected success. {diagnosis.sentence()}"
    )
    diagnosis.fail("CBA-EXO-001", message)
