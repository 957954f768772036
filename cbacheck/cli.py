"""The `cbacheck` command: parses arguments and hands each subcommand to its module."""

from __future__ import annotations

import argparse
import gc
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from cbacheck import __version__
from cbacheck.errors import CbaCheckError, ExitCode

EPILOG = """exit codes (cbacheck's own decision; the same under plain pytest; docs/reports.md):
  0  something was evaluated and every requirement in scope passed, is an accepted
     risk (--exceptions), a warning below --fail-on, not selected, or skipped
     because its link is not configured (and --require does not ask for it)
  1  a requirement failed or is blocked at or above --fail-on, or was not proven:
     an error (unless --allow-unverified), pending, or not evaluated (-- -k)
  2  bad command line, configuration, exceptions or input file; or nothing was
     evaluated (the message names the settings to set)
  3  interrupted, or a confirmation was refused
  4  internal error in cbacheck (please report it)
"""


# One line per command for `cbacheck --help`; each command's module registers the same help with its options
# (tests/unit/test_startup.py keeps the two equal). Only the command being run has its module imported,
# so `--version` imports no command and `run --help` only the light `commands/run_options`.
COMMANDS = {
    "run": "check the CBA chain and write HTML, JSON and JUnit reports",
    "demo": "run every check against the local sandbox tenant (a scenario with broken links)",
    "sandbox": "run the sandbox tenant (local Entra ID, Graph and Exchange over HTTPS)",
    "cert": "create or inspect the app's certificate",
    "audit": "list every app that can act on Exchange Online as itself, and judge each without its private key",
    "merge": "combine the audit.json files of several tenants (or shards) into one report",
}


def _register(subparsers: Any, name: str) -> None:
    """Register one command's real parser, with a handler that imports the command only when it runs."""
    if name == "run":
        from cbacheck.commands import run_options

        run_options.add_parser(subparsers)
    elif name == "demo":
        from cbacheck.commands import demo

        demo.add_parser(subparsers)
    elif name == "sandbox":
        from cbacheck.sandbox import command as sandboxcommand

        sandboxcommand.add_parser(subparsers)
    elif name == "audit":
        from cbacheck.commands import audit

        audit.add_parser(subparsers)
    elif name == "merge":
        from cbacheck.commands import merge

        merge.add_parser(subparsers)
    else:
        from cbacheck.commands import cert

        cert.add_parser(subparsers)
    subparsers.choices[name].set_defaults(handler=HANDLERS[name])


def _handle_run(args: argparse.Namespace) -> int:
    _validate_keys_apart(args)
    # Importing makes objects that live to the end, no garbage: the collector would only scan them, at once in
    # its first young pass after the import (10 ms) and later in each session's (run.py freezes them then too).
    gc.disable()
    try:
        from cbacheck.commands import run
    finally:
        gc.freeze()
        gc.enable()
    return run.run(args)


def _validate_keys_apart(args: argparse.Namespace) -> None:
    """The key files named on the command line are validated in a child while this process starts pytest."""
    from pathlib import Path

    from cbacheck.certs import validated

    # The admin identity's key is read only when fixes are applied.
    names = ["cert", "auditor_cert", *(["admin_cert"] if getattr(args, "setting_fix", None) == "apply" else [])]
    validated.start_apart(Path(value) for name in names if (value := getattr(args, f"setting_{name}", None)))


def _handle_demo(args: argparse.Namespace) -> int:
    from cbacheck.commands import demo

    return demo.run(args)


def _handle_sandbox(args: argparse.Namespace) -> int:
    from cbacheck.sandbox import command as sandboxcommand

    return sandboxcommand.run(args)


def _handle_cert(args: argparse.Namespace) -> int:
    from cbacheck.commands import cert

    return cert.run(args)


def _handle_audit(args: argparse.Namespace) -> int:
    from cbacheck.commands import audit

    return audit.run(args)


def _handle_merge(args: argparse.Namespace) -> int:
    from cbacheck.commands import merge

    return merge.run(args)


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _handle_run,
    "demo": _handle_demo,
    "sandbox": _handle_sandbox,
    "cert": _handle_cert,
    "audit": _handle_audit,
    "merge": _handle_merge,
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, that command gets its real options and the others a name and help line."""
    parser = argparse.ArgumentParser(
        prog="cbacheck",
        description="Prove, fix and evidence an Exchange Online app-only certificate-based authentication setup.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cbacheck {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, help_text in COMMANDS.items():
        if only is None or name == only:
            _register(subparsers, name)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def chosen_command(args: Sequence[str]) -> str:
    """The command named on the command line (its first word that is not an option), or "" for none."""
    first = next((arg for arg in args if not arg.startswith("-")), "")
    return first if first in COMMANDS else ""


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Everything after a bare `--` goes to pytest untouched (cbacheck run ... -- -k cert).
    extra: list[str] = []
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, extra = args_list[:cut], args_list[cut + 1 :]
    parser = build_parser(chosen_command(args_list))
    args = parser.parse_args(args_list)
    args.extra_pytest_args = extra
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CbaCheckError as err:
        print(f"cbacheck: {err}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print("cbacheck: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as err:  # noqa: BLE001 - a bug in cbacheck: its own exit code, never 1 (a failed check)
        traceback.print_exc(file=sys.stderr)
        print(
            f"cbacheck: internal error ({type(err).__name__}); this is a bug in cbacheck, "
            "please report it with the trace above",
            file=sys.stderr,
        )
        return ExitCode.INTERNAL
    finally:
        if argv is None:
            # Run as the program, the process ends now: frozen, what the command made is not scanned once more
            # by the interpreter's last collection on exit (about 30 ms after a run), which could only find
            # cycles that exiting frees anyway. Called with arguments (tests, embedding), nothing changes.
            gc.freeze()


if __name__ == "__main__":  # pragma: no cover - exercised through `python -m cbacheck`
    sys.exit(main())
