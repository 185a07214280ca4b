"""BLAS and OpenMP thread pools: one thread per pool unless the user chose otherwise.

Each worker already runs its batch threads on the cores; BLAS pools on top oversubscribe them
(measured: OpenBLAS's default threads made the 40x257 mel product 8 ms, not 0.05 ms). The
variables must be set before a process loads numpy, so ``serve`` sets them for its workers
(:func:`default_to_one_thread`, no numpy imported), and the app limits the pools of a process
that has loaded numpy already (:func:`limit_loaded_pools`).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def default_to_one_thread(environ: MutableMapping[str, str]) -> None:
    """One thread for each pool the user has not sized (for processes not yet started)."""
    for variable in THREAD_VARIABLES:
        environ.setdefault(variable, "1")


def limit_loaded_pools() -> None:
    """One thread for this process's pools, loaded or not, unless the user sized any."""
    if any(name in os.environ for name in THREAD_VARIABLES):
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
