"""The AADSTS and Exchange error catalogue: every branch, and that every row points somewhere real."""

from __future__ import annotations

import dataclasses

import pytest
import tenantfactory as tf

from cbacheck import catalogue, wellknown
from cbacheck.aadsts import AADSTS, find_entry
from cbacheck.config import setting_fields
from cbacheck.diagnosis import (
    EXCHANGE,
    diagnose_exchange_error,
    diagnose_token_error,
    organization_in_url,
)

KEY_NOT_FOUND = (
    "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on "
    "application. [Reason - The key was not found., Thumbprint of key used by client: 'ABC']"
)
KEY_EXPIRED = (
    "AADSTS700027: Client assertion contains an invalid signature. [Reason - The key used is expired. Thumbprint "
    "of key used by client: 'ABC', Found key 'Start=01/01/2025 00:00:00, End=01/01/2026 00:00:00']"
)
KEY_TOO_SMALL = "AADSTS700027: RSA key size 1024 is less than the minimum required 2048 bits"
SIGNATURE_ONLY = "AADSTS700027: Client assertion failed signature validation."


@pytest.mark.parametrize(
    ("code", "text", "requirement", "name_part"),
    [
        (700027, KEY_NOT_FOUND, "CBA-KEY-001", "key not registered"),
        (700027, KEY_EXPIRED, "CBA-KEY-002", "key expired"),
        (700027, KEY_TOO_SMALL, "CBA-CERT-005", "RSA key too small"),
        (700027, SIGNATURE_ONLY, "CBA-KEY-001", "InvalidClientAssertion"),
        (
            700016,
            "AADSTS700016: Application with identifier 'x' was not found in the directory 'y'.",
            "CBA-APP-001",
            "UnauthorizedClient_DoesNotMatchRequest",
        ),
        (
            7000112,
            "AADSTS7000112: Application 'x' is disabled.",
            "CBA-APP-002",
            "UnauthorizedClientApplicationDisabled",
        ),
        (90002, "AADSTS90002: Tenant 'token' not found.", "", "InvalidTenantName"),
        (
            900023,
            "AADSTS900023: Specified tenant identifier 'x y' is neither a valid DNS name, nor a valid external domain.",
            "",
            "InvalidTenantIdentifier",
        ),
        (50049, "AADSTS50049: Unknown or invalid instance.", "", "NoSuchInstanceForDiscovery"),
        (
            500011,
            "AADSTS500011: The resource principal named https://outlook.office365.com was not found in the "
            "tenant named Contoso.",
            "CBA-PERM-001",
            "InvalidResourceServicePrincipalNotFound",
        ),
        (
            650052,
            "AADSTS650052: The app needs access to a service that your organization has not subscribed to.",
            "CBA-PERM-001",
            "not subscribed",
        ),
        (
            650051,
            "AADSTS650051: Claim is invalid: c97b873f does not exist on resource application "
            "00000002-0000-0ff1-ce00-000000000000",
            "CBA-PERM-002",
            "Claim is invalid",
        ),
        (
            700024,
            "AADSTS700024: Client assertion is not within its valid time range.",
            "CBA-TOKEN-003",
            "SignedAssertionInvalidTimeRange",
        ),
        (50027, "AADSTS50027: JWT token is not within its valid time range.", "CBA-TOKEN-003", "time range"),
        (50027, "AADSTS50027: Invalid JWT token. Token format not valid.", "", "InvalidJwtToken"),
        (50048, "AADSTS50048: Subject mismatches Issuer claim in the client assertion.", "", "SubjectMismatchesIssuer"),
        (50012, "AADSTS50012: Client assertion contains an invalid signature.", "CBA-KEY-001", "AuthenticationFailed"),
        (
            700030,
            "AADSTS700030: Invalid certificate - subject name in certificate isn't authorized.",
            "CBA-KEY-001",
            "InvalidCertificate",
        ),
        (
            1000502,
            "AADSTS1000502: Certificate is outside its validity window.",
            "CBA-CERT-003",
            "CertificateIsOutsideValidityWindow",
        ),
        (7000214, "AADSTS7000214: Certificate has been revoked.", "CBA-KEY-002", "revoked"),
        (7000277, "AADSTS7000277: Certificate has been revoked.", "CBA-KEY-002", "revoked"),
        (7000274, "AADSTS7000274: Certificate error.", "CBA-KEY-002", "Certificate error"),
        (
            7000218,
            "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
            "CBA-CERT-002",
            "Missing client credential",
        ),
        (7000215, "AADSTS7000215: Invalid client secret provided.", "CBA-APP-004", "InvalidClientSecret"),
        (7000222, "AADSTS7000222: The provided client secret keys are expired.", "CBA-APP-004", "ExpiredKeys"),
        (53003, "AADSTS53003: Access has been blocked by Conditional Access policies.", "", "BlockedByConditional"),
        (70011, "AADSTS70011: The provided value for the input parameter 'scope' is not valid.", "", "InvalidScope"),
    ],
)
def test_every_aadsts_code_maps_to_its_cause_and_link(code: int, text: str, requirement: str, name_part: str) -> None:
    diagnosis = diagnose_token_error(tf.token_failure(code, text))
    assert diagnosis.code == f"AADSTS{code}"
    assert diagnosis.requirement == requirement
    assert name_part in diagnosis.name
    assert diagnosis.microsoft_text == text
    assert diagnosis.cause and diagnosis.next_step and diagnosis.doc.startswith("https://learn.microsoft.com/")


