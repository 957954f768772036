"""`cbacheck audit`: every principal that can act on Exchange Online as itself, judged without any private key."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cbacheck import config
from cbacheck.commands.audit_targets import Target, load_targets, parse_shard, shard_of
from cbacheck.commands.run_options import add_setting_options, setting_dest
from cbacheck.errors import CbaCheckError, ConfigError, ExitCode, InputError
from cbacheck.report.audit import audit_document, compare_principals, unread_document
from cbacheck.report.audit_html import audit_csv, audit_html, audit_markdown
from cbacheck.report.console import console_safe
from cbacheck.report.exceptions import ExceptionsFile, load_exceptions
from cbacheck.report.sarif import audit_sarif_log

if TYPE_CHECKING:
    from cbacheck.certs.folder import SuppliedCertificate

HELP = "list every app that can act on Exchange Online as itself, and judge each without its private key"
EARLIER_SCHEMAS = ("cbacheck-audit", "cbacheck-audit-merged")
# An audit of 10,000 holders is tens of megabytes; far past that is no audit.json.
MAX_EARLIER_BYTES = 512 * 1024 * 1024


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
            "audit.json, audit.html, audit.csv and audit.md (summary) to report_dir, and with --sarif PATH a "
            "SARIF 2.1.0 log (one result per failed app and requirement); with --compare (an earlier "
            "audit.json) it says which principals appeared or disappeared. With [[targets]] in the config file "
            "named by --config or CBACHECK_CONFIG it audits each target in turn (audit-<name>.json, ...); "
            "--shard I/N audits only the I-th of N shards of them (docs/audit.md). Exit codes as for `run`."
        ),
    )
    add_setting_options(parser)
    parser.add_argument("--config", type=Path, metavar="PATH", help="trusted TOML config file (or CBACHECK_CONFIG)")
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="audit only the I-th of N shards of the config file's [[targets]] (1 <= I <= N; split by name)",
    )
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
    return config.resolve(options, config_file=args.config, app_under_test=False)


def _for_target(settings: config.Settings, target: Target, origin: str) -> config.Settings:
    """The settings with the target's tenant (and cloud), checked again as a whole."""
    cloud = target.cloud or settings.cloud
    changed = ["tenant", "cloud"] if target.cloud else ["tenant"]
    sources = {**settings.sources, **dict.fromkeys(changed, f"{origin} {target.name}")}
    chosen = dataclasses.replace(settings, tenant=target.tenant, cloud=cloud, sources=sources)
    problems = config.validate(chosen, app_under_test=False)
    if problems:
        raise ConfigError(problems)
    return chosen


def audits(args: argparse.Namespace, settings: config.Settings) -> list[tuple[Target | None, config.Settings]]:
    """What this invocation audits: the one tenant of the settings, or this shard's targets."""
    targets = load_targets(args.config)
    if not targets:
        if args.shard:
            raise InputError(["--shard needs [[targets]] in the config file named by --config or CBACHECK_CONFIG"])
        if not settings.tenant:
            raise InputError(["tenant is not set: give the tenant to audit (--tenant or CBACHECK_TENANT)"])
        return [(None, settings)]
    if settings.tenant:
        raise InputError(
            [
                f"tenant is set ({settings.source('tenant')}) and the config file lists [[targets]]: "
                "give one or the other"
            ]
        )
    chosen = targets
    if args.shard:
        index, count = parse_shard(args.shard)
        chosen = shard_of(targets, index, count)
        if not chosen:
            raise InputError(
                [f"--shard {index}/{count} holds no target: there are {len(targets)} targets; use at most that many"]
            )
    return [(target, _for_target(settings, target, "[[targets]]")) for target in chosen]


