"""Entry point of the ``flowlearn`` command; each subcommand's module exposes ``register(subparsers)``.

Bad input (:class:`~flowlearn._checks.UserInputError`) and an ``OSError`` of the environment
(:data:`flowlearn.io.ENVIRONMENT_ERRNOS`) are one line on stderr with exit code 2 (3 for a
:class:`~flowlearn._checks.ComputationError`); any other exception is a bug and keeps its traceback (``--debug``:
always).  Under ``torchrun`` the process group is joined first and rank 0 writes the outputs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
import threading

from .. import __version__
from .._checks import ComputationError, UserInputError
from ..engine.distributed import cleanup as distributed_cleanup
from ..engine.distributed import setup as distributed_setup
from ..io import ENVIRONMENT_ERRNOS, describe_os_error

# Subcommand modules, in the order shown by ``flowlearn --help``.
COMMANDS = ["demo", "gfe", "gradcheck", "ising", "label", "learn", "predict", "reproduce", "segment", "train_labeler",
            "voronoi"]
_ROLE = re.compile(r":(?:math|class|func|meth|mod|data|attr|obj):`~?([^`]*)`")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlearn",
        description="Learning and inference with ODE flows: assignment flows, "
        "randomized assignment flows and gradient flow encoding.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of every error")
    parser.add_argument("--version", action="version", version=f"flowlearn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"flowlearn.cli.{name}").register(sub)
    _plain_help(parser)
    return parser


def plain(text: str | None) -> str | None:
    """Help text without reStructuredText markup: ``x`` -> x, :class:`~a.B` -> B, :math:`x` -> x."""
    if not text:
        return text
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if "." in m.group(1) and " " not in m.group(1)
                     else m.group(1), text)
    return text.replace("``", "")


def _plain_help(parser) -> None:
    """Strip reStructuredText markup from every description and help text (they come from docstrings)."""
    parser.description = plain(parser.description)
    for action in parser._actions:
        action.help = plain(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _plain_help(child)


def _terminate(signum, frame):
    raise KeyboardInterrupt("terminated by SIGTERM")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM (schedulers, `timeout`) ends a command like Ctrl-C; training loops checkpoint first
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    try:
        if distributed:
            distributed_setup()
        return int(args.func(args) or 0)
    except UserInputError as exc:
        if args.debug:
            raise
        print(f"flowlearn {args.command}: error: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, ComputationError) else 2
    except OSError as exc:   # the environment's doing (disk full, --out removed, a name too long): one line
        if args.debug or exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"flowlearn {args.command}: error: {describe_os_error(exc, action=None)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"flowlearn {args.command}: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if distributed:
            distributed_cleanup()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
