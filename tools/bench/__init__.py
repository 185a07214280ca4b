"""The benchmark: ``python -m service bench`` or ``python -m tools.bench`` (docs/benchmark.md).

One run measures, on the bundled default model and realistic uploads:

- :mod:`.ceiling`: the in-process ceiling (decode + features + batched inference, no HTTP);
- :mod:`.load`: the service and the baseline over HTTP, driven by ``hey``;
- :mod:`.memory`: resident memory after the runs and through a long soak;

then :mod:`.targets` checks issue 4's targets and :mod:`.report` prints the table and JSON.
:mod:`.runner` holds the sequence of a :mod:`.plan`; :mod:`.servers` starts and stops the servers
under test. It drives the service from outside and runs from a source checkout only (see
:mod:`tools`).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m service bench`` (imported by name by ``service.cli``)."""
    from tools.bench.cli import main as cli_main

    return cli_main(argv)
