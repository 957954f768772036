"""The options of `cbacheck run`, registered without importing pytest or anything the run itself needs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cbacheck.config import option_name, setting_fields

# `cbacheck run --help` imports only this module and the settings table (commands/run.py imports pytest).
HELP = "check the CBA chain and write HTML, JSON and JUnit reports"


def setting_dest(name: str) -> str:
    return "setting_" + name


def add_parser(subparsers: Any) -> None:
    """Register `cbacheck run`; every option comes from the settings table (secrets have none)."""
    parser = subparsers.add_parser(
        "run",
        help=HELP,
        description=(
            "Run every requirement check and write the reports. Each option can also come from the "
            "environment (CBACHECK_NAME) or a config file (cbacheck.toml or [tool.cbacheck] in "
            "pyproject.toml, found here: the subject only; --config PATH: any setting); secrets such as "
            "the PFX password come only from the environment or a file. "
            "Arguments after a bare -- go to pytest unchanged."
        ),
    )
    add_setting_options(parser)
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help="trusted TOML config file: may set any setting (or CBACHECK_CONFIG)"
    )
    opt_ins = parser.add_argument_group(
        "writes --fix apply makes only when asked here (never from the environment or a config file)"
    )
    opt_ins.add_argument(
        "--allow-role",
        action="append",
        default=[],
        metavar="ROLE",
        help="let the fix assign this directory role although it is not one Exchange accepts by default "
        "(over-privileged roles such as Global Administrator are never assigned; repeatable)",
    )
    opt_ins.add_argument(
        "--enable-service-principal", action="store_true", help="let the fix re-enable a disabled service principal"
    )
    opt_ins.add_argument(
        "--create-app", action="store_true", help="let the fix register a new app when app_id does not exist"
    )
    opt_ins.add_argument(
        "--allow-role-group",
        action="append",
        default=[],
        metavar="GROUP",
        help="let the Exchange RBAC fix add the app to this role group although it manages roles "
        "(Organization Management, or a group holding Role Management; repeatable)",
    )
    parser.add_argument(
        "--checks",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of custom checks to run as well (repeatable)",
    )


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One option per setting of the table (secrets have none), grouped as the table groups them."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for spec in setting_fields():
        if not spec.metadata["cli"]:
            continue
        group_name = spec.metadata["group"]
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(f"{group_name} settings")
        help_text = spec.metadata["help"]
        if spec.metadata["choices"]:
            help_text += f" (one of: {', '.join(spec.metadata['choices'])})"
        if spec.metadata["kind"] == "bool":
            groups[group_name].add_argument(
                option_name(spec.name),
                dest=setting_dest(spec.name),
                action=argparse.BooleanOptionalAction,
                help=help_text,
            )
        else:
            groups[group_name].add_argument(
                option_name(spec.name), dest=setting_dest(spec.name), metavar=spec.name.upper(), help=help_text
            )
