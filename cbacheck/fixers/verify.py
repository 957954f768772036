"""Verifying applied fixes where they count: probes, the bounded propagation wait, and each action's verdict."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests

from cbacheck import certs
from cbacheck.config import Settings
from cbacheck.errors import CbaCheckError, CertificateError
from cbacheck.facts import TenantFacts, TokenAttempt, Unavailable
from cbacheck.fixers.outcomes import FAILED, ActionResult

VERIFIED: Final = "verified"
PENDING_PROPAGATION: Final = "pending propagation"
BROKEN: Final = "broken"

FIRST_DELAY_S: Final = 2.0
MAX_DELAY_S: Final = 30.0
# The source label of a certificate the fix created, when it is read back or signs in.
CREATED_BY_FIX: Final = "created by the fix create-certificate"


@dataclass(frozen=True)
class Probe:
    """One applied action's effect, checked in the effective state; `check(round)` is None once visible."""

    action_id: str
    waiting_for: str
    check: Callable[[int], str | None]


@dataclass(frozen=True)
class ProbeResult:
    action_id: str
    status: str  # "verified" or "pending propagation"
    waited_s: float
    waiting_for: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "status": self.status,
            "waited_s": round(self.waited_s, 1),
            "waiting_for": self.waiting_for,
            "detail": self.detail,
        }


def wait_for_propagation(
    probes: Sequence[Probe],
    *,
    timeout_s: float,
    progress: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[ProbeResult]:
    """Check each probe until its effect shows or the timeout passes, backing off 2, 4, 8 ... 30 s.

    A new key, consent or role can take minutes to reach tokens; an effect not seen in time is
    "pending propagation", which is not the same as broken (a request that failed).
    """
    started = clock()
    pending = list(probes)
    finished: dict[str, ProbeResult] = {}
    last_missing: dict[str, str] = {}
    delay = FIRST_DELAY_S
    round_number = 0
    while True:
        for probe in list(pending):
            try:
                missing = probe.check(round_number)
            except CbaCheckError as err:
                missing = f"could not check: {err}"
            if missing is None:
                finished[probe.action_id] = ProbeResult(probe.action_id, VERIFIED, clock() - started, probe.waiting_for)
                pending.remove(probe)
            else:
                last_missing[probe.action_id] = missing
        elapsed = clock() - started
        if not pending or elapsed >= timeout_s:
            break
        pause = min(delay, MAX_DELAY_S, timeout_s - elapsed)
        waiting = "; ".join(probe.waiting_for for probe in pending)
        progress(f"waiting for {waiting} ({int(elapsed)} s of {int(timeout_s)} s)")
        sleep(pause)
        delay = min(delay * 2, MAX_DELAY_S)
        round_number += 1
    waited = clock() - started
    for probe in pending:
        finished[probe.action_id] = ProbeResult(
            probe.action_id, PENDING_PROPAGATION, waited, probe.waiting_for, last_missing.get(probe.action_id, "")
        )
    return [finished[probe.action_id] for probe in probes]


class FactsPerRound:
    """Collects tenant facts at most once per probing round, however many probes read them."""

    def __init__(self, collect: Callable[[], TenantFacts]) -> None:
        self.collect = collect
        self._round: int | None = None
        self._facts: TenantFacts | None = None

    def __call__(self, round_number: int) -> TenantFacts:
        if self._facts is None or self._round != round_number:
            self._facts = self.collect()
            self._round = round_number
        return self._facts


TokenWith = Callable[[Path, str | None], TokenAttempt | Unavailable]


def token_with_certificate(settings: Settings, session: requests.Session) -> TokenWith:
    """A function asking for the app's Exchange token with a given certificate file (for key probes)."""
    from cbacheck.collect import tokens

    def attempt(path: Path, password: str | None) -> TokenAttempt | Unavailable:
        try:
            material: certs.SigningMaterial | CertificateError = certs.load_signing_material(
                path, password, CREATED_BY_FIX
            )
        except CertificateError as err:
            material = err
        return tokens.attempt_app_token(settings, session, material)

    return attempt


def token_missing(attempt: TokenAttempt | Unavailable) -> str | None:
    if isinstance(attempt, Unavailable):
        return str(attempt)
    if attempt.acquired:
        return None
    code = f"AADSTS{attempt.aadsts}: " if attempt.aadsts else ""
    return f"no token yet: {code}{attempt.error_description or attempt.error}"


def verdicts(results: Sequence[ActionResult], probe_results: Sequence[ProbeResult]) -> dict[str, str]:
    """Per action: verified, pending propagation, broken (the request failed), or its apply status."""
    probed = {probe.action_id: probe.status for probe in probe_results}
    out: dict[str, str] = {}
    for result in results:
        if result.status == FAILED:
            out[result.action_id] = BROKEN
        elif result.action_id in probed:
            out[result.action_id] = probed[result.action_id]
        elif result.done:
            out[result.action_id] = VERIFIED
        else:
            out[result.action_id] = result.status
    return out
