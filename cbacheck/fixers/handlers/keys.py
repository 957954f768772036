"""Handlers for certificates and keys: create a certificate, upload it as a keyCredential, remove keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from cbacheck import certs
from cbacheck.config import Settings
from cbacheck.errors import CbaCheckError, CertificateError, FixError
from cbacheck.facts import AppRegistration
from cbacheck.fixers.actions import AddKeyCredential, CreateCertificate, Ref, RemoveKeyCredentials
from cbacheck.fixers.handlers.base import ApplyContext, Handler, ProbeContext, Reading, Sent
from cbacheck.fixers.verify import CREATED_BY_FIX, Probe, token_missing

# A PATCH of keyCredentials replaces the whole collection
# (https://learn.microsoft.com/graph/applications-how-to-add-certificate), so a read that lags the upload
# of this run would delete the new key too. Whether Graph reads of applications lag writes is UNCONFIRMED;
# the read is repeated after these pauses (seconds) before the removal gives up.
KEY_READ_RETRY_S: tuple[float, ...] = (1.0, 2.0, 4.0)
pause: Callable[[float], None] = time.sleep
# "The endDateTime can be a maximum of one year from the startDateTime"
# (https://learn.microsoft.com/graph/applications-how-to-add-certificate); 365 days stays inside it.
KEY_MAX_LIFETIME = timedelta(days=365)


def key_window(der_base64: str, now: datetime) -> tuple[datetime, datetime]:
    """The window an uploaded key carries: the certificate's own, cut to Graph's one-year limit.

    A certificate valid for longer gets the year of it that is usable now: ending at notAfter when
    less than a year is left, otherwise starting now (or at notBefore when that is later).
    """
    try:
        certificate = x509.load_der_x509_certificate(base64.b64decode(der_base64, validate=True))
    except (binascii.Error, ValueError) as err:
        raise FixError("the certificate to upload is not valid base64 DER") from err
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    start = max(not_before, not_after - KEY_MAX_LIFETIME)
    if start <= now:
        return start, not_after
    start = max(not_before, now.replace(microsecond=0))
    return start, min(not_after, start + KEY_MAX_LIFETIME)


def graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _certificate_outputs(pem: Path, cer: Path, der_base64: str, sha1: str, not_after: str) -> dict[str, Any]:
    return {
        "pem_path": str(pem),
        "cer_path": str(cer),
        "der_base64": der_base64,
        "sha1_thumbprint": sha1,
        "not_after": not_after,
    }


class CreateCertificateHandler(Handler[CreateCertificate]):
    """Local files only; its files are read back right after the write, so there is no probe."""

    def read(self, action: CreateCertificate, ctx: ApplyContext) -> Reading:
        password = ctx.settings.cert_password if action.encrypt_key else None
        # A certificate an interrupted run already made (its path is in the journal) is reused, so a
        # resumed rotation does not upload a second new key; one near expiry or already in use is not.
        earlier = ctx.outputs.get(action.id, {}).get("pem_path")
        candidates = [Path(str(earlier))] if earlier else []
        if action.out_dir.is_dir():
            candidates.extend(sorted(action.out_dir.glob("*.pem")))
        for pem in candidates:
            reading = self._usable(pem, password, ctx.settings)
            if reading is not None:
                return reading
        files = sorted(p.name for p in action.out_dir.iterdir()) if action.out_dir.is_dir() else []
        return Reading(False, {"folder": str(action.out_dir), "files": files})

    @staticmethod
    def _usable(pem: Path, password: str | None, settings: Settings) -> Reading | None:
        cer = pem.with_suffix(".cer")
        if settings.cert is not None and pem.resolve() == settings.cert.resolve():
            return None
        try:
            facts = certs.read_certificate(pem, password, CREATED_BY_FIX)
        except CertificateError:
            return None
        days_left = (facts.not_after - facts.read_at).days
        if not (facts.private_key_matches and cer.is_file() and days_left >= settings.expiry_days):
            return None
        return Reading(
            True,
            {"folder": str(pem.parent), "files": [str(cer), str(pem)], "sha1": facts.sha1_thumbprint},
            _certificate_outputs(pem, cer, facts.der_base64, facts.sha1_thumbprint, facts.not_after.isoformat()),
        )

    def perform(self, action: CreateCertificate, ctx: ApplyContext, before: Reading) -> Sent:
        password = ctx.settings.cert_password if action.encrypt_key else None
        try:
            created = certs.generate_certificate(
                action.subject, action.out_dir, days=action.days, key_size=action.key_size, password=password
            )
        except CbaCheckError as err:
            raise FixError(f"cannot create the certificate in {str(action.out_dir)!r}: {err}") from err
        outputs = _certificate_outputs(
            created.pem_path,
            created.cer_path,
            created.der_base64,
            created.sha1_thumbprint,
            created.not_after.isoformat(),
        )
        return Sent(action.describe(), None, "", outputs)


def _sha1_of(der_base64: str) -> str:
    try:
        der = base64.b64decode(der_base64, validate=True)
    except (binascii.Error, ValueError) as err:
        raise FixError("the certificate to upload is not valid base64 DER") from err
    return hashlib.sha1(der).hexdigest().upper()


def _refuse_keys_without_bytes(app: AppRegistration, kept_ids: set[str], what: str) -> None:
    # Graph returns a key's bytes only with $select=keyCredentials
    # (https://learn.microsoft.com/graph/api/application-get); sending a key back without them deletes it.
    missing = [key.key_id or "?" for key in app.key_credentials if key.key_id in kept_ids and key.key_der is None]
    if missing:
        raise FixError(
            f"Graph returned key(s) {', '.join(missing)} without their bytes; a PATCH would delete them, "
            f"so nothing was sent. {what} in the portal instead."
        )


class AddKeyCredentialHandler(Handler[AddKeyCredential]):
    def read(self, action: AddKeyCredential, ctx: ApplyContext) -> Reading:
        object_id = ctx.value(action.app_object_id)
        sha1 = _sha1_of(ctx.value(action.certificate))
        app, keys = ctx.read_application(object_id, "keyCredentials")
        present = app.keys_matching(sha1)
        outputs = {"sha1_thumbprint": sha1, "app_object_id": object_id}
        if present:
            outputs["key_id"] = present[0].key_id
            # Read back after the write: the window Graph stored, which the upload's own must match.
            stored = present[0]
            outputs["key_start"] = graph_time(stored.start) if stored.start else ""
            outputs["key_end"] = graph_time(stored.end) if stored.end else ""
            _check_stored_window(ctx.outputs.get(action.id, {}), outputs)
        return Reading(bool(present), {"keyCredentials": keys}, outputs, app)

    def perform(self, action: AddKeyCredential, ctx: ApplyContext, before: Reading) -> Sent:
        app = before.app
        assert app is not None, "read() parses the application"
        keys = list(before.state["keyCredentials"])
        _refuse_keys_without_bytes(app, {key.key_id for key in app.key_credentials}, "Upload the certificate")
        der_base64 = ctx.value(action.certificate)
        start, end = key_window(der_base64, datetime.now(UTC))
        new = action.new_key(der_base64, graph_time(start), graph_time(end))
        sent = ctx.send("PATCH", f"/applications/{ctx.value(action.app_object_id)}", {"keyCredentials": [*keys, new]})
        return Sent(
            sent.request,
            sent.status,
            sent.request_id,
            {**sent.outputs, "sent_start": new["startDateTime"], "sent_end": new["endDateTime"]},
        )

    def probe(self, action: AddKeyCredential, ctx: ProbeContext) -> Probe | None:
        """The new certificate gets a token (and, during a rotation, the old one still does)."""
        settings = ctx.settings
        if isinstance(action.certificate, Ref):
            path_text = ctx.outputs.get(action.certificate.action_id, {}).get("pem_path")
            if not path_text:
                return None
            new_path = Path(str(path_text))
        elif settings.cert is not None:
            new_path = settings.cert
        else:
            return None
        password = settings.cert_password
        old_path = settings.cert if action.prove_old_certificate and settings.cert != new_path else None

        def both_sign_in(round_number: int) -> str | None:
            missing = token_missing(ctx.token_with(new_path, password))
            if missing:
                return f"new key: {missing}"
            if old_path is not None:
                old_missing = token_missing(ctx.token_with(old_path, password))
                if old_missing:
                    return f"old key: {old_missing}"
            return None

        what = "the new key to get a token" + (" (and the old one still to work)" if old_path is not None else "")
        return Probe(action.id, what, both_sign_in)


class RemoveKeyCredentialsHandler(Handler[RemoveKeyCredentials]):
    def read(self, action: RemoveKeyCredentials, ctx: ApplyContext) -> Reading:
        app, keys = ctx.read_application(action.app_object_id, "keyCredentials")
        still = [key for key in app.key_credentials if key.key_id in action.key_ids]
        return Reading(not still, {"keyCredentials": keys}, app=app)

    def perform(self, action: RemoveKeyCredentials, ctx: ApplyContext, before: Reading) -> Sent:
        app = before.app
        assert app is not None, "read() parses the application"
        entries: list[dict[str, Any]] = before.state["keyCredentials"]
        if action.keeps_key_of:
            app, entries = _read_holding_new_key(action, ctx, app, entries)
        kept = [key for key in entries if key.get("keyId") not in action.key_ids]
        kept_ids = {key.key_id for key in app.key_credentials if key.key_id not in action.key_ids}
        _refuse_keys_without_bytes(app, kept_ids, "Remove the keys")
        return ctx.send("PATCH", f"/applications/{action.app_object_id}", {"keyCredentials": kept})

    def probe(self, action: RemoveKeyCredentials, ctx: ProbeContext) -> Probe | None:
        def removed(round_number: int) -> str | None:
            app = ctx.app(round_number)
            if app is None:
                return "the application is not visible"
            left = [key.key_id for key in app.key_credentials if key.key_id in action.key_ids]
            return None if not left else f"key(s) {', '.join(left)} still listed"

        return Probe(action.id, "the removed keys to disappear", removed)


def _read_holding_new_key(
    action: RemoveKeyCredentials, ctx: ApplyContext, app: AppRegistration, entries: list[dict[str, Any]]
) -> tuple[AppRegistration, list[dict[str, Any]]]:
    """The application read again until it holds the key this run added; FixError when it never does."""
    sha1 = str(ctx.outputs.get(action.keeps_key_of, {}).get("sha1_thumbprint") or "")
    if not sha1:
        raise FixError(
            f"the thumbprint of the key {action.keeps_key_of} added is unknown, so a PATCH could delete it; "
            "nothing was sent. Remove the old key in the portal instead."
        )
    for delay in (*KEY_READ_RETRY_S, None):
        if app.keys_matching(sha1):
            return app, entries
        if delay is None:
            break
        pause(delay)
        app, entries = ctx.read_application(action.app_object_id, "keyCredentials")
    raise FixError(
        f"Graph's keyCredentials of application {action.app_object_id} still lack the key {sha1} added in this "
        f"run after {len(KEY_READ_RETRY_S) + 1} reads; a PATCH would delete it too, so nothing was sent. Run again "
        "later, or remove the old key in the portal."
    )


def _check_stored_window(earlier: dict[str, Any], read_back: dict[str, Any]) -> None:
    """FixError when Graph stored another window than this run sent for the key."""
    sent = (earlier.get("sent_start"), earlier.get("sent_end"))
    if not all(sent):
        return
    stored = (read_back.get("key_start"), read_back.get("key_end"))
    if stored != sent:
        raise FixError(
            f"Graph stored the new key with the window {stored[0]} to {stored[1]}, not the {sent[0]} to {sent[1]} "
            "sent; check the key under Certificates & secrets."
        )
