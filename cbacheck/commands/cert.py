"""`cbacheck cert new` and `cbacheck cert inspect`: create and look at the certificate of link 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from cbacheck import certs, config
from cbacheck.errors import CbaCheckError, ConfigError, ExitCode


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register `cert` with its `new` and `inspect` subcommands."""
    parser = subparsers.add_parser(
        "cert",
        help="create or inspect the app's certificate",
        description="Create a self-signed certificate for app-only sign-in, or show what a certificate file holds. "
        f"Passwords come from {certs.PASSWORD_ENV} (or a file named by {certs.PASSWORD_FILE_ENV}), never the "
        "command line.",
    )
    commands = parser.add_subparsers(dest="cert_command", metavar="SUBCOMMAND")
    commands.required = True

    new = commands.add_parser(
        "new",
        help="create NAME.cer, NAME.pem (and NAME.pfx with a password)",
        description="The counterpart of New-SelfSignedCertificate + Export-Certificate: RSA, SHA-256, "
        "self-signed, KeyUsage digitalSignature, EKU clientAuth. Writes NAME.cer (DER, upload it to the app), "
        f"NAME.pem (certificate and key, mode 0600; the key encrypted when {certs.PASSWORD_ENV} is set) and "
        "NAME.pfx (only with a password). Never overwrites a file.",
    )
    new.add_argument("--subject", required=True, metavar="CN=NAME", help="subject, e.g. CN=exo-automation")
    new.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the files (created if absent)")
    new.add_argument(
        "--days", type=int, default=365, metavar="N", help=f"validity in days, 1 to {certs.MAX_DAYS} (default 365)"
    )
    new.add_argument("--key-size", type=int, default=2048, metavar="N", help="RSA key size in bits (default 2048)")

    inspect = commands.add_parser(
        "inspect",
        help="show subject, validity, key, thumbprints of a .cer/.pem/.pfx",
        description=f"Read a .cer/.crt, .pem or .pfx/.p12 (password from {certs.PASSWORD_ENV}) and show what it "
        "holds. Exit 0 when the file is readable, 2 otherwise.",
    )
    inspect.add_argument("file", type=Path, metavar="FILE", help="certificate file")


def run(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run `cert new` or `cert inspect`; user errors become one line on stderr and exit code 2."""
    stdout = out or sys.stdout
    stderr = err or sys.stderr
    try:
        settings = config.resolve(options={}, env=env, cwd=cwd)
    except ConfigError as problem:
        for line in problem.problems:
            print(f"cbacheck: {line}", file=stderr)
        return ExitCode.USAGE
    try:
        if args.cert_command == "new":
            return _new(args, settings.cert_password, stdout)
        return _inspect(args, settings.cert_password, stdout)
    except CbaCheckError as problem:
        print(f"cbacheck: {problem}", file=stderr)
        return ExitCode.USAGE


def _new(args: argparse.Namespace, password: str | None, out: TextIO) -> int:
    made = certs.generate_certificate(args.subject, args.out, days=args.days, key_size=args.key_size, password=password)
    rows = [
        ("Subject", made.subject),
        ("Certificate (upload this)", str(made.cer_path)),
        ("Certificate + private key", f"{made.pem_path} (mode 0600, key {_protection(made.key_encrypted)})"),
    ]
    if made.pfx_path is not None:
        rows.append(("PFX", f"{made.pfx_path} (mode 0600, password from {certs.PASSWORD_ENV})"))
    rows += [
        ("SHA-1 thumbprint", made.sha1_thumbprint),
        ("SHA-256 thumbprint", made.sha256_thumbprint),
        ("Valid from", made.not_before.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("Valid until", made.not_after.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("Key", f"RSA {made.key_size} bits, signed with SHA-256"),
    ]
    _print_rows(rows, out)
    key_file = made.pfx_path or made.pem_path
    print(
        f"\nNext: upload {made.cer_path.name} to the app (Entra admin center > App registrations > the app > "
        "Certificates & secrets > Certificates > Upload certificate); the portal then shows thumbprint "
        f"{made.sha1_thumbprint}.\nThen check the setup: cbacheck run --cert {key_file}",
        file=out,
    )
    if not made.key_encrypted:
        print(
            f"The private key in {made.pem_path.name} is not encrypted (only its owner may read it). To protect it "
            f"with a password and also get a PFX, set {certs.PASSWORD_ENV} and create the certificate again.",
            file=out,
        )
    return ExitCode.OK


def _inspect(args: argparse.Namespace, password: str | None, out: TextIO) -> int:
    path: Path = args.file
    facts = certs.read_certificate(path, password, "argument FILE of cbacheck cert inspect")
    _print_rows(certs.describe(facts), out)
    return ExitCode.OK


def _protection(encrypted: bool) -> str:
    return "encrypted with the password" if encrypted else "NOT encrypted"


def _print_rows(rows: list[tuple[str, str]], out: TextIO) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label + ':':<{width + 1}} {value}", file=out)
