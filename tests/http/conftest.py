"""Fixtures for the responses-based HTTP tests: settings, generated certificates, mocks that must all fire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses
from mockhttp import APP_ID, AUDITOR_ID, TENANT_ID, Waits, make_session

from cbacheck import certs
from cbacheck.collect.transport import CbaSession
from cbacheck.config import Settings


@pytest.fixture
def waits() -> Waits:
    return Waits()


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture(scope="session")
def app_cert(tmp_path_factory: pytest.TempPathFactory) -> certs.GeneratedCertificate:
    return certs.generate_certificate("CN=cbacheck-http-test", tmp_path_factory.mktemp("app-cert"))


@pytest.fixture(scope="session")
def auditor_cert(tmp_path_factory: pytest.TempPathFactory) -> certs.GeneratedCertificate:
    return certs.generate_certificate("CN=cbacheck-http-auditor", tmp_path_factory.mktemp("auditor-cert"))


@pytest.fixture
def settings(app_cert: certs.GeneratedCertificate, auditor_cert: certs.GeneratedCertificate) -> Settings:
    return Settings(
        tenant=TENANT_ID,
        app_id=APP_ID,
        organization="contoso.onmicrosoft.com",
        cert=app_cert.pem_path,
        auditor_credential="certificate",
        auditor_app_id=AUDITOR_ID,
        auditor_cert=auditor_cert.pem_path,
        retries=2,
        timeout_s=5.0,
    )


@pytest.fixture
def session(settings: Settings, waits: Waits) -> CbaSession:
    return make_session(settings, waits)
