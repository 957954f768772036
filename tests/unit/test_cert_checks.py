"""The CBA-CERT-* checks called directly on real and hand-built CertFacts, with a real Evidence recorder."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cbacheck.checks import test_cert as checks
from certfactory import (
    NOW,
    PASSWORD,
    der_bytes,
    dsa_key,
    ec_key,
    key_pem,
    key_usage,
    make_certificate,
    pem_bytes,
    rsa_key,
    sha1_signed_certificate,
    write,
    write_all_formats,
)

from cbacheck import catalogue, certs
from cbacheck.chain import UpstreamFailure
from cbacheck.config import Settings
from cbacheck.evidence import Evidence
from cbacheck.facts import CertFacts, FactUnavailable

CHECKS: dict[str, Callable[..., None]] = {
    "CBA-CERT-001": checks.test_certificate_file_readable,
    "CBA-CERT-002": checks.test_private_key_matches_certificate,
    "CBA-CERT-003": checks.test_certificate_valid_now,
    "CBA-CERT-004": checks.test_certificate_not_expiring_within_rotation_window,
    "CBA-CERT-005": checks.test_key_is_rsa_2048_or_larger,
    "CBA-CERT-006": checks.test_signature_hash_sha256_or_stronger,
    "CBA-CERT-007": checks.test_certificate_lifetime_within_policy,
    "CBA-CERT-008": checks.test_private_key_protected_at_rest,
    "CBA-CERT-009": checks.test_key_usage_allows_digital_signature,
}
SETTINGS = Settings()  # expiry_days 30, max_lifetime_days 365


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> CertFacts:
    """A certificate that meets every link-1 rule: the PEM with its key, mode 0600."""
    files = write_all_formats(tmp_path_factory.mktemp("good"))
    return certs.read_certificate(files.pem_with_key, None, "option --cert", now=NOW)


def check(req_id: str, facts: CertFacts, settings: Settings = SETTINGS) -> Evidence:
    """Run one check as the plugin would: fixtures by parameter name. Returns what it recorded."""
    evidence = Evidence(req_id)
    available: dict[str, Any] = {"local_cert_facts": facts, "evidence": evidence, "cba_settings": settings}
    function = CHECKS[req_id]
    function(**{name: available[name] for name in inspect.signature(function).parameters})
    return evidence


def passes(req_id: str, facts: CertFacts, settings: Settings = SETTINGS) -> dict[str, Any]:
    """Run a check that must pass; it must also record what it saw, the rule and which certificate it judged."""
    record = check(req_id, facts, settings).as_dict()
    assert record["observed"], f"{req_id} passed recording nothing it observed"
    assert record["expected"], f"{req_id} passed recording no rule"
    assert record["details"]["sha1_thumbprint"] == facts.sha1_thumbprint
    return record


def failure(req_id: str, facts: CertFacts, settings: Settings = SETTINGS) -> str:
    """The finding sentence of a failing check; it names the certificate."""
    with pytest.raises(AssertionError) as caught:
        check(req_id, facts, settings)
    assert not isinstance(caught.value, UpstreamFailure), f"{req_id} should fail on its own: {caught.value}"
    message = str(caught.value).splitlines()[0]
    assert facts.subject in message
    assert facts.sha1_thumbprint in message
    assert "expected" in message
    return message


def upstream(req_id: str, facts: CertFacts, settings: Settings = SETTINGS) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as caught:
        check(req_id, facts, settings)
    return caught.value


def real(tmp_path: Path, name: str, data: bytes, password: str | None = None, mode: int = 0o600) -> CertFacts:
    return certs.read_certificate(write(tmp_path / name, data, mode), password, "option --cert", now=NOW)


# --- The checks agree with the catalogue -----------------------------------------------------------


@pytest.mark.parametrize("req_id", sorted(CHECKS))
def test_marker_names_only_the_id_and_the_title_matches_the_catalogue(req_id: str) -> None:
    function = CHECKS[req_id]
    requirement = catalogue.CATALOGUE[req_id]
    (mark,) = [m for m in function.pytestmark if m.name == "requirement"]  # type: ignore[attr-defined]
    assert mark.args == (req_id,)
    assert mark.kwargs == {}, "severity and fix come from the catalogue"
    assert (function.__doc__ or "").splitlines()[0] == requirement.title


def test_every_cert_requirement_has_exactly_one_check() -> None:
    in_catalogue = {r for r in catalogue.CATALOGUE if r.startswith("CBA-CERT-")}
    marked = {
        m.args[0]
        for name, function in vars(checks).items()
        if name.startswith("test_")
        for m in getattr(function, "pytestmark", [])
        if m.name == "requirement"
    }
    assert marked == in_catalogue == set(CHECKS)


# --- A good certificate passes everything and leaves evidence ---------------------------------------


@pytest.mark.parametrize("req_id", sorted(CHECKS))
def test_good_certificate_passes_with_evidence(good: CertFacts, req_id: str) -> None:
    recorded = passes(req_id, good)
    assert recorded["details"]["sha256_thumbprint"] == good.sha256_thumbprint
    assert recorded["details"]["subject"] == "CN=exo-automation"


def test_generated_certificate_passes_every_check(tmp_path: Path) -> None:
    made = certs.generate_certificate("CN=exo-automation", tmp_path, password=PASSWORD, now=NOW)
    for path in (made.pem_path, made.pfx_path):
        assert path is not None
        facts = certs.read_certificate(path, PASSWORD, "option --cert", now=NOW)
        for req_id in CHECKS:
            passes(req_id, facts)


# --- CBA-CERT-001 ------------------------------------------------------------------------------------


def test_001_records_the_public_certificate(good: CertFacts) -> None:
    recorded = check("CBA-CERT-001", good).as_dict()
    assert recorded["observed"]["der_base64"] == good.der_base64
    assert recorded["observed"]["format"] == "pem"
    assert recorded["details"]["file"]["from"] == "option --cert"


def test_001_fails_on_facts_without_a_certificate(good: CertFacts) -> None:
    hollow = dataclasses.replace(good, der_base64="", sha1_thumbprint="")
    with pytest.raises(AssertionError, match="gave no usable certificate"):
        check("CBA-CERT-001", hollow)


# --- CBA-CERT-002 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["der_cer", "pem_cer"])
def test_002_fails_without_a_key(tmp_path: Path, name: str) -> None:
    files = write_all_formats(tmp_path)
    facts = certs.read_certificate(getattr(files, name), None, "option --cert", now=NOW)
    message = failure("CBA-CERT-002", facts)
    assert "has no private key" in message
    assert "only the certificate" in message


def test_002_fails_when_the_key_belongs_to_another_certificate(tmp_path: Path) -> None:
    facts = real(tmp_path, "mismatch.pem", pem_bytes(make_certificate(rsa_key())) + key_pem(rsa_key(3072)))
    message = failure("CBA-CERT-002", facts)
    assert "does not belong" in message


def check_observed(req_id: str, facts: CertFacts, label: str) -> Any:
    evidence = Evidence(req_id)
    with pytest.raises(AssertionError):
        CHECKS[req_id](local_cert_facts=facts, evidence=evidence)
    return evidence.as_dict()["observed"][label]


def test_002_records_why_the_key_does_not_match(tmp_path: Path) -> None:
    facts = real(tmp_path, "mismatch.pem", pem_bytes(make_certificate(rsa_key())) + key_pem(rsa_key(3072)))
    assert check_observed("CBA-CERT-002", facts, "private_key_matches") is False
    assert "does not belong" in check_observed("CBA-CERT-002", facts, "reason")


# --- CBA-CERT-003 / 004 -------------------------------------------------------------------------------


def test_003_fails_for_an_expired_certificate(tmp_path: Path) -> None:
    cert = make_certificate(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=35))
    message = failure("CBA-CERT-003", real(tmp_path, "expired.cer", der_bytes(cert)))
    assert "expired" in message
    assert (NOW - timedelta(days=35)).strftime("%Y-%m-%d") in message


def test_003_fails_for_a_not_yet_valid_certificate(tmp_path: Path) -> None:
    cert = make_certificate(not_before=NOW + timedelta(days=2), not_after=NOW + timedelta(days=100))
    message = failure("CBA-CERT-003", real(tmp_path, "future.cer", der_bytes(cert)))
    assert "not valid until" in message
    assert "host clock" in message


def test_003_boundaries_use_the_read_time_not_the_wall_clock(good: CertFacts) -> None:
    at_start = passes("CBA-CERT-003", dataclasses.replace(good, read_at=good.not_before))
    assert at_start["expected"] == [f"notBefore <= now < notAfter, now = {good.not_before.isoformat()}"]
    with pytest.raises(AssertionError, match="expired"):
        check("CBA-CERT-003", dataclasses.replace(good, read_at=good.not_after))


def test_004_fails_inside_the_rotation_window(good: CertFacts) -> None:
    soon = dataclasses.replace(good, not_after=good.read_at + timedelta(days=10))
    message = failure("CBA-CERT-004", soon)
    assert "10 days after the check" in message
    assert "at least 30 days" in message


def test_004_window_comes_from_settings(good: CertFacts) -> None:
    soon = dataclasses.replace(good, not_after=good.read_at + timedelta(days=10))
    record = passes("CBA-CERT-004", soon, Settings(expiry_days=7))
    assert record["expected"] == ["at least 7 days left (expiry_days, default)"]
    assert record["observed"]["days_left"] == 10.0
    with pytest.raises(AssertionError, match="at least 11 days"):
        check("CBA-CERT-004", soon, Settings(expiry_days=11))


def test_004_follows_from_003_when_already_expired(tmp_path: Path) -> None:
    cert = make_certificate(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=35))
    failed = upstream("CBA-CERT-004", real(tmp_path, "expired.cer", der_bytes(cert)))
    assert failed.upstream == "CBA-CERT-003"
    assert str(failed).startswith("follows from CBA-CERT-003: ")


# --- CBA-CERT-005 / 006 -------------------------------------------------------------------------------


def test_005_fails_for_1024_bit_rsa(tmp_path: Path) -> None:
    message = failure("CBA-CERT-005", real(tmp_path, "small.cer", der_bytes(make_certificate(rsa_key(1024)))))
    assert "1024 bits" in message
    assert "at least 2048" in message


@pytest.mark.parametrize(("make_key", "key_type"), [(ec_key, "EC"), (dsa_key, "DSA")])
def test_005_fails_for_non_rsa_keys(tmp_path: Path, make_key: Callable[[], Any], key_type: str) -> None:
    key = make_key()
    facts = real(tmp_path, "other.pem", pem_bytes(make_certificate(key)) + key_pem(key))
    message = failure("CBA-CERT-005", facts)
    assert f"has a {key_type} key; expected RSA" in message


def test_005_passes_for_larger_rsa(good: CertFacts) -> None:
    observed = passes("CBA-CERT-005", dataclasses.replace(good, key_size=4096))["observed"]
    assert observed == {"key_type": "RSA", "key_size": 4096}


def test_006_fails_for_sha1(tmp_path: Path) -> None:
    message = failure("CBA-CERT-006", real(tmp_path, "sha1.cer", der_bytes(sha1_signed_certificate())))
    assert "signed with sha1" in message


@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
def test_006_passes_for_stronger_hashes(good: CertFacts, algorithm: str) -> None:
    assert passes("CBA-CERT-006", dataclasses.replace(good, signature_hash=algorithm))["observed"] == {
        "signature_hash": algorithm
    }


def test_006_unknown_algorithm_is_not_strong(good: CertFacts) -> None:
    message = failure("CBA-CERT-006", dataclasses.replace(good, signature_hash="1.2.840.113549.1.1.4"))
    assert "1.2.840.113549.1.1.4" in message


def test_006_hashless_signature_passes_only_for_eddsa(good: CertFacts) -> None:
    eddsa = passes("CBA-CERT-006", dataclasses.replace(good, signature_hash=None, key_type="Ed25519", key_size=None))
    assert eddsa["observed"] == {"signature_hash": None}
    with pytest.raises(AssertionError, match="names no signature hash"):
        check("CBA-CERT-006", dataclasses.replace(good, signature_hash=None))


# --- CBA-CERT-007 --------------------------------------------------------------------------------------


def test_007_fails_for_a_two_year_certificate(good: CertFacts) -> None:
    long_lived = dataclasses.replace(good, not_after=good.not_before + timedelta(days=730))
    message = failure("CBA-CERT-007", long_lived)
    assert "730.0 days" in message
    assert "at most 365 days" in message


def test_007_exactly_the_maximum_passes_and_the_maximum_comes_from_settings(good: CertFacts) -> None:
    one_year = dataclasses.replace(good, not_after=good.not_before + timedelta(days=365))
    assert passes("CBA-CERT-007", one_year)["observed"]["lifetime_days"] == 365.0
    with pytest.raises(AssertionError, match="at most 90 days"):
        check("CBA-CERT-007", one_year, Settings(max_lifetime_days=90))


# --- CBA-CERT-008 --------------------------------------------------------------------------------------


def test_008_passes_for_encrypted_pem_and_pfx_even_when_world_readable(tmp_path: Path) -> None:
    files = write_all_formats(tmp_path)
    for path in (files.encrypted_pem, files.pfx_with_password):
        facts = certs.read_certificate(path, PASSWORD, "option --cert", now=NOW)
        assert facts.file_mode == 0o644
        observed = passes("CBA-CERT-008", facts)["observed"]
        assert observed["key_encrypted"] is True and observed["file_mode"] == "0644"


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_008_passes_for_unencrypted_key_readable_by_owner_only(tmp_path: Path, mode: int) -> None:
    key = rsa_key()
    facts = real(tmp_path, "plain.pem", pem_bytes(make_certificate(key)) + key_pem(key), mode=mode)
    observed = passes("CBA-CERT-008", facts)["observed"]
    assert observed["key_encrypted"] is False and observed["file_mode"] == f"{mode:04o}"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_008_fails_for_unencrypted_key_open_to_group_or_others(tmp_path: Path, mode: int) -> None:
    key = rsa_key()
    facts = real(tmp_path, "plain.pem", pem_bytes(make_certificate(key)) + key_pem(key), mode=mode)
    message = failure("CBA-CERT-008", facts)
    assert f"file mode is {mode:04o}" in message


def test_008_unencrypted_pfx_is_judged_by_its_mode(tmp_path: Path) -> None:
    files = write_all_formats(tmp_path)
    facts = certs.read_certificate(files.pfx_without_password, None, "option --cert", now=NOW)
    assert passes("CBA-CERT-008", facts)["observed"]["private_key_present"] is True
    failure("CBA-CERT-008", dataclasses.replace(facts, file_mode=0o644))


def test_008_without_a_key_follows_from_002(tmp_path: Path) -> None:
    files = write_all_formats(tmp_path)
    facts = certs.read_certificate(files.der_cer, None, "option --cert", now=NOW)
    failed = upstream("CBA-CERT-008", facts)
    assert failed.upstream == "CBA-CERT-002"
    assert "holds no private key" in failed.reason


def test_008_unknown_mode_of_an_unencrypted_key_is_unavailable_not_passed(good: CertFacts) -> None:
    with pytest.raises(FactUnavailable, match="could not be read"):
        check("CBA-CERT-008", dataclasses.replace(good, file_mode=None))


# --- CBA-CERT-009 --------------------------------------------------------------------------------------


def test_009_fails_when_key_usage_lacks_digital_signature(tmp_path: Path) -> None:
    cert = make_certificate(usage=key_usage(digital_signature=False, key_encipherment=True))
    message = failure("CBA-CERT-009", real(tmp_path, "enc.cer", der_bytes(cert)))
    assert "has KeyUsage keyEncipherment" in message


def test_009_passes_when_key_usage_is_absent(tmp_path: Path) -> None:
    facts = real(tmp_path, "bare.cer", der_bytes(make_certificate(with_key_usage=False)))
    assert passes("CBA-CERT-009", facts)["observed"]["key_usage"] == "(extension absent)"


def test_009_empty_key_usage_fails(good: CertFacts) -> None:
    message = failure("CBA-CERT-009", dataclasses.replace(good, key_usage=()))
    assert "(empty)" in message


# --- Evidence is JSON data and free of secrets --------------------------------------------------------


@pytest.mark.parametrize("req_id", sorted(CHECKS))
def test_evidence_never_holds_the_key(tmp_path: Path, req_id: str) -> None:
    files = write_all_formats(tmp_path)
    facts = certs.read_certificate(files.encrypted_pem, PASSWORD, "option --cert", now=NOW)
    text = repr(check(req_id, facts).as_dict())
    assert "PRIVATE KEY" not in text
    assert PASSWORD not in text
