"""The API reference (docs/api, ``make docs``) builds without warnings and documents every export.

One Sphinx build per session (about 15 s on 2 cores) into a temporary folder; skipped when Sphinx is
not installed (it comes with the ``test`` and ``docs`` extras) or outside a source checkout.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import flowlearn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "api"

pytestmark = pytest.mark.skipif(not (DOCS / "conf.py").is_file(), reason="not run from a source checkout")

#: page of the reference -> the modules it documents (each with its ``__all__``)
PAGES = {
    "flowlearn": ["flowlearn"],
    "geometry": ["flowlearn.geometry"],
    "graphs": ["flowlearn.graphs"],
    "solvers": ["flowlearn.solvers"],
    "engine": ["flowlearn.engine"],
    "linearized": ["flowlearn.linearized"],
    "labeling": ["flowlearn.labeling"],
    "learning": ["flowlearn.learning"],
    "pgm": ["flowlearn.pgm"],
    "randomized": ["flowlearn.randomized"],
    "encoding": ["flowlearn.encoding"],
    "evaluation": ["flowlearn.evaluation"],
    "experiments": ["flowlearn.experiments." + m for m in (
        "table1", "table1_config", "weight_learning", "ambiguous_segmentation", "photo_segmentation", "isbi",
        "gfe_data_efficiency", "reproduce")],
    "data": ["flowlearn.data"],
    "io": ["flowlearn.io"],
    "status": ["flowlearn.status"],
}
#: packages without a page: the command line (documented by ``flowlearn --help``)
NO_PAGE = {"flowlearn.cli"}
#: re-exports documented only where they are defined (``:exclude-members:`` on the page)
DOCUMENTED_AS = {f"flowlearn.experiments.table1.{n}": f"flowlearn.experiments.table1_config.{n}"
                 for n in ("IsingExperimentConfig", "PAPER_TABLE1")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build the HTML reference once: (exit code, output, html folder)."""
    pytest.importorskip("sphinx")
    out = tmp_path_factory.mktemp("docs") / "html"
    env = dict(os.environ, FLOWLEARN_NO_PROGRESS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-d", str(out.parent / "doctrees"), str(DOCS), str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    return proc.returncode, proc.stdout + proc.stderr, out


def inventory_names(path: Path) -> set[str]:
    """The Python objects (``py:`` domain) indexed in a Sphinx ``objects.inv``."""
    raw = path.read_bytes()
    header, body = raw.split(b"\n", 4)[:4], raw.split(b"\n", 4)[4]
    assert header[0].startswith(b"# Sphinx inventory version 2"), header
    names = set()
    for line in zlib.decompress(body).decode("utf-8").splitlines():
        m = re.match(r"(?x)(.+?)\s+(\S+):(\S+)\s+(-?\d+)\s+", line)
        if m and m.group(2) == "py":
            names.add(m.group(1))
    return names


def documented_names(html: str, module: str) -> set[str]:
    """The names of ``module``'s own object descriptions on one HTML page (indexed or not)."""
    return set(re.findall(r'<span class="sig-prename descclassname"><span class="pre">' + re.escape(module + ".")
                          + r'</span></span><span class="sig-name descname"><span class="pre">([^<]+)</span>', html))


def test_api_reference_builds_without_warnings(built):
    returncode, output, out = built
    warnings = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert returncode == 0 and not warnings, "sphinx -W failed:\n" + "\n".join(warnings or [output[-3000:]])
    assert (out / "index.html").is_file()


def test_every_package_has_a_page():
    documented = {m for modules in PAGES.values() for m in modules}
    packages = {f"flowlearn.{p.name}" for p in pkgutil.iter_modules(flowlearn.__path__)
                if p.ispkg and not p.name.startswith("_")}
    assert packages - NO_PAGE <= documented | {"flowlearn.experiments"}
    for page, modules in PAGES.items():
        text = (DOCS / f"{page}.rst").read_text(encoding="utf-8")
        for module in modules:
            assert f".. automodule:: {module}\n" in text, (page, module)
        assert f"\n   {page}\n" in (DOCS / "index.rst").read_text(encoding="utf-8"), page


def test_every_export_is_documented(built):
    _, output, out = built
    assert (out / "objects.inv").is_file(), output[-3000:]
    indexed = inventory_names(out / "objects.inv")
    missing = []
    for page, modules in PAGES.items():
        html = (out / f"{page}.html").read_text(encoding="utf-8")
        for module in modules:
            names = importlib.import_module(module).__all__  # the top level's come from __getattr__
            for name in names:
                if module == "flowlearn":  # listed without index entries (each is indexed in its package)
                    ok = name in documented_names(html, module)
                else:
                    full = f"{module}.{name}"
                    ok = DOCUMENTED_AS.get(full, full) in indexed
                if not ok:
                    missing.append(f"{module}.{name} ({page}.rst)")
    assert not missing, "exported but not in the API reference:\n" + "\n".join(missing)
