"""``mmserve`` / ``python -m service``: ``serve`` the models, or ``bench`` them.

Flags override the ``MMSERVE_*`` environment. The settings reach every serving process as
environment variables either way, so the worker processes (``--workers N``, one per core by
default, started by :mod:`service.workers`) build the very same
:class:`~service.settings.Settings`, once each; so do uvicorn's own worker processes through
``service.app.app_from_env`` on a system without ``SO_REUSEPORT``.

Nothing here imports numpy: BLAS thread counts must be in the environment before any process
loads it (``OMP_NUM_THREADS`` and friends, 1 unless the user set them).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from service import blas
from service.helptext import plain

if TYPE_CHECKING:
    from service.settings import Settings

CONFIG_ERROR = 2  # the settings, API keys or model folder are not usable (as for a bad flag)
# flag -> environment variable read by Settings
_SERVE_FLAGS = {
    "host": "MMSERVE_HOST",
    "port": "MMSERVE_PORT",
    "workers": "MMSERVE_WORKERS",
    "model_dir": "MMSERVE_MODEL_DIR",
    "allow_empty": "MMSERVE_ALLOW_EMPTY_MODEL_DIR",
    "default_model": "MMSERVE_DEFAULT_MODEL",
    "providers": "MMSERVE_RUNTIME__PROVIDERS",
    "log_level": "MMSERVE_LOG_LEVEL",
    "max_batch_size": "MMSERVE_BATCHING__MAX_BATCH_SIZE",
    "max_wait_ms": "MMSERVE_BATCHING__MAX_WAIT_MS",
    "feature_threads": "MMSERVE_RUNTIME__FEATURE_THREADS",
    "api_keys_file": "MMSERVE_API_KEYS_FILE",
    "allowed_hosts": "MMSERVE_ALLOWED_HOSTS",
}


def _serve_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="serve the models over HTTP")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    serve.add_argument(
        "--model-dir",
        help="folder of <name>/<version>/manifest.json models (default: onnx_models/ of the "
        "repository); serve exits with an error if it holds none",
    )
    serve.add_argument(
        "--allow-empty",
        action="store_true",
        default=None,
        help="start even if the model folder exists but holds no model yet",
    )
    serve.add_argument("--default-model", help="model answering /v1/predict")
    serve.add_argument(
        "--providers",
        help="ONNX Runtime providers in order, e.g. CUDAExecutionProvider,CPUExecutionProvider, "
        "or 'auto'",
    )
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--max-batch-size",
        type=int,
        help="largest batch for every model, overriding the max_batch_size in each manifest",
    )
    serve.add_argument(
        "--max-wait-ms",
        type=float,
        help="longest wait for a batch to fill for every model, overriding the max_wait_ms in "
        "each manifest",
    )
    serve.add_argument(
        "--feature-threads", type=int, help="batch threads (decode, features, inference) per model"
    )
    # No flag for the keys themselves: a command line is visible to every local user (ps).
    serve.add_argument(
        "--api-keys-file", help="file of '<name> sha256:<hex>' lines (keys: MMSERVE_API_KEYS)"
    )
    serve.add_argument(
        "--allowed-hosts", help="comma-separated Host names served (default: loopback names)"
    )


def build_parser() -> argparse.ArgumentParser:
    description = plain(__doc__.split("\n\n")[0])
    parser = argparse.ArgumentParser(prog="mmserve", description=description)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _serve_parser(subparsers)
    # The benchmark parses its own options (everything after ``bench``).
    subparsers.add_parser("bench", help="benchmark the service (see README)", add_help=False)
    return parser


def export_flags(args: argparse.Namespace, environ: MutableMapping[str, str]) -> None:
    """Write the given flags into ``environ`` as the variables Settings reads."""
    for flag, variable in _SERVE_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            environ[variable] = str(value)
    blas.default_to_one_thread(environ)


def serve(args: argparse.Namespace) -> int:
    export_flags(args, os.environ)
    import uvicorn

    from service.workers import Supervisor, reuseport_supported

    settings = checked_settings()  # the flags and environment, before any worker starts
    if settings is None:
        return CONFIG_ERROR
    if (problem := model_dir_problem(settings)) is not None:
        print(f"mmserve serve: error: {problem}", file=sys.stderr)
        return CONFIG_ERROR
    if settings.workers == 1:
        from service.process import serve_draining

        return serve_draining(settings, host=settings.host, port=settings.port)
    # Each worker writes its metrics here; /metrics in any worker merges them all.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = tempfile.mkdtemp(prefix="mmserve-metrics-")
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # Where the workers share V2 repository load/unload requests (service.control).
    if "MMSERVE_REPOSITORY__CONTROL_DIR" not in os.environ:
        control_dir = tempfile.mkdtemp(prefix="mmserve-control-")
        atexit.register(shutil.rmtree, control_dir, ignore_errors=True)
        os.environ["MMSERVE_REPOSITORY__CONTROL_DIR"] = control_dir
    if reuseport_supported():
        # This supervisor's own (a control dir may be shared by replicas): service.restarts.
        restarts_dir = tempfile.mkdtemp(prefix="mmserve-restarts-")
        atexit.register(shutil.rmtree, restarts_dir, ignore_errors=True)
        return Supervisor(settings, Path(restarts_dir) / "worker-restarts.json").run()
    # No SO_REUSEPORT (not Linux/BSD): uvicorn's supervisor shares one socket. Its workers
    # finish in-flight work on SIGTERM but skip the readiness flip and grace period.
    uvicorn.run(
        "service.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http="service.connections:EnvGuardedHttpToolsProtocol",
        timeout_keep_alive=math.ceil(settings.connections.idle_timeout_s),
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=round(settings.drain_timeout_s + settings.shutdown_grace_s),
    )
    return 0


def model_dir_problem(settings: Settings) -> str | None:
    """Why the model folder cannot serve, or None; checked before any worker starts."""
    from service.model_dir import ModelDirError, check_model_dir

    try:
        check_model_dir(settings.model_dir, allow_empty=settings.allow_empty_model_dir)
    except ModelDirError as exc:
        return str(exc)
    return None


def checked_settings() -> Settings | None:
    """The settings and API keys, or ``None`` after printing why they cannot be used."""
    from pydantic import ValidationError

    from service.keys import KeyConfigError, key_ring
    from service.settings import Settings

    try:
        settings = Settings()
        key_ring(settings)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            print(f"mmserve: {where + ': ' if where else ''}{error['msg']}", file=sys.stderr)
        return None
    except KeyConfigError as exc:
        print(f"mmserve: {exc}", file=sys.stderr)
        return None
    return settings


BENCH_MODULE = "tools.bench"  # in a source checkout only (tools/__init__.py says why)


def bench(argv: list[str]) -> int:
    """Run ``tools/bench/``, which lives beside the service in a source checkout only."""
    # By name, not an import statement: the service never depends on its tools, and the wheel
    # and the image have none (``python -m`` finds ``tools`` in the current folder).
    try:
        module = importlib.import_module(BENCH_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in ("tools", BENCH_MODULE):
            raise  # the benchmark is here but a dependency of it is not: say which
        print(
            "mmserve bench: the benchmark is not installed with the service; run "
            "`python -m service bench` from the root of a source checkout (tools/bench/)",
            file=sys.stderr,
        )
        return 2
    run: Callable[[list[str]], int] = module.main
    return run(argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return bench(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return serve(args)