WEAK_KEY_MULTI = (
    "AADSTS70002: Error validating credentials. AADSTS50032: RSA key size 1024 is less than the minimum required "
    "2048 bits."
)


def test_every_code_of_a_multi_code_answer_is_looked_up_most_specific_first() -> None:
    attempt = dataclasses.replace(tf.token_failure(None, WEAK_KEY_MULTI), error_codes=(70002, 50032))
    assert attempt.aadsts == 50032 and attempt.aadsts_codes == (50032, 70002)
    diagnosis = diagnose_token_error(attempt)
    assert diagnosis.code == "AADSTS50032" and diagnosis.requirement == "CBA-CERT-005"
    assert diagnosis.name == "WeakRsaKey" and diagnosis.microsoft_text == WEAK_KEY_MULTI
    # The same answer without error_codes: both codes are read from the text.
    assert diagnose_token_error(tf.token_failure(None, WEAK_KEY_MULTI)).requirement == "CBA-CERT-005"


def test_the_wrapper_code_alone_still_has_a_row() -> None:
    diagnosis = diagnose_token_error(tf.token_failure(70002, "AADSTS70002: Error validating credentials."))
    assert diagnosis.code == "AADSTS70002" and diagnosis.requirement == "CBA-KEY-001"


def test_missing_exchange_resource_leads_with_the_documented_manifest_remedy() -> None:
    text = "AADSTS500011: The resource principal named https://outlook.office365.com was not found."
    diagnosis = diagnose_token_error(tf.token_failure(500011, text))
    assert diagnosis.next_step.startswith("Add Office 365 Exchange Online > Exchange.ManageAsApp to the app's manifest")
    assert diagnosis.next_step.index("manifest") < diagnosis.next_step.index("subscription")
    assert "connect-exo-powershell-managed-identity" in diagnosis.doc


def test_missing_service_principal_is_7000229_to_app_002() -> None:
    text = f"AADSTS7000229: The client application {tf.APP_ID} is missing service principal in the tenant x."
    diagnosis = diagnose_token_error(tf.token_failure(7000229, text))
    assert diagnosis.code == "AADSTS7000229" and diagnosis.requirement == "CBA-APP-002"


def test_tenant_errors_name_the_tenant_setting() -> None:
    assert diagnose_token_error(tf.token_failure(90002, "AADSTS90002: Tenant 'x' not found.")).setting == "tenant"
    assert "check the setting 'tenant'" in diagnose_token_error(tf.token_failure(90002, "x")).sentence()


def test_code_found_in_text_when_error_codes_are_missing() -> None:
    diagnosis = diagnose_token_error(tf.token_failure(None, KEY_EXPIRED))
    assert diagnosis.code == "AADSTS700027" and diagnosis.requirement == "CBA-KEY-002"


