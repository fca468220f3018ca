"""Shared command line of the example scripts: ``--small`` (what CI runs) and ``--out DIR``."""

import argparse
from pathlib import Path


def example_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--small", action="store_true", help="a reduced size that runs in seconds (CI)")
    p.add_argument("--out", default=None, help="output directory (default runs/examples/<script name>)")
    return p.parse_args()


def out_dir(args, name: str) -> Path:
    from flowlearn.io import ensure_out_dir

    return ensure_out_dir(args.out or Path("runs") / "examples" / name)
