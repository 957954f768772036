"""Link 3, the local certificate uploaded to the app as a keyCredential (CBA-KEY-*)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from cbacheck.chain import require
from cbacheck.facts import AppRegistration, CertFacts, KeyCredential, TenantFacts

if TYPE_CHECKING:
    from cbacheck.config import Settings
    from cbacheck.evidence import Evidence

CERT_TYPE = "AsymmetricX509Cert"
CERT_USAGE = "Verify"
NO_APP = "the app registration does not exist"
NO_CERT = (
    "no certificate is configured (set cert), so there is nothing to look for among the app's keys; "
    "a tenant check without the certificate cannot prove link 3"
)


def _cert_summary(cert: CertFacts) -> dict[str, Any]:
    return {
        "path": str(cert.path),
        "subject": cert.subject,
        "sha1_thumbprint": cert.sha1_thumbprint,
        "notBefore": cert.not_before.isoformat(),
        "notAfter": cert.not_after.isoformat(),
    }


def key_problems(key: KeyCredential, facts: TenantFacts) -> list[str]:
    """Why one keyCredential cannot sign the app in now; empty when it can."""
    now = facts.collected_at
    problems = []
    if key.start is not None and key.start > now:
        problems.append(f"not valid before {key.start.isoformat()}")
    if key.end is not None and key.end <= now:
        problems.append(f"expired {key.end.isoformat()}")
    if key.type != CERT_TYPE:
        problems.append(f"type {key.type!r}, not {CERT_TYPE!r}")
    if key.usage != CERT_USAGE:
        problems.append(f"usage {key.usage!r}, not {CERT_USAGE!r}")
    return problems


@pytest.mark.requirement("CBA-KEY-001")
def test_certificate_uploaded_to_app(
    app: AppRegistration | None, configured_cert_facts: CertFacts | None, evidence: Evidence
) -> None:
    """The local certificate is uploaded to the app

    Entra checks the client assertion's signature against the app's keyCredentials; a certificate
    that is not among them fails with AADSTS700027. Matching uses the certificate bytes when Graph
    returned them, then both forms of customKeyIdentifier (hex or base64 of the SHA-1 thumbprint), never the
    display name.
    """
    application = require(app, "CBA-APP-001", NO_APP)
    cert = require(configured_cert_facts, "CBA-CERT-001", NO_CERT)
    matches = application.keys_matching(cert.sha1_thumbprint)
    evidence.observed("local certificate", _cert_summary(cert))
    evidence.observed("keyCredentials", [key.summary() for key in application.key_credentials])
    evidence.add("matching keyIds", [key.key_id for key in matches])
    evidence.expected(f"a keyCredential whose SHA-1 thumbprint is {cert.sha1_thumbprint}")
    uploaded = ", ".join(key.thumbprint or key.custom_key_identifier or "?" for key in application.key_credentials)
    assert matches, (
        f"app {application.app_id} has no keyCredential for the local certificate {cert.sha1_thumbprint} "
        f"({cert.subject}); it holds {len(application.key_credentials)} key(s)"
        + (f" with thumbprints {uploaded}" if uploaded else "")
        + f"; expected one with thumbprint {cert.sha1_thumbprint}"
    )


@pytest.mark.requirement("CBA-KEY-002")
def test_uploaded_key_valid_now(
    app: AppRegistration | None,
    configured_cert_facts: CertFacts | None,
    tenant_facts: TenantFacts,
    evidence: Evidence,
) -> None:
    """The uploaded key is valid now and usable for sign-in

    An uploaded key signs nobody in outside its startDateTime..endDateTime window (AADSTS700027
    "The key used is expired"), and only an AsymmetricX509Cert with usage Verify checks client
    assertions.
    """
    application = require(app, "CBA-APP-001", NO_APP)
    cert = require(configured_cert_facts, "CBA-CERT-001", NO_CERT)
    matches = require(
        application.keys_matching(cert.sha1_thumbprint) or None,
        "CBA-KEY-001",
        f"the local certificate {cert.sha1_thumbprint} is not uploaded to app {application.app_id}",
    )
    verdicts = {key.key_id: key_problems(key, tenant_facts) for key in matches}
    evidence.observed("matching keyCredentials", [key.summary() for key in matches])
    evidence.add("collected_at", tenant_facts.collected_at.isoformat())
    evidence.expected(
        f"startDateTime <= {tenant_facts.collected_at.isoformat()} < endDateTime, type {CERT_TYPE}, usage {CERT_USAGE}"
    )
    usable = [key_id for key_id, problems in verdicts.items() if not problems]
    reasons = "; ".join(f"keyCredential {key_id}: {', '.join(problems)}" for key_id, problems in verdicts.items())
    assert usable, (
        f"app {application.app_id} holds the certificate {cert.sha1_thumbprint} but no copy is usable now: "
        f"{reasons}; expected one valid at {tenant_facts.collected_at.isoformat()} with type {CERT_TYPE} "
        f"and usage {CERT_USAGE}"
    )


@pytest.mark.requirement("CBA-KEY-003")
def test_no_uploaded_key_expires_within_rotation_window(
    app: AppRegistration | None, tenant_facts: TenantFacts, cba_settings: Settings, evidence: Evidence
) -> None:
    """No uploaded key expires within expiry_days without a successor

    Read from the tenant alone, so it needs no private key: a key that expires soon stops every automation
    signing with it. `cbacheck audit` judges every Exchange app-only principal by the same rule (CBA-AUD-004).
    """
    application = require(app, "CBA-APP-001", NO_APP)
    now = tenant_facts.collected_at
    window = cba_settings.expiry_days
    soon = application.keys_expiring(now, window)
    evidence.observed("keyCredentials", [key.summary() for key in application.key_credentials])
    evidence.add("collected_at", now.isoformat())
    evidence.expected(
        f"no keyCredential with {now.isoformat()} < endDateTime <= now + {window} days (expiry_days), "
        "unless a key valid now outlives that window"
    )
    expiring = ", ".join(f"{key.key_id} on {key.end.date().isoformat()}" for key in soon if key.end is not None)
    assert not soon, (
        f"app {application.app_id} holds {len(soon)} key(s) expiring within {window} days: {expiring}; "
        f"expected none, or a successor key valid beyond {window} days (expiry_days)"
    )