def test_unlisted_code_keeps_microsofts_text_and_names_no_requirement() -> None:
    diagnosis = diagnose_token_error(tf.token_failure(123456, "AADSTS123456: Something new.", error="invalid_grant"))
    assert diagnosis.code == "AADSTS123456" and diagnosis.requirement == "" and diagnosis.name == "invalid_grant"
    assert "AADSTS123456: Something new." in diagnosis.sentence()


def test_error_without_any_code_is_still_explained() -> None:
    diagnosis = diagnose_token_error(tf.token_failure(None, "temporarily unavailable", error="temporarily_unavailable"))
    assert diagnosis.code == "" and "temporarily unavailable" in diagnosis.sentence()


def test_sentence_names_code_text_cause_requirement_step_and_doc() -> None:
    sentence = diagnose_token_error(tf.token_failure(700027, KEY_NOT_FOUND)).sentence()
    for part in (
        "AADSTS700027",
        "The key was not found",
        "likely cause:",
        "probably broken: CBA-KEY-001",
        "The local certificate is uploaded to the app",
        "next step:",
        "see https://",
    ):
        assert part in sentence


def test_text_variant_wins_over_the_codes_fallback_row() -> None:
    assert find_entry(700027, KEY_EXPIRED.upper()) is not None
    assert find_entry(700027, KEY_EXPIRED.upper()).requirement == "CBA-KEY-002"  # type: ignore[union-attr]
    assert find_entry(424242, "") is None


def test_every_row_points_at_a_catalogue_requirement_and_a_real_setting() -> None:
    settings = {spec.name for spec in setting_fields()}
    for row in (*AADSTS, *EXCHANGE):
        assert row.requirement == "" or row.requirement in catalogue.CATALOGUE, row
        assert row.cause and row.next_step and row.doc.startswith("https://"), row
    for aadsts_row in AADSTS:
        assert aadsts_row.setting == "" or aadsts_row.setting in settings, aadsts_row


def test_every_code_has_exactly_one_fallback_row() -> None:
    codes = {row.code for row in AADSTS}
    for code in codes:
        assert sum(1 for row in AADSTS if row.code == code and not row.text) == 1, code


# --- Exchange ------------------------------------------------------------------------------------


def test_role_not_supported_points_at_role_001() -> None:
    text = wellknown.EXCHANGE_ROLE_NOT_SUPPORTED.format(app_id=tf.APP_ID)
    diagnosis = diagnose_exchange_error(tf.probe_error(401, text))
    assert diagnosis.requirement == "CBA-ROLE-001" and diagnosis.microsoft_text == text and diagnosis.code == "EXO 401"


def test_no_management_roles_points_at_role_001() -> None:
    text = (
        "[FailureCategory=AuthZ-CmdletAccessDeniedException] The application x isn't assigned to any management roles."
    )
    assert diagnose_exchange_error(tf.probe_error(403, text)).requirement == "CBA-ROLE-001"


def test_cmdlet_not_allowed_is_a_role_too_weak_for_the_cmdlet() -> None:
    text = wellknown.EXCHANGE_CMDLET_NOT_ALLOWED.format(cmdlet="Get-Mailbox")
    diagnosis = diagnose_exchange_error(tf.probe_error(401, text))
    assert diagnosis.requirement == "" and "does not include this cmdlet" in diagnosis.cause
    assert "exchange_cmdlet" in diagnosis.next_step


def test_cmdlet_not_recognised_is_explained() -> None:
    diagnosis = diagnose_exchange_error(tf.probe_error(400, "The term 'Get-Foo' is not recognized as a cmdlet."))
    assert diagnosis.name == "Cmdlet not available"


def test_bare_401_without_a_token_points_at_the_token_claims() -> None:
    diagnosis = diagnose_exchange_error(tf.probe_error(401, ""))
    assert diagnosis.requirement == "CBA-TOKEN-002" and "CBA-PERM-003" in diagnosis.cause


def test_bare_401_with_manage_as_app_in_the_token_points_at_the_role() -> None:
    diagnosis = diagnose_exchange_error(tf.probe_error(401, ""), tf.token())
    assert diagnosis.requirement == "CBA-ROLE-001"


