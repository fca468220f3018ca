"""Entry point of the ``flowlearn`` command.

Each subcommand lives in its own module under :mod:`flowlearn.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
``func(args) -> int``.  ``ValueError``/``TypeError``/``FileNotFoundError`` raised by
the library are reported as one clear line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order shown by ``flowlearn --help``.
COMMANDS = [
    "demo",
    "gfe",
    "gradcheck",
    "ising",
    "label",
    "learn",
    "predict",
    "reproduce",
    "voronoi",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlearn",
        description="Learning and inference with ODE flows: assignment flows, "
        "randomized assignment flows and gradient flow encoding.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"flowlearn.cli.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"flowlearn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flowlearn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
