"""The ``lb-operator`` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lb_operator import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lb-operator",
        description="Cloud load balancers as Kubernetes objects, serialized per load balancer.",
    )
    parser.add_argument("--version", action="version", version=f"lb-operator {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return 0
