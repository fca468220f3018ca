"""Experiments: the papers' studies and the recipes behind the documented results, one per module (import the
modules themselves: ``from flowlearn.experiments import table1``); the command line calls them.
"""
