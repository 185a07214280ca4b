"""Metrics per task and per modality subset, through any runner (ONNX Runtime or PyTorch).

For each of the 7 non-empty modality subsets:
- ``digit``: on the fixed consistent test rows, absent modalities fed as the service feeds
  them; accuracy, macro precision/recall/F1, one-vs-rest macro ROC-AUC, confusion matrix;
- ``consistent``: on the same rows with half of them made inconsistent (one present
  modality shows another digit); only for subsets of two or more modalities, since a single
  modality always agrees with itself.

A *runner* maps a dict of graph inputs to a dict of graph outputs, so the same code scores
the PyTorch model, the ONNX graph and its int8 variant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from export.config import DataConfig
from export.dataset import SUBSETS, Pools, Rows, assemble, consistency_rows, split_rows, subset_name

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
OUTPUTS = ["digit_probs", "consistent_probs", "contributions", "embedding"]


def ort_runner(path: Path, threads: int = 2) -> Runner:
    """An ONNX Runtime session on ``path`` as a runner."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(None, inputs), strict=True))

    return run


def torch_runner(model: Any) -> Runner:
    """A PyTorch module with the graph's signature as a runner."""
    import torch

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
        return {n: o.numpy() for n, o in zip(OUTPUTS, out, strict=True)}

    return run


def predict(
    run: Runner, pools: Pools, rows: Rows, presence: tuple[int, ...], batch: int = 250
) -> dict[str, np.ndarray]:
    """Run every row of ``rows`` with the given presence; outputs concatenated."""
    pres = np.tile(np.asarray(presence, dtype=np.float32), (len(rows.digit), 1))
    parts: dict[str, list[np.ndarray]] = {}
    for s in range(0, len(rows.digit), batch):
        out = run(assemble(pools, rows.index[s : s + batch], pres[s : s + batch]))
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def task_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro P/R/F1, ROC-AUC (one-vs-rest macro for > 2 classes), confusion."""
    n_classes = probs.shape[1]
    pred = probs.argmax(axis=1)
    p, r, f, _ = precision_recall_fscore_support(
        y, pred, labels=list(range(n_classes)), average="macro", zero_division=0
    )
    if n_classes == 2:
        auc = float(roc_auc_score(y, probs[:, 1]))
    else:
        auc = float(
            roc_auc_score(
                y, probs, multi_class="ovr", average="macro", labels=list(range(n_classes))
            )
        )
    return {
        "accuracy": round(float((pred == y).mean()), 4),
        "macro_precision": round(float(p), 4),
        "macro_recall": round(float(r), 4),
        "macro_f1": round(float(f), 4),
        "roc_auc": round(auc, 4),
        "confusion": confusion_matrix(y, pred, labels=list(range(n_classes))).tolist(),
    }


def evaluate(run: Runner, cfg: DataConfig, pools: Pools) -> dict[str, Any]:
    """Both tasks on every subset: {"digit": {subset: metrics}, "consistent": {...},
    "contributions": {subset: mean weights}, "rows": n}."""
    rows = split_rows(cfg, pools)
    out: dict[str, Any] = {
        "rows": len(rows.digit),
        "digit": {},
        "consistent": {},
        "contributions": {},
    }
    for presence in SUBSETS:
        name = subset_name(presence)
        pred = predict(run, pools, rows, presence)
        out["digit"][name] = task_metrics(rows.digit, pred["digit_probs"])
        out["contributions"][name] = [
            round(float(x), 3) for x in pred["contributions"].mean(axis=0)
        ]
        if sum(presence) >= 2:
            mixed = consistency_rows(cfg, pools, presence)
            pred = predict(run, pools, mixed, presence)
            out["consistent"][name] = task_metrics(mixed.consistent, pred["consistent_probs"])
    return out


def accuracies(results: dict[str, Any], task: str = "digit") -> dict[str, float]:
    """{subset: accuracy} for one task."""
    return {k: v["accuracy"] for k, v in results[task].items()}


def speed(run: Runner, pools: Pools, cfg: DataConfig, batch: int = 32, repeats: int = 30) -> float:
    """Median seconds per batch of ``batch`` three-modality rows."""
    rows = split_rows(cfg, pools)
    inputs = assemble(pools, rows.index[:batch], np.ones((batch, 3), dtype=np.float32))
    run(inputs)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(inputs)
        times.append(time.perf_counter() - t)
    return float(np.median(times))
