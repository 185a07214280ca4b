"""Warm-up: run every batch size once before the model is reported ready.

ONNX Runtime allocates its buffers and picks kernels per input shape on first use, so the
first request of each batch size would otherwise pay that cost while a client waits. Rows are
synthetic: every modality present, text at its maximum length.
"""

from __future__ import annotations

import time

import numpy as np

from service.manifest import Manifest, Modality, TextRecipe
from service.runtime.rows import FeatureRow, collate, numpy_dtype
from service.runtime.session import ModelSession


def synthetic_row(manifest: Manifest) -> FeatureRow:
    inputs: dict[Modality, dict[str, np.ndarray]] = {}
    for modality in manifest.modality_order:
        recipe = manifest.recipe(modality)
        if isinstance(recipe, TextRecipe):
            ids = np.ones(recipe.max_length, dtype=np.int64)
            inputs[modality] = {recipe.input_ids: ids, recipe.attention_mask: np.ones_like(ids)}
        else:
            spec = manifest.input_spec(recipe.input)
            shape = tuple(int(d) for d in spec.shape[1:])
            inputs[modality] = {recipe.input: np.zeros(shape, dtype=numpy_dtype(spec))}
    return FeatureRow(inputs)


def warm_up(session: ModelSession, manifest: Manifest, max_batch_size: int) -> float:
    """Run batch sizes 1..max_batch_size once each; returns the seconds it took."""
    start = time.perf_counter()
    row = synthetic_row(manifest)
    for size in range(1, max_batch_size + 1):
        session.run(collate([row] * size, manifest))
    return time.perf_counter() - start
