"""The token and Exchange links of audited apps whose certificate the user supplied (`cbacheck audit --certificates`).

A file matches an app when one of the app's uploaded keyCredentials holds that certificate
(`AppRegistration.keys_matching`: customKeyIdentifier is the SHA-1 thumbprint,
https://learn.microsoft.com/graph/api/resources/keycredential). Each matched app then signs in as itself exactly
as `cbacheck run` does (`tokens.acquire_app_token`: client credentials with the certificate's assertion) and, with
a token, runs the read-only probe cmdlet (`exchange.probe_exchange`); apps side by side, at most MAX_PARALLEL at
once. The bearer is dropped after the probe; only the token's decoded claims are kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import requests

from cbacheck.auditfacts import AppLinks, Holder, SuppliedFile
from cbacheck.certs.folder import SuppliedCertificate
from cbacheck.collect.exchange import probe_exchange
from cbacheck.collect.rbac import exchange_tenant
from cbacheck.collect.tokens import acquire_app_token
from cbacheck.config import Settings
from cbacheck.facts import ExchangeProbe, TokenAttempt, Unavailable

MAX_PARALLEL = 6


def match_certificates(
    holders: Iterable[Holder], supplied: Iterable[SuppliedCertificate]
) -> tuple[dict[str, tuple[Holder, SuppliedCertificate]], tuple[SuppliedFile, ...]]:
    """appId (lower case) -> (holder, the first file holding one of its keys); and every file with what it matched."""
    registered = [h for h in holders if h.app is not None]
    pairs: dict[str, tuple[Holder, SuppliedCertificate]] = {}
    files = []
    for certificate in supplied:
        if certificate.material is None:
            files.append(SuppliedFile(certificate.name, "", problem=certificate.problem))
            continue
        matched = [h for h in registered if h.app is not None and h.app.keys_matching(certificate.thumbprint)]
        for holder in matched:
            pairs.setdefault(holder.sp.app_id.lower(), (holder, certificate))
        files.append(SuppliedFile(certificate.name, certificate.thumbprint, tuple(h.sp.app_id for h in matched)))
    return pairs, tuple(files)


def _links_of(
    settings: Settings, session: requests.Session, holder: Holder, certificate: SuppliedCertificate
) -> AppLinks:
    """One app's token attempt with its own identity, then (with a token) the Exchange probe."""
    assert certificate.material is not None  # match_certificates pairs only files that can sign
    as_app = dataclasses.replace(settings, app_id=holder.sp.app_id)
    token, access_token = acquire_app_token(as_app, session, certificate.material)
    exchange: ExchangeProbe | None | Unavailable = None
    if isinstance(token, TokenAttempt) and token.acquired and access_token:
        anchor = str(token.claims.get("tid") or settings.tenant or "")
        exchange = probe_exchange(as_app, session, access_token, exchange_tenant(settings, None), anchor_tenant=anchor)
    elif isinstance(token, Unavailable):
        exchange = Unavailable("the Exchange Online probe", f"no token to call Exchange with: {token.reason}")
    del access_token  # the token is not kept beyond the probe
    return AppLinks(certificate.name, certificate.thumbprint, token, exchange)


def collect_links(
    settings: Settings, session: requests.Session, pairs: dict[str, tuple[Holder, SuppliedCertificate]]
) -> dict[str, AppLinks]:
    """appId (lower case) -> the app's links, the apps side by side in a bounded pool."""
    if not pairs:
        return {}
    with ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="cbacheck-audit-links") as pool:
        futures = {
            app_id: pool.submit(_links_of, settings, session, holder, certificate)
            for app_id, (holder, certificate) in pairs.items()
        }
        return {app_id: future.result() for app_id, future in futures.items()}
