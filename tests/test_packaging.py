"""Packaging: ``flowlearn --version`` and the files a distribution ships (LICENSE, CITATION.cff, py.typed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import flowlearn

#: the source checkout's root (holds pyproject.toml); None when flowlearn is installed elsewhere
_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = _ROOT if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "src" / "flowlearn").is_dir() else None

needs_checkout = pytest.mark.skipif(REPO_ROOT is None, reason="not run from a source checkout of flowlearn")


def test_version_flag_prints_the_package_version():
    env = dict(os.environ, FLOWLEARN_NO_PROGRESS="1")
    proc = subprocess.run([sys.executable, "-m", "flowlearn", "--version"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"flowlearn {flowlearn.__version__}"


@needs_checkout
def test_license_is_mit():
    text = (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the flowlearn developers" in text


@needs_checkout
def test_citation_cff_names_the_software_and_the_three_papers():
    path = REPO_ROOT / "CITATION.cff"
    text = path.read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:  # check the key lines instead
        for line in ("cff-version: 1.2.0", "title: flowlearn", f"version: {flowlearn.__version__}",
                     "references:"):
            assert line in text.splitlines(), line
        assert text.count("  - type: ") == 3
        return
    data = yaml.safe_load(text)
    assert data["cff-version"] == "1.2.0"
    assert data["type"] == "software"
    assert data["title"] == "flowlearn"
    assert str(data["version"]) == flowlearn.__version__
    assert data["message"] and data["authors"]
    titles = [ref["title"] for ref in data["references"]]
    assert titles == [
        "Learning Linearized Assignment Flows for Image Labeling",
        "Modeling Large-scale Joint Distributions and Inference by Randomized Assignment",
        "Explicit and data-Efficient Encoding via Gradient Flow",
    ]
    for ref in data["references"]:
        assert ref["authors"] and all("family-names" in a for a in ref["authors"])


@needs_checkout
def test_py_typed_marker_is_present_and_shipped():
    assert (REPO_ROOT / "src" / "flowlearn" / "py.typed").is_file()
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "[tool.setuptools.package-data]" in pyproject
    import tomllib

    data = tomllib.loads(pyproject)["tool"]["setuptools"]["package-data"]["flowlearn"]
    assert "py.typed" in data and "models/*.pt" in data and "models/*.md" in data   # the shipped models too


def test_imports_and_locks_without_fcntl(tmp_path):
    """The package imports where ``fcntl`` does not exist (Windows), and a run directory still works."""
    import subprocess
    import sys

    code = (
        "import builtins, numpy, torch, tqdm, matplotlib  # third-party modules load as they would on Windows\n"
        "real = builtins.__import__\n"
        "def hide(name, *a, **k):\n"
        "    if name in ('fcntl', 'msvcrt'):\n"
        "        raise ImportError(name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = hide\n"
        "import flowlearn\n"
        "from flowlearn.engine import RunDirectory\n"
        "import flowlearn.engine.rundir as r\n"
        f"with RunDirectory({str(tmp_path / 'o')!r}, command='label') as rd:\n"
        "    (rd.path / 'x.txt').write_text('x')\n"
        "print(r.fcntl is None, flowlearn.__version__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "0.1.0"]


def test_help_texts_have_no_markup_and_no_contradictory_defaults():
    import argparse
    import re

    from flowlearn.cli.main import build_parser

    def texts(parser):
        yield parser.description or ""
        for action in parser._actions:
            yield action.help or ""
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from texts(child)

    all_text = list(texts(build_parser()))
    assert len(all_text) > 200
    for t in all_text:
        assert "``" not in t and not re.search(r":(class|func|math|mod|meth):`", t), t
        assert not ("Default" in t and "(default None)" in t), t
        assert not re.search(r"\\[a-zA-Z]+", t), t   # no TeX left from a docstring


def test_every_generated_flag_is_documented():
    """A flag generated from a config field whose docstring lost its entry falls back to the bare field name."""
    import argparse

    from flowlearn.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    bare = [f"{name} --{a.dest}" for name, parser in sub.choices.items() for a in parser._actions
            if a.help and a.help.split(" (default")[0].strip() == a.dest.replace("_", " ")]
    assert not bare, bare
