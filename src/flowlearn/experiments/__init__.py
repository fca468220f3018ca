"""Experiments: the papers' studies and the recipes behind the documented results.

Each module is one experiment with a frozen config and a ``run_*`` function; the command line's
adapters (:mod:`flowlearn.cli`) build the config from flags and make one call.  Import the modules
themselves (``from flowlearn.experiments import table1``).
"""