def _earlier(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    earlier = config.read_input_json(path, "earlier audit", "option --compare", max_bytes=MAX_EARLIER_BYTES)
    if not isinstance(earlier, dict) or earlier.get("schema") not in EARLIER_SCHEMAS:
        raise InputError([f"--compare {path}: not an audit.json written by `cbacheck audit` or `cbacheck merge`"])
    return earlier


def _earlier_of(tenant: str, earlier: Mapping[str, Any]) -> dict[str, Any]:
    """The earlier principals of this tenant: all of a single audit, or this tenant's apps of a merged one."""
    if earlier.get("schema") != "cbacheck-audit-merged":
        return dict(earlier)
    return {"apps": [a for a in earlier.get("apps", []) if str(a.get("tenant", "")).lower() == tenant.lower()]}


def output_names(target: Target | None, settings: config.Settings) -> dict[str, Path]:
    """Where one audit's reports go: audit.* in report_dir, or audit-<name>.* for a target; --sarif likewise."""
    stem = "audit" if target is None else f"audit-{target.name}"
    names = {kind: settings.report_dir / f"{stem}.{kind}" for kind in ("json", "html", "csv", "md")}
    if settings.sarif is not None:
        sarif = settings.sarif
        names["sarif"] = sarif if target is None else sarif.with_name(f"{sarif.stem}-{target.name}{sarif.suffix}")
    return names


def write_reports(document: dict[str, Any], names: Mapping[str, Path], compared: Any = None) -> None:
    """The audit's JSON, HTML, CSV, Markdown and (when named) SARIF."""
    texts = {
        "json": lambda: json.dumps(document, indent=2) + "\n",
        "html": lambda: audit_html(document, compared),
        "csv": lambda: audit_csv(document),
        "md": lambda: audit_markdown(document),
        "sarif": lambda: json.dumps(audit_sarif_log(document), indent=2) + "\n",
    }
    for kind, path in names.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(texts[kind](), encoding="utf-8")


def _audit_one(
    target: Target | None,
    settings: config.Settings,
    exceptions: ExceptionsFile | None,
    supplied: tuple[SuppliedCertificate, ...],
) -> dict[str, Any]:
    # Imported here so `cbacheck audit --help` loads no network library (tests/unit/test_startup.py).
    from cbacheck.collect.audit import collect_audit

    if target is None:
        return audit_document(collect_audit(settings, supplied=supplied), settings, exceptions)
    try:
        document = audit_document(collect_audit(settings, supplied=supplied), settings, exceptions)
    except CbaCheckError as err:
        # One tenant that cannot be read (a missing consent, a typo in its name) does not stop the others:
        # it is recorded as not read, an error, and the audit goes on.
        document = unread_document(settings, str(err))
    document["target"] = target.name
    return document


def _summary(
    document: Mapping[str, Any], settings: config.Settings, compared: Mapping[str, list[str]] | None, stdout: TextIO
) -> None:
    counts = document["counts"]
    who = f"[{document['target']}] " if document.get("target") else ""
    print(
        f"cbacheck audit: {who}{counts['apps']} principals with Exchange app-only permissions among "
        f"{counts['applications_seen']} applications; {counts['failed']} failed, {counts['error']} not verified",
        file=stdout,
    )
    # What could not be read is said here too, not only in the reports: it is why an app is "not verified".
    for what, why in document["not_read"].items():
        line = f"not read: {why}" if what == "tenant" else f"{what}: {why}"
        print(console_safe(f"  {who}{line}"), file=stdout)
    for kind, names in (compared or {}).items():
        print(f"  {kind} since {settings.compare}: {', '.join(names) or 'none'}", file=stdout)
    print(f"verdict: {who}{document['verdict']} (reports in {settings.report_dir})", file=stdout)


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Audit the tenant (or each target of the shard), write the reports, print the summary, return the gate."""
    stdout = out or sys.stdout
    settings = _settings(args)
    chosen = audits(args, settings)
    earlier = _earlier(settings.compare)
    exceptions = load_exceptions(settings)  # read (and refused, exit 2) before any request
    from cbacheck.certs.folder import read_certificate_folder  # cryptography: only when the audit runs

    # The supplied certificates are opened before any request too: a wrong password is exit 2, never a read.
    supplied = read_certificate_folder(args.certificates, settings.certificates_password) if args.certificates else ()
    status = ExitCode.OK
    for target, target_settings in chosen:
        document = _audit_one(target, target_settings, exceptions, supplied)
        compared = None
        if earlier is not None:
            compared = compare_principals(document, _earlier_of(str(target_settings.tenant), earlier))
            document["compare"] = compared
        write_reports(document, output_names(target, target_settings), compared)
        _summary(document, target_settings, compared, stdout)
        if document["verdict"] == "failed" or (document["verdict"] == "error" and not settings.allow_unverified):
            status = ExitCode.FAILED
    return int(status)
