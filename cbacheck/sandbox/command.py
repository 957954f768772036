"""The ``cbacheck sandbox`` command: start the sandbox tenant in the foreground."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from cbacheck.sandbox.faults import SandboxError
from cbacheck.sandbox.scenario import scenario_names
from cbacheck.sandbox.server import Sandbox, is_loopback

HELP = "run the sandbox tenant (local Entra ID, Graph and Exchange over HTTPS)"


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register the ``sandbox`` subcommand."""
    parser = subparsers.add_parser("sandbox", help=HELP, description=HELP)
    configure(parser)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox options to a parser."""
    parser.add_argument(
        "--scenario",
        metavar="NAME|PATH",
        help="scenario name or scenario file (default: healthy); names: "
        "see docs/sandbox.md or 'cbacheck sandbox --list'",
    )
    parser.add_argument("--state", metavar="FILE", type=Path, help="plain state file (Graph JSON)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default 0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host that is not a loopback address (other machines can then reach the sandbox)",
    )
    parser.add_argument("--latency-ms", type=int, default=0, help="delay added to every response")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of Graph/Exchange requests answered 429 or 503"
    )
    parser.add_argument("--fault-seed", type=int, default=1, help="seed that makes faults repeatable")
    parser.add_argument(
        "--propagation-s",
        type=float,
        default=0.0,
        help="seconds before new credentials, consents and role assignments reach token issuance",
    )
    parser.add_argument("--ready-file", type=Path, help="also write the ready line to this file")
    parser.add_argument("--dump", metavar="FILE", type=Path, help="write the state here on shutdown")
    parser.add_argument("--workdir", type=Path, help="folder for the CA and certificates (default: temporary)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")


def run(args: argparse.Namespace) -> int:
    """Start the sandbox, print the ready line, serve until SIGINT/SIGTERM; 2 on bad input."""
    if getattr(args, "list", False):
        for name in scenario_names():
            print(name)
        return 0
    problem = _option_problem(args)
    if problem is not None:
        _error(problem)
        return 2
    if not is_loopback(args.host):
        _error(f"warning: listening on {args.host}, not only on loopback: other machines can reach this test tenant")
    try:
        sandbox = Sandbox(
            None if args.state is not None else (args.scenario or "healthy"),
            state_file=args.state,
            port=args.port,
            latency_ms=args.latency_ms,
            fault_rate=args.fault_rate,
            fault_seed=args.fault_seed,
            propagation_s=args.propagation_s,
            workdir=args.workdir,
            host=args.host,
            allow_remote=args.allow_remote,
        )
        info = sandbox.start()
    except SandboxError as exc:
        _error(str(exc))
        return 2
    return _serve(sandbox, json.dumps(info.as_dict()), args)


def _option_problem(args: argparse.Namespace) -> str | None:
    if args.state is not None and args.scenario is not None:
        return "give either --scenario or --state, not both"
    if not is_loopback(args.host) and not args.allow_remote:
        return (
            f"--host {args.host} is not a loopback address: other machines could reach this test tenant. "
            "Add --allow-remote to listen there anyway."
        )
    return None


def _serve(sandbox: Sandbox, line: str, args: argparse.Namespace) -> int:
    """Print the ready line and serve until SIGINT/SIGTERM; then write --dump."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.ready_file is not None:
            try:
                args.ready_file.write_text(line + "\n", encoding="utf-8")
            except OSError as exc:
                _error(f"cannot write ready file '{args.ready_file}': {exc.strerror or exc}")
                return 2
        print(line, flush=True)
        while not stop.wait(0.2):
            pass
        if args.dump is not None:
            try:
                args.dump.write_text(json.dumps(sandbox.dump(), indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                _error(f"cannot write dump file '{args.dump}': {exc.strerror or exc}")
                return 2
        return 0
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _error(message: str) -> None:
    print(f"cbacheck sandbox: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cbacheck.sandbox``."""
    parser = argparse.ArgumentParser(prog="python -m cbacheck.sandbox", description=HELP)
    configure(parser)
    return run(parser.parse_args(argv))
