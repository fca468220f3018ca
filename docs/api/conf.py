"""Sphinx configuration of the flowlearn API reference (``make docs``).

Built from the docstrings with autodoc and napoleon (numpy style); the build must stay free of
warnings (``sphinx -W``, checked by ``tests/test_docs_build.py``).  No network and no extra theme:
mathjax only links its script, so the math shows as markup when offline.
"""

import importlib
import inspect
import os
import sys

# A source checkout builds without installing the package.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src")))
os.environ.setdefault("FLOWLEARN_NO_PROGRESS", "1")

import flowlearn  # noqa: E402

project = "flowlearn"
author = "the flowlearn developers"
copyright = "2026, the flowlearn developers"
release = version = flowlearn.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]

# numpy-style docstrings only
napoleon_google_docstring = False
napoleon_numpy_docstring = True
# "Attributes" sections become field lists: dataclass fields are documented once, by autodoc
napoleon_use_ivar = True

# With ``__all__`` present, ``:members:`` documents exactly the exported names.
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

html_theme = "alabaster"
exclude_patterns = ["_build"]


def _reexported_data_doc(app, what, name, obj, options, lines):
    """The ``#:`` comment of a constant that a package re-exports (``.. autodata:: pkg.NAME``).

    autodoc reads ``#:`` comments only in the module that assigns the name, and leaves such a
    constant out of ``automodule``; the page names it with ``autodata`` and the comment is taken
    from the submodule that holds the same object.
    """
    if what != "data" or "\n".join(lines).strip() not in ("", inspect.cleandoc(type(obj).__doc__ or "")):
        return  # not data, or a comment of its own (the fallback is the docstring of its type)
    from sphinx.pycode import ModuleAnalyzer

    modname, _, attr = name.rpartition(".")
    importlib.import_module(modname)
    for sub in sorted(m for m in sys.modules if m.startswith(modname + ".")):
        if getattr(sys.modules[sub], attr, None) is obj:
            doc = ModuleAnalyzer.for_module(sub).find_attr_docs().get(("", attr))
            if doc:
                lines[:] = doc
                return


def setup(app):
    app.connect("autodoc-process-docstring", _reexported_data_doc)
