"""Runnable examples of the loop API, each one small enough to read in a minute and exercised by the tests.

Run them all with ``python -m alkit.examples``.
"""
