"""`cbacheck merge`: several tenants' audit.json files (shards of one audit) combined into one report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from cbacheck.errors import ExitCode, InputError

HELP = "combine the audit.json files of several tenants (or shards) into one report"
MAX_INPUT_BYTES = 512 * 1024 * 1024  # an audit of 10,000 holders is tens of megabytes; far past that is no audit


def add_parser(subparsers: Any) -> None:
    """Register `cbacheck merge OUT.json IN.json...` and the other reports it may write."""
    parser = subparsers.add_parser(
        "merge",
        help=HELP,
        description=(
            "Combine audit.json files written by `cbacheck audit` (one per tenant, from any number of shards) "
            "into OUT.json (schema cbacheck-audit-merged, docs/audit.md), and optionally its HTML, CSV, "
            "Markdown and SARIF. Inputs of another kind or schema version are refused, naming the file. When "
            "two inputs audit the same tenant, the newer (collected_at) is kept and the other listed as "
            "superseded; two equally new ones are refused. Exit 0 when written, 2 on a bad input; the merged "
            "verdict is in OUT.json (the audits' own exit codes are the gate)."
        ),
    )
    parser.add_argument("output", type=Path, metavar="OUT.json", help="the merged audit to write")
    parser.add_argument("inputs", type=Path, nargs="+", metavar="IN.json", help="audit.json files to merge")
    parser.add_argument("--html", type=Path, metavar="PATH", help="also write the merged overview as HTML")
    parser.add_argument("--csv", type=Path, metavar="PATH", help="also write the merged overview as CSV")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the merged CI summary (Markdown)")
    parser.add_argument("--sarif", type=Path, metavar="PATH", help="also write SARIF 2.1.0 of the merged audit")


def _read(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as err:
        raise InputError([f"{path}: cannot be read: {err.strerror or err}"]) from None
    if len(data) > MAX_INPUT_BYTES:
        raise InputError([f"{path}: larger than {MAX_INPUT_BYTES} bytes; not an audit.json"])
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise InputError([f"{path}: not JSON ({str(err)[:120]})"]) from None


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Read and check every input, merge, write OUT.json and the reports asked for, print the summary."""
    from cbacheck.report.audit_html import audit_csv, audit_html, audit_markdown
    from cbacheck.report.audit_merge import check_input, merge_documents
    from cbacheck.report.sarif import audit_sarif_log

    stdout = out or sys.stdout
    outputs = [p for p in (args.output, args.html, args.csv, args.markdown, args.sarif) if p is not None]
    clash = sorted({str(p) for p in outputs} & {str(p) for p in args.inputs})
    if clash:
        raise InputError([f"{clash[0]} is both an input and an output; write the merged report elsewhere"])
    merged = merge_documents([(str(path), check_input(_read(path), str(path))) for path in args.inputs])
    writers: list[tuple[Path | None, Callable[[], str]]] = [
        (args.output, lambda: json.dumps(merged, indent=2) + "\n"),
        (args.html, lambda: audit_html(merged, None)),
        (args.csv, lambda: audit_csv(merged)),
        (args.markdown, lambda: audit_markdown(merged)),
        (args.sarif, lambda: json.dumps(audit_sarif_log(merged), indent=2) + "\n"),
    ]
    for path, text in writers:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text(), encoding="utf-8")
    counts = merged["counts"]
    print(
        f"cbacheck merge: {counts['tenants']} tenants, {counts['apps']} principals with Exchange app-only "
        f"permissions; {counts['failed']} failed, {counts['error']} not verified; verdict {merged['verdict']} "
        f"({args.output})",
        file=stdout,
    )
    for entry in merged["superseded"]:
        print(f"  superseded: {entry['source']} ({entry['tenant']}) by the newer {entry['kept']}", file=stdout)
    return int(ExitCode.OK)
