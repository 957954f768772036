"""Errors cbacheck raises, each carrying a user-facing message, and the documented exit codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ExitCode:
    """Process exit codes of the `cbacheck` command (documented in docs/reports.md, "Exit codes")."""

    OK = 0  # every requirement in scope passed, was accepted, a warning, not selected or not configured
    FAILED = 1  # a requirement failed or is blocked at or above --fail-on, or was not proven
    USAGE = 2  # bad command line, configuration or input file; or nothing was evaluated
    INTERRUPTED = 3  # stopped by the user (Ctrl-C) or a refused confirmation
    INTERNAL = 4  # a bug in cbacheck: please report it with the log


class CbaCheckError(Exception):
    """Base of every error cbacheck reports to a user; str() is the full message."""


class ConfigError(CbaCheckError):
    """One or more settings are invalid; each problem is one line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class InputFileError(CbaCheckError):
    """A file given as input (config, password, state) cannot be read; the message names it and its source."""

    def __init__(self, what: str, path: str, origin: str, reason: str) -> None:
        self.what = what
        self.path = path
        self.origin = origin
        self.reason = reason
        super().__init__(f"{what} {path!r} ({origin}) {reason}")


class InputError(ConfigError):
    """A file the settings name cannot be used as given (a missing password, no private key); exit 2."""


class CertificateError(CbaCheckError):
    """A certificate or key file cannot be read or used."""

    def __init__(self, path: str, source: str, reason: str, next_step: str) -> None:
        self.path = path
        self.source = source
        self.reason = reason
        self.next_step = next_step
        super().__init__(f"cannot read certificate {path!r} ({source}): {reason}. {next_step}".rstrip())


class GraphError(CbaCheckError):
    """Microsoft Graph answered with an error, or with something that is not Graph's JSON."""

    def __init__(
        self,
        method: str,
        url: str,
        status: int | None,
        code: str,
        message: str,
        *,
        request_id: str = "",
        client_request_id: str = "",
        date: str = "",
        hint: str = "",
        body: Any = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.date = date
        self.hint = hint
        self.body = body
        status_text = str(status) if status is not None else "no response"
        ids = " ".join(
            f"{label} {value}"
            for label, value in (
                ("request-id", request_id),
                ("client-request-id", client_request_id),
                ("date", date),
            )
            if value
        )
        lines = [f"{method} {url} -> {status_text} {code}: {message}".rstrip()]
        if ids:
            lines.append(f"  {ids}")
        if hint:
            lines.append(f"  {hint}")
        super().__init__("\n".join(lines))


class TokenError(CbaCheckError):
    """The identity platform refused a token; keeps msal's whole error dict (never a token)."""

    def __init__(self, authority: str, client_id: str, scope: str, result: Mapping[str, Any]) -> None:
        self.authority = authority
        self.client_id = client_id
        self.scope = scope
        self.result = dict(result)
        codes = self.result.get("error_codes") or []
        self.code: int | None = int(codes[0]) if codes else None
        self.error = str(self.result.get("error", "unknown_error"))
        description = str(self.result.get("error_description", "")).split("\r\n")[0]
        self.description = description
        super().__init__(
            f"no token for app {client_id} from {authority} (scope {scope}): {self.error}: {description}".rstrip()
        )


class ExchangeError(CbaCheckError):
    """The Exchange admin API refused or failed a cmdlet."""

    def __init__(self, url: str, status: int | None, cmdlet: str, message: str, request_id: str = "") -> None:
        self.url = url
        self.status = status
        self.cmdlet = cmdlet
        self.message = message
        self.request_id = request_id
        status_text = str(status) if status is not None else "no response"
        suffix = f" (request-id {request_id})" if request_id else ""
        super().__init__(f"{cmdlet} via {url} -> {status_text}: {message}{suffix}")


class CredentialError(CbaCheckError):
    """An auditor or admin identity is missing or cannot sign in."""


class FixError(CbaCheckError):
    """Applying a fix was refused or failed."""


class FixRefused(FixError):
    """The user (or the lack of a terminal and of --yes) did not confirm the plan; nothing changed."""
