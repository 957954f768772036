"""`cbacheck merge`: several tenants' audit.json files (shards of one audit) combined into one report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from cbacheck.config import read_input_json
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
    return read_input_json(path, "audit file", "an input of cbacheck merge", max_bytes=MAX_INPUT_BYTES)


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Read and check every input, merge, write OUT.json and the reports asked for, print the summary."""
    from cbacheck.commands.audit import write_reports
    from cbacheck.report.audit_merge import check_input, merge_documents

    stdout = out or sys.stdout
    asked = {"json": args.output, "html": args.html, "csv": args.csv, "md": args.markdown, "sarif": args.sarif}
    outputs = {kind: path for kind, path in asked.items() if path is not None}
    clash = sorted({str(p) for p in outputs.values()} & {str(p) for p in args.inputs})
    if clash:
        raise InputError([f"{clash[0]} is both an input and an output; write the merged report elsewhere"])
    merged = merge_documents([(str(path), check_input(_read(path), str(path))) for path in args.inputs])
    write_reports(merged, outputs)
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
