"""Request rows and their collation into one batch for the graph.

A :class:`FeatureRow` is one request's graph inputs without the batch axis, grouped by the
modality that produced them. :func:`collate` builds the batch the manifest describes:

- present modalities are stacked; text is right-padded with id 0 and mask 0 to the longest
  row in the batch (padding is masked inside the graph, so a row's answer does not depend on
  its neighbours);
- absent modalities are zeros, except text, which gets one pad token with mask 1 so that no
  attention row is fully masked (the graph ignores it through the presence mask);
- the presence input is 1.0 where a row carries the modality, in ``manifest.modality_order``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.manifest import Manifest, Modality, TensorSpec, TextRecipe

_NUMPY_DTYPES: dict[str, type[np.generic]] = {
    "float32": np.float32,
    "float16": np.float16,
    "int64": np.int64,
    "int32": np.int32,
    "bool": np.bool_,
}


@dataclass(frozen=True)
class FeatureRow:
    """Per present modality: graph input name -> array without the batch axis."""

    inputs: dict[Modality, dict[str, np.ndarray]]

    @property
    def modalities(self) -> list[Modality]:
        return list(self.inputs)


def numpy_dtype(spec: TensorSpec) -> type[np.generic]:
    return _NUMPY_DTYPES[spec.dtype]


def _fixed_shape(spec: TensorSpec, what: str) -> tuple[int, ...]:
    dims = spec.shape[1:]
    if not all(isinstance(d, int) for d in dims):
        raise ValueError(f"{what} input {spec.name!r} needs fixed non-batch dims, got {spec.shape}")
    return tuple(int(d) for d in dims)


def _collate_text(
    rows: Sequence[FeatureRow], recipe: TextRecipe, manifest: Manifest
) -> dict[str, np.ndarray]:
    lengths = [
        len(row.inputs["text"][recipe.input_ids]) if "text" in row.inputs else 1 for row in rows
    ]
    width = max(lengths)
    ids_dtype = numpy_dtype(manifest.input_spec(recipe.input_ids))
    mask_dtype = numpy_dtype(manifest.input_spec(recipe.attention_mask))
    ids = np.zeros((len(rows), width), dtype=ids_dtype)
    mask = np.zeros((len(rows), width), dtype=mask_dtype)
    for i, row in enumerate(rows):
        text = row.inputs.get("text")
        if text is None:
            mask[i, 0] = 1
            continue
        n = lengths[i]
        ids[i, :n] = text[recipe.input_ids]
        mask[i, :n] = text[recipe.attention_mask]
    return {recipe.input_ids: ids, recipe.attention_mask: mask}


def _collate_dense(
    rows: Sequence[FeatureRow], modality: Modality, input_name: str, manifest: Manifest
) -> np.ndarray:
    spec = manifest.input_spec(input_name)
    batch = np.zeros((len(rows), *_fixed_shape(spec, modality)), dtype=numpy_dtype(spec))
    for i, row in enumerate(rows):
        values = row.inputs.get(modality)
        if values is not None:
            batch[i] = values[input_name]
    return batch


def collate(rows: Sequence[FeatureRow], manifest: Manifest) -> dict[str, np.ndarray]:
    """Rows -> the graph's feed dict, presence mask included."""
    feeds: dict[str, np.ndarray] = {}
    presence = np.zeros((len(rows), len(manifest.modality_order)), dtype=np.float32)
    for j, modality in enumerate(manifest.modality_order):
        recipe = manifest.recipe(modality)
        if isinstance(recipe, TextRecipe):
            feeds.update(_collate_text(rows, recipe, manifest))
        else:
            feeds[recipe.input] = _collate_dense(rows, modality, recipe.input, manifest)
        for i, row in enumerate(rows):
            presence[i, j] = modality in row.inputs
    feeds[manifest.presence_input] = presence.astype(
        numpy_dtype(manifest.input_spec(manifest.presence_input))
    )
    return feeds


def split_rows(outputs: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    """Batched outputs -> one dict per row (copies, so a row never pins the whole batch)."""
    return [{name: value[i].copy() for name, value in outputs.items()} for i in range(n)]
