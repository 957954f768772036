"""`cbacheck audit`: every principal that can act on Exchange Online as itself, judged without any private key."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from cbacheck import config
from cbacheck.commands.run_options import add_setting_options, setting_dest
from cbacheck.errors import ExitCode, InputError
from cbacheck.report.audit import audit_document, compare_principals
from cbacheck.report.audit_html import audit_csv, audit_html, audit_markdown
from cbacheck.report.exceptions import load_exceptions

HELP = "list every app that can act on Exchange Online as itself, and judge each without its private key"


def add_parser(subparsers: Any) -> None:
    """Register `cbacheck audit` with the settings of `run` (the auditor identity is the one that matters)."""
    parser = subparsers.add_parser(
        "audit",
        help=HELP,
        description=(
            "Read the tenant with the auditor identity (auditor_app_id and auditor_cert, or auditor_credential) "
            "and list every service principal granted Exchange.ManageAsApp, Exchange.ManageAsAppV2, "
            "full_access_as_app or Microsoft Graph mail, calendar or contacts application permissions, managed "
            "identities included, each judged by the requirements CBA-AUD-* (docs/requirements.md). Writes "
            "audit.json, audit.html, audit.csv and audit.md (summary) to report_dir; with --compare (an earlier "
            "audit.json) it says which principals appeared or disappeared. Exit codes as for `run`."
        ),
    )
    add_setting_options(parser)
    parser.add_argument("--config", type=Path, metavar="PATH", help="trusted TOML config file (or CBACHECK_CONFIG)")
    # An input path, like cert: a command-line option only, so no config file can point it elsewhere.
    parser.add_argument(
        "--certificates",
        type=Path,
        metavar="DIR",
        help="folder of PFX/PEM files (password in CBACHECK_CERTIFICATES_PASSWORD or _FILE): each app holding one of "
        "them as an uploaded key also gets the token and Exchange links (CBA-TOKEN-*, CBA-EXO-001)",
    )


def _settings(args: argparse.Namespace) -> config.Settings:
    options = {
        spec.name: getattr(args, setting_dest(spec.name), None)
        for spec in config.setting_fields()
        if spec.metadata["cli"]
    }
    settings = config.resolve(options, config_file=args.config, app_under_test=False)
    if not settings.tenant:
        raise InputError(["tenant is not set: give the tenant to audit (--tenant or CBACHECK_TENANT)"])
    return settings


def _earlier(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError([f"--compare {path}: {err}"]) from None
    if not isinstance(earlier, dict) or earlier.get("schema") != "cbacheck-audit":
        raise InputError([f"--compare {path}: not an audit.json written by `cbacheck audit`"])
    return earlier


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Audit the tenant, write the three reports, print the summary, return the gate's exit code."""
    stdout = out or sys.stdout
    settings = _settings(args)
    earlier = _earlier(settings.compare)
    exceptions = load_exceptions(settings)  # read (and refused, exit 2) before any request
    # Imported here so `cbacheck audit --help` loads no network library (tests/unit/test_startup.py).
    from cbacheck.certs.folder import read_certificate_folder
    from cbacheck.collect.audit import collect_audit

    certificates = args.certificates  # opened (a wrong password: exit 2) before any request
    supplied = read_certificate_folder(certificates, settings.certificates_password) if certificates else ()
    document = audit_document(collect_audit(settings, supplied=supplied), settings, exceptions)
    compared = compare_principals(document, earlier) if earlier is not None else None
    if compared is not None:
        document["compare"] = compared
    folder = settings.report_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "audit.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (folder / "audit.html").write_text(audit_html(document, compared), encoding="utf-8")
    (folder / "audit.csv").write_text(audit_csv(document), encoding="utf-8")
    (folder / "audit.md").write_text(audit_markdown(document), encoding="utf-8")
    counts = document["counts"]
    print(
        f"cbacheck audit: {counts['apps']} principals with Exchange app-only permissions among "
        f"{counts['applications_seen']} applications; {counts['failed']} failed, {counts['error']} not verified",
        file=stdout,
    )
    for kind, names in (compared or {}).items():
        print(f"  {kind} since {settings.compare}: {', '.join(names) or 'none'}", file=stdout)
    print(f"verdict: {document['verdict']} (reports in {folder})", file=stdout)
    if document["verdict"] == "failed" or (document["verdict"] == "error" and not settings.allow_unverified):
        return int(ExitCode.FAILED)
    return int(ExitCode.OK)
