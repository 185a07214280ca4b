"""One request's CPU work: uploaded bytes and text -> a :class:`FeatureRow`.

Called in a worker thread (see :mod:`service.runtime.threads`), never on the event loop.
The same function serves the multipart API and the V2 protocol's BYTES inputs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer

from service.errors import InvalidInput
from service.features.audio import audio_features
from service.features.image import image_features
from service.features.text import encode_text
from service.manifest import AudioRecipe, ImageRecipe, Manifest, Modality, TextRecipe
from service.runtime.input_values import file_value, text_value
from service.runtime.rows import FeatureRow
from service.settings import Limits


class FeatureSource(Protocol):
    """What feature extraction needs of a loaded model."""

    @property
    def manifest(self) -> Manifest: ...

    @property
    def tokenizer(self) -> Tokenizer | None: ...


@dataclass
class ExtractedRow:
    row: FeatureRow
    feature_ms: dict[Modality, float] = field(default_factory=dict)


def _text_row(
    value: bytes | str, recipe: TextRecipe, tokenizer: Tokenizer | None, limits: Limits
) -> dict[str, np.ndarray]:
    text = text_value(value, limits)
    if tokenizer is None:
        raise InvalidInput("this model has no tokenizer", field="text")
    ids, mask = encode_text(text, tokenizer, recipe)
    return {recipe.input_ids: ids, recipe.attention_mask: mask}


def extract_row(
    source: FeatureSource, uploads: Mapping[Modality, bytes | str], limits: Limits
) -> ExtractedRow:
    """Decode and featurise every present modality, timing each."""
    manifest = source.manifest
    if not uploads:
        raise InvalidInput(
            f"send at least one of: {', '.join(manifest.modality_order)}", field=None
        )
    inputs: dict[Modality, dict[str, np.ndarray]] = {}
    timings: dict[Modality, float] = {}
    for modality, value in uploads.items():
        if modality not in manifest.modality_order:
            raise InvalidInput(
                f"model {manifest.name!r} does not take {modality}; it takes "
                f"{', '.join(manifest.modality_order)}",
                field=modality,
            )
        start = time.perf_counter()
        recipe = manifest.recipe(modality)
        if isinstance(recipe, TextRecipe):
            inputs[modality] = _text_row(value, recipe, source.tokenizer, limits)
        elif isinstance(recipe, ImageRecipe):
            data = file_value(value, modality)
            pixels = image_features(
                data,
                recipe,
                max_pixels=limits.max_image_pixels,
                max_decoded_bytes=limits.max_image_decoded_bytes,
            )
            inputs[modality] = {recipe.input: pixels}
        elif isinstance(recipe, AudioRecipe):
            data = file_value(value, modality)
            coefficients = audio_features(
                data,
                recipe,
                max_seconds=limits.max_audio_seconds,
                max_channels=limits.max_audio_channels,
                max_sample_rate=limits.max_audio_sample_rate,
                max_samples=limits.max_audio_samples,
            )
            inputs[modality] = {recipe.input: coefficients}
        timings[modality] = (time.perf_counter() - start) * 1000.0
    return ExtractedRow(FeatureRow(inputs), timings)
