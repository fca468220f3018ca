"""Benchmarks of flowlearn, run from the repository root as modules: ``python -m benchmarks.segmentation``.

Not part of the installed package; the modules import one another as ``benchmarks.<name>``
(e.g. ``from benchmarks import segmentation_peers``).
"""
