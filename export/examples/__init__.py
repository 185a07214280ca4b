"""Example ``--factory`` functions for ``python -m export byom``."""
