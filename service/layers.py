"""The layers of the ``service`` package, lowest first.

A module may import from its own layer and the layers below it, never from a layer above, and
no import cycle may run through the package (``tests/service/test_import_layers.py`` checks
every ``import`` in ``service/``, those inside functions included). Each module belongs to
exactly one layer: a name ending in ``.*`` is a package and everything in it. Data only;
``docs/architecture.md`` quotes it.

``service.bench`` and ``service.deploy`` are tools, not the service, and are leaving the
package (issue 12): they are in no layer, and no module of the service may import them.
"""

from __future__ import annotations

from typing import NamedTuple


class Layer(NamedTuple):
    name: str
    holds: str
    modules: tuple[str, ...]


LAYERS: tuple[Layer, ...] = (
    Layer(
        "foundation",
        "the version, configuration, the error tree, the manifest (the contract with export/), "
        "help text, this list",
        (
            "service",
            "service.errors",
            "service.settings",
            "service.manifest",
            "service.helptext",
            "service.layers",
        ),
    ),
    Layer(
        "support",
        "one process-wide concern each, knowing no loaded model and no route: memory, BLAS "
        "threads, logs, API keys, metrics, restarts, request ids, disconnects, draining, "
        "model folders, the control folder, the socket protocol",
        (
            "service.allocator",
            "service.blas",
            "service.control",
            "service.disconnect",
            "service.keys",
            "service.lifecycle",
            "service.log_limits",
            "service.metrics",
            "service.middleware",
            "service.model_dir",
            "service.protocol",
            "service.restarts",
        ),
    ),
    Layer("features", "uploaded bytes -> feature arrays, pure functions", ("service.features.*",)),
    Layer(
        "runtime",
        "rows, ONNX Runtime sessions, the batcher, warm-up, CPU threads",
        ("service.runtime.*",),
    ),
    Layer(
        "formats",
        "what requests and answers are made of: /v1 uploads and answer schemas (with the ood "
        "verdict), the V2 codec, tensor binding, metadata and errors",
        (
            "service.uploads",
            "service.schemas",
            "service.ood",
            "service.v2",
            "service.v2.annotations",
            "service.v2.binding",
            "service.v2.bounds",
            "service.v2.codec",
            "service.v2.datatypes",
            "service.v2.errors",
            "service.v2.metadata",
            "service.v2.schemas",
        ),
    ),
    Layer(
        "models",
        "the loaded models: loading, versions, reloading while serving",
        ("service.repository", "service.reload"),
    ),
    Layer(
        "serving",
        "one request's rows through a model's batcher into its answer, /v1 and V2",
        ("service.inference", "service.v2.inference"),
    ),
    Layer(
        "http",
        "around the routes: connection limits, Host and API-key guards, error answers, docs",
        (
            "service.auth",
            "service.connections",
            "service.docs",
            "service.exception_handlers",
            "service.hosts",
            "service.refusals",
        ),
    ),
    Layer(
        "routes",
        "the endpoints: dependencies, routers, the upload path and its fast path",
        ("service.deps", "service.routes.*"),
    ),
    Layer("app", "the application factory and its lifespan", ("service.app",)),
    Layer(
        "process",
        "serving processes: one drained server, the worker supervisor, the health check",
        ("service.process", "service.workers", "service.healthcheck"),
    ),
    Layer("entry", "the command line", ("service.cli", "service.__main__")),
)

# Tools inside the package for now (issue 12 moves them out).
NOT_THE_SERVICE = ("service.bench", "service.deploy")
