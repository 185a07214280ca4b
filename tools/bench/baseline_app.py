"""The baseline users would otherwise write: a synchronous Flask app, one inference per request.

Run under gunicorn with one sync worker per core::

    MMSERVE_BENCH_MODEL=onnx_models/digits-xattn/1 \\
        gunicorn -w 2 -k sync 'tools.bench.baseline_app:create_app()'

It uses the service's own feature functions (``extract_row``) and ``ModelSession`` with the
same thread settings (one ONNX Runtime intra-op thread, BLAS at one thread), so the
comparison measures serving architecture, not a handicapped configuration. Each worker loads
its own copy of the model at start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from threadpoolctl import threadpool_limits

from service.errors import ServiceError
from service.manifest import Modality
from tools.bench.model import InProcessModel, load_model

MODEL_ENV = "MMSERVE_BENCH_MODEL"


def _uploads() -> dict[Modality, bytes | str]:
    uploads: dict[Modality, bytes | str] = {}
    if "text" in request.form:
        uploads["text"] = request.form["text"]
    for name in ("image", "audio"):
        if name in request.files:
            uploads[name] = request.files[name].read()
    return uploads


def _answer(model: InProcessModel, outputs: dict[str, Any]) -> dict[str, Any]:
    tasks = {}
    for task in model.manifest.tasks:
        probs = outputs[task.output]
        best = int(probs.argmax())
        tasks[task.name] = {"label": task.labels[best], "probability": float(probs[best])}
    return {"model": model.manifest.name, "version": model.manifest.version, "tasks": tasks}


def create_app(model_dir: Path | None = None) -> Flask:
    threadpool_limits(1)  # one BLAS/OpenMP thread per worker process, as in the service
    model = load_model(model_dir or Path(os.environ[MODEL_ENV]))
    app = Flask(__name__)

    @app.get("/readyz")
    def readyz() -> ResponseReturnValue:
        return jsonify(status="ready")

    @app.post("/v1/predict")
    def predict() -> ResponseReturnValue:
        try:
            row = model.features(_uploads())
            outputs = model.infer([row])[0]
        except ServiceError as exc:
            return jsonify(error={"code": exc.code, "message": exc.message}), exc.status_code
        return jsonify(_answer(model, outputs))

    return app