def test_bare_401_with_token_lacking_manage_as_app_points_at_the_token_claims() -> None:
    diagnosis = diagnose_exchange_error(tf.probe_error(401, ""), tf.token(roles=None))
    assert diagnosis.requirement == "CBA-TOKEN-002"


def test_403_and_404_and_unknown_answers() -> None:
    assert diagnose_exchange_error(tf.probe_error(403, "Forbidden")).code == "EXO 403"
    not_found = diagnose_exchange_error(tf.probe_error(404, "Tenant not found", code="NotFound"))
    assert not_found.requirement == "CBA-ORG-001"
    teapot = diagnose_exchange_error(tf.probe_error(418, "short and stout", code="Teapot"))
    assert teapot.requirement == "" and teapot.name == "Teapot" and teapot.microsoft_text == "short and stout"


def test_evidence_form_is_plain_strings() -> None:
    record = diagnose_token_error(tf.token_failure(700027, KEY_NOT_FOUND)).as_evidence()
    assert record["requirement"] == "CBA-KEY-001" and all(isinstance(v, str) for v in record.values())


def test_refusal_for_an_organization_other_than_the_initial_domain_points_at_org_001() -> None:
    probe = tf.probe_error(401, "The organization in the request does not match the tenant of the access token.")
    probe = dataclasses.replace(probe, url="https://outlook.office365.com/adminapi/beta/contoso.com/InvokeCommand")
    diagnosis = diagnose_exchange_error(probe, tf.token(), tf.organization())
    assert diagnosis.requirement == "CBA-ORG-001" and "'contoso.com'" in diagnosis.cause
    assert tf.INITIAL_DOMAIN in diagnosis.next_step


def test_refusal_for_the_initial_domain_is_not_blamed_on_the_organization() -> None:
    probe = tf.probe_error(401, "")
    probe = dataclasses.replace(
        probe, url=f"https://outlook.office365.com/adminapi/beta/{tf.INITIAL_DOMAIN}/InvokeCommand"
    )
    assert diagnose_exchange_error(probe, tf.token(), tf.organization()).requirement == "CBA-ROLE-001"


def test_organization_segment_is_read_from_the_admin_api_url() -> None:
    assert (
        organization_in_url(f"https://outlook.office365.com/adminapi/beta/{tf.TENANT_ID}/InvokeCommand") == tf.TENANT_ID
    )
    assert organization_in_url("https://outlook.office365.com/elsewhere") is None


def test_app_not_found_is_refined_by_the_collected_facts() -> None:
    attempt = tf.token_failure(700016, "AADSTS700016: Application with identifier 'x' was not found.")
    assert diagnose_token_error(attempt).requirement == "CBA-APP-001"
    assert diagnose_token_error(attempt, tf.tenant(app=None, app_sp=None)).requirement == "CBA-APP-001"
    assert diagnose_token_error(attempt, tf.tenant(app_sp=None)).requirement == "CBA-APP-002"
    elsewhere = diagnose_token_error(attempt, tf.tenant())
    assert elsewhere.requirement == "" and elsewhere.setting == "tenant"


def test_exchange_status_fallbacks_are_rows_and_the_last_row_takes_any_answer() -> None:
    fallbacks = {(row.status, row.manage_as_app_in_token): row.requirement for row in EXCHANGE if not row.text}
    assert fallbacks == {
        (401, True): "CBA-ROLE-001",
        (401, False): "CBA-TOKEN-002",
        (403, None): "",
        (404, None): "CBA-ORG-001",
        (None, None): "",
    }
    last = EXCHANGE[-1]
    answers = [(text, status, held) for text in ("", "odd") for status in (None, 418) for held in (True, False)]
    assert all(last.matches(*answer) for answer in answers)


def test_a_fallback_row_is_named_by_exchanges_own_error_code_when_it_gave_one() -> None:
    assert diagnose_exchange_error(tf.probe_error(403, "", code="")).name == "Forbidden"
    assert diagnose_exchange_error(tf.probe_error(403, "", code="AccessDenied")).name == "AccessDenied"
    text_row = diagnose_exchange_error(tf.probe_error(401, "x is not recognized", code="BadCmdlet"))
    assert text_row.name == "Cmdlet not available"
