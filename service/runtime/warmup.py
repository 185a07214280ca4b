"""Warm-up: everything a model's first requests would pay once, paid before it is ready.

ONNX Runtime allocates its buffers and picks kernels per input shape on first use, so every
batch size runs once, on synthetic rows: every modality present, text at its maximum length.
The first feature extraction in a process pays one-off costs too (Pillow's codec plug-ins,
soxr's and numpy's FFT plans: up to a second), so one small upload per modality, encoded as
clients send them, is decoded and featurised. Neither would otherwise land on a client.
"""

from __future__ import annotations

import io
import time
from typing import Protocol

import numpy as np
import soundfile as sf
from PIL import Image

from service.manifest import AudioRecipe, ImageRecipe, Manifest, Modality, TextRecipe
from service.runtime.extract import FeatureSource, extract_row
from service.runtime.rows import FeatureRow, collate, numpy_dtype
from service.runtime.session import ModelSession
from service.settings import Limits


class Warmable(FeatureSource, Protocol):
    """What warm-up needs of a model: what its features need, and its session."""

    @property
    def session(self) -> ModelSession: ...


def synthetic_row(manifest: Manifest) -> FeatureRow:
    """Features of every modality, ready for the model (text at its maximum length)."""
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


def synthetic_uploads(manifest: Manifest) -> dict[Modality, bytes | str]:
    """One small upload per modality, encoded as clients send them."""
    uploads: dict[Modality, bytes | str] = {}
    for modality in manifest.modality_order:
        recipe = manifest.recipe(modality)
        if isinstance(recipe, ImageRecipe):
            buf = io.BytesIO()
            Image.new("RGB", (recipe.width * 2, recipe.height * 2), "white").save(buf, "PNG")
            uploads[modality] = buf.getvalue()
        elif isinstance(recipe, AudioRecipe):
            buf = io.BytesIO()
            rate = 44_100 if recipe.sample_rate != 44_100 else 48_000  # exercise resampling
            sf.write(buf, np.zeros(rate // 2, dtype=np.float32), rate, format="WAV")
            uploads[modality] = buf.getvalue()
        else:
            uploads[modality] = "warm up"
    return uploads


def warm_up(model: Warmable, max_batch_size: int, limits: Limits) -> float:
    """Run batch sizes 1..max_batch_size once each, then featurise one upload per modality;
    returns the seconds it took (blocking: call it on a thread)."""
    start = time.perf_counter()
    row = synthetic_row(model.manifest)
    for size in range(1, max_batch_size + 1):
        model.session.run(collate([row] * size, model.manifest))
    extract_row(model, synthetic_uploads(model.manifest), limits)
    return time.perf_counter() - start
