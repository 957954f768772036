"""Planners of link 1 and 3: a new or rotated certificate, its upload beside the existing keys, expired keys."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from cbacheck import catalogue
from cbacheck.facts import KeyCredential
from cbacheck.fixers.actions import (
    Action,
    AddKeyCredential,
    CreateCertificate,
    ManualStep,
    Ref,
    RemoveKeyCredentials,
)
from cbacheck.fixers.planning import CannotPlan, PlanContext, planner

DEFAULT_CERT_DIR: Final = Path("certs")
DEFAULT_CERT_SUBJECT: Final = "CN=exo-automation"


def _subject_of(ctx: PlanContext) -> str:
    if ctx.cert is not None and ctx.cert.subject.upper().startswith("CN="):
        return ctx.cert.subject
    return DEFAULT_CERT_SUBJECT


def _keys_of_local_certificate(ctx: PlanContext) -> tuple[KeyCredential, ...]:
    app = ctx.app
    if app is None or ctx.cert is None:
        return ()
    return app.keys_matching(ctx.cert.sha1_thumbprint)


def _existing_keys(ctx: PlanContext, depends: tuple[str, ...]) -> tuple[str, ...]:
    app = ctx.app if not depends else None
    return tuple(key.one_line() for key in app.key_credentials) if app is not None else ()


def _create_certificate(ctx: PlanContext, fix: str, reason: str) -> CreateCertificate:
    base = ctx.settings.new_cert_dir or DEFAULT_CERT_DIR
    return CreateCertificate(
        id="create-certificate",
        mends=ctx.mends(fix),
        reason=reason,
        subject=_subject_of(ctx),
        # A dated folder, so a rotation never collides with the files of the certificate it replaces.
        out_dir=base / ctx.now.strftime("%Y%m%dT%H%M%SZ"),
        days=max(1, min(ctx.settings.max_lifetime_days, 365)),
        encrypt_key=bool(ctx.settings.cert_password),
    )


def _switch_to_new_certificate(ctx: PlanContext, fix: str) -> ManualStep:
    return ManualStep(
        id="use-new-certificate",
        mends=ctx.mends(fix),
        reason="the automation still signs in with the old certificate",
        explanation="Point the automation (and cbacheck's cert setting) at the new certificate's .pem, "
        "or import its PFX where the scripts run.",
        setting="cert",
        value=Ref("create-certificate", "pem_path"),
        depends_on=("create-certificate",),
    )


def _upload_new_certificate(ctx: PlanContext, fix: str, reason: str, *, prove_old: bool = False) -> AddKeyCredential:
    handle = ctx.app_handle(fix)
    return AddKeyCredential(
        id="add-key-new-certificate",
        mends=ctx.mends(fix),
        reason=reason,
        app_object_id=handle.object_id,
        certificate=Ref("create-certificate", "der_base64"),
        display_name=_subject_of(ctx),
        existing_keys=_existing_keys(ctx, handle.depends_on),
        depends_on=(*handle.depends_on, "create-certificate"),
        prove_old_certificate=prove_old,
    )


def _fix_certificate_input(ctx: PlanContext, fix: str) -> ManualStep:
    return ManualStep(
        id="fix-certificate-input",
        mends=ctx.mends(fix),
        reason="the local certificate could not be read, so nothing is known to be wrong with the certificate itself",
        explanation="Fix the certificate input: the cert path, its password (cert_password, from the environment "
        "or a file) and a file that holds the private key (a .pem with the key or a .pfx, not the .cer). "
        "cbacheck never creates or uploads a certificate because a file could not be read.",
        portal=catalogue.DOC_CERT_CREDENTIALS,
    )


@planner("new_certificate")
def plan_new_certificate(ctx: PlanContext) -> list[Action]:
    """A new local certificate when the configured one was read and judged unusable (weak key or signature)."""
    if not ctx.certificate_judged:
        return [_fix_certificate_input(ctx, "new_certificate")]
    failed = ", ".join(req for req in ctx.mends("new_certificate"))
    return [
        _create_certificate(ctx, "new_certificate", f"the local certificate cannot be used ({failed})"),
        _switch_to_new_certificate(ctx, "new_certificate"),
    ]


def _old_certificate_still_signs_in(ctx: PlanContext) -> bool:
    """Both keys must be proven during the switch; an old certificate that is expired, or whose
    uploaded key is, cannot sign in and is not asked to."""
    return (
        ctx.cert is not None
        and ctx.cert.not_before <= ctx.now < ctx.cert.not_after
        and any(
            key.start is not None and key.end is not None and key.start <= ctx.now < key.end
            for key in _keys_of_local_certificate(ctx)
        )
    )


@planner("rotate_certificate")
def plan_rotate_certificate(ctx: PlanContext) -> list[Action]:
    """New certificate uploaded beside the old one; the old key goes only after a proven rotation, on request."""
    if not ctx.certificate_judged:
        return [_fix_certificate_input(ctx, "rotate_certificate")]
    mends = ctx.mends("rotate_certificate")
    actions: list[Action] = [
        _create_certificate(ctx, "rotate_certificate", f"rotation: {', '.join(mends)} failed"),
        _switch_to_new_certificate(ctx, "rotate_certificate"),
    ]
    try:
        upload = _upload_new_certificate(
            ctx,
            "rotate_certificate",
            "upload the new certificate beside the existing keys so both work during the switch",
            prove_old=_old_certificate_still_signs_in(ctx),
        )
    except CannotPlan as stop:
        return [*actions, *stop.steps(ctx)]
    return [*actions, upload, *_old_key_steps(ctx, mends)]


def _old_key_steps(ctx: PlanContext, mends: tuple[str, ...]) -> list[Action]:
    app = ctx.app
    old_keys = _keys_of_local_certificate(ctx)
    if app is None or not old_keys:
        return []
    descriptions = tuple(key.one_line() for key in old_keys)
    if ctx.settings.remove_old_key:
        return [
            RemoveKeyCredentials(
                id="remove-old-key",
                mends=mends,
                reason="remove_old_key is set: the old key goes once the new one is proven to get a token",
                app_object_id=app.object_id,
                key_ids=tuple(key.key_id for key in old_keys),
                key_descriptions=descriptions,
                requires_verified=("add-key-new-certificate",),
                keeps_key_of="add-key-new-certificate",
                depends_on=("add-key-new-certificate",),
            )
        ]
    return [
        ManualStep(
            id="remove-old-key",
            mends=mends,
            reason="the old key stays until you decide: nothing existing is removed without asking",
            explanation="Once the automation runs with the new certificate, remove the old key "
            f"({'; '.join(descriptions)}), or run again with --remove-old-key --fix apply.",
            portal=catalogue.PORTAL_APP,
        )
    ]


@planner("upload_certificate")
def plan_upload_certificate(ctx: PlanContext) -> list[Action]:
    """Upload the local (or new) certificate as a keyCredential, keeping every existing key."""
    if "rotate_certificate" in ctx.fixes:
        return []  # the rotation uploads the new certificate itself
    if "new_certificate" in ctx.fixes:
        if not ctx.certificate_judged:
            return []  # no new certificate is made for an input error, so there is nothing to upload
        return [
            _upload_new_certificate(ctx, "upload_certificate", "upload the new certificate beside the existing keys")
        ]
    handle = ctx.app_handle("upload_certificate")
    if ctx.cert is None:
        return [
            ManualStep(
                id="configure-certificate",
                mends=ctx.mends("upload_certificate"),
                reason="no local certificate is configured, so there is nothing to upload",
                explanation="Set cert to the certificate the automation uses, or create one with `cbacheck cert new`.",
            )
        ]
    if not handle.depends_on and _keys_of_local_certificate(ctx):
        return []
    return [
        AddKeyCredential(
            id=f"add-key-{ctx.cert.sha1_thumbprint[:8].lower()}",
            mends=ctx.mends("upload_certificate"),
            reason=f"certificate {ctx.cert.sha1_thumbprint} ({ctx.cert.subject}) is not among the app's keys",
            app_object_id=handle.object_id,
            certificate=ctx.cert.der_base64,
            display_name=_subject_of(ctx),
            existing_keys=_existing_keys(ctx, handle.depends_on),
            depends_on=handle.depends_on,
        )
    ]


@planner("remove_expired_keys")
def plan_remove_expired_keys(ctx: PlanContext) -> list[Action]:
    """Remove expired keyCredentials, only when remove_expired_keys is set."""
    app = ctx.app
    if app is None:
        return []
    expired = tuple(key for key in app.key_credentials if key.end is not None and key.end <= ctx.now)
    if not expired:
        return []
    descriptions = tuple(key.one_line() for key in expired)
    if not ctx.settings.remove_expired_keys:
        return [
            ManualStep(
                id="remove-expired-keys",
                mends=ctx.mends("remove_expired_keys"),
                reason=f"{len(expired)} expired key(s) on the app; removing keys is opt-in",
                explanation=f"Remove {'; '.join(descriptions)} under Certificates & secrets, or run again with "
                "--remove-expired-keys --fix apply.",
                portal=catalogue.PORTAL_APP,
            )
        ]
    return [
        RemoveKeyCredentials(
            id="remove-expired-keys",
            mends=ctx.mends("remove_expired_keys"),
            reason=f"remove_expired_keys is set and {len(expired)} key(s) have expired",
            app_object_id=app.object_id,
            key_ids=tuple(key.key_id for key in expired),
            key_descriptions=descriptions,
        )
    ]
