"""The `cbacheck` command: parses arguments and hands each subcommand to its module."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

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


def build_parser() -> argparse.ArgumentParser:
    from cbacheck.commands import cert, demo, run
    from cbacheck.sandbox import command as sandboxcommand

    parser = argparse.ArgumentParser(
        prog="cbacheck",
        description="Prove, fix and evidence an Exchange Online app-only certificate-based authentication setup.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cbacheck {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    run.add_parser(subparsers)
    demo.add_parser(subparsers)
    sandboxcommand.add_parser(subparsers)
    cert.add_parser(subparsers)
    # Each module registers its own options; the handler is bound here so that every
    # subcommand is dispatched the same way.
    handlers = {
        "run": run.run,
        "demo": demo.run,
        "sandbox": sandboxcommand.run,
        "cert": cert.run,
    }
    for name, handler in handlers.items():
        subparsers.choices[name].set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Everything after a bare `--` goes to pytest untouched (cbacheck run ... -- -k cert).
    extra: list[str] = []
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, extra = args_list[:cut], args_list[cut + 1 :]
    parser = build_parser()
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


if __name__ == "__main__":  # pragma: no cover - exercised through `python -m cbacheck`
    sys.exit(main())
