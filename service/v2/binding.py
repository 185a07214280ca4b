"""Decoded V2 tensors -> the rows the service's batcher takes, checked against the manifest.

A request carries one of two kinds of input, never both:

- **raw** inputs, BYTES tensors named after a modality (``image``, ``audio``, ``text``) holding
  the encoded file or the UTF-8 text, shape ``[N]`` or ``[N, 1]``: each row becomes the uploads
  of one ``/v1`` request and goes through the same feature extraction. An empty element means
  that row does not carry that modality.
- **feature** inputs, tensors named like the graph's own inputs with its datatypes and shapes
  (batch axis first): each row becomes a :class:`FeatureRow` directly. ``presence`` is
  optional; without it, a row carries exactly the modalities whose tensors were sent, and with
  it (0/1 per row and modality, in the manifest's order) a row carries those it marks.

Either way the client's batch is split into rows, so they share batches with other requests.
Text rows are trimmed after their last unmasked token, as the batcher pads again anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.errors import InvalidInput
from service.manifest import Manifest, Modality, TensorSpec, TextRecipe
from service.runtime.rows import FeatureRow
from service.v2 import datatypes
from service.v2.codec import OutputRequest, OutputTensor, Tensor
from service.v2.schemas import RequestInput

RawRow = dict[Modality, bytes]


@dataclass(frozen=True)
class ResolvedOutput:
    name: str
    binary: bool
    classification: int
    labels: list[str] | None  # a task output's labels, for the classification extension


class _Declared(Protocol):
    """What a tensor declares: the header's input before decoding, or a decoded tensor."""

    @property
    def name(self) -> str: ...

    @property
    def datatype(self) -> str: ...

    @property
    def shape(self) -> Sequence[int]: ...


def check_declared(inputs: Sequence[RequestInput], manifest: Manifest, *, max_rows: int) -> None:
    """The model's rules on names, datatypes, shapes and rows, on the header alone, so that
    nothing is decoded for a request the model would refuse (6 M empty BYTES elements cost a
    4-byte prefix each on the wire, and seconds and a gigabyte as Python objects)."""
    graph_inputs = {spec.name: spec for spec in manifest.inputs}
    for spec in inputs:
        if spec.datatype == datatypes.BYTES and spec.name in manifest.modality_order:
            _check_raw_shape(spec)
        else:
            _check_known(spec, graph_inputs.get(spec.name), manifest)
        rows = spec.shape[0] if spec.shape else 0
        if not 1 <= rows <= max_rows:
            raise InvalidInput(
                f"input {spec.name!r} has {rows} rows (first dimension); this model takes 1 "
                f"to {max_rows}",
                field=spec.name,
            )


def bind_inputs(
    tensors: Sequence[Tensor], manifest: Manifest, *, max_rows: int, vocab_size: int | None
) -> list[RawRow] | list[FeatureRow]:
    by_name = _unique(tensors)
    raw = {n: t for n, t in by_name.items() if _is_raw(t, manifest)}
    features = {n: t for n, t in by_name.items() if n not in raw}
    graph_inputs = {spec.name: spec for spec in manifest.inputs}
    for name, tensor in features.items():
        _check_known(tensor, graph_inputs.get(name), manifest)
    if raw and features:
        raise InvalidInput(
            f"send either raw BYTES inputs ({', '.join(sorted(raw))}) or feature tensors "
            f"({', '.join(sorted(features))}), not both in one request"
        )
    if raw:
        return _raw_rows(raw, max_rows)
    return _feature_rows(features, manifest, max_rows, vocab_size)


def resolve_outputs(
    requested: Sequence[OutputRequest] | None, manifest: Manifest, binary_default: bool
) -> list[ResolvedOutput]:
    """The outputs to answer with, in the order asked (every graph output when none are)."""
    labels = {task.output: task.labels for task in manifest.tasks}
    known = [spec.name for spec in manifest.outputs]
    if requested is None:
        return [ResolvedOutput(n, binary_default, 0, labels.get(n)) for n in known]
    resolved: list[ResolvedOutput] = []
    for output in requested:
        if output.name not in known:
            raise InvalidInput(
                f"unknown output {output.name!r}; the outputs are: {', '.join(known)}"
            )
        if any(r.name == output.name for r in resolved):
            raise InvalidInput(f"output {output.name!r} is requested more than once")
        if output.classification and output.name not in labels:
            raise InvalidInput(
                f"output {output.name!r} has no labels; classification is available for "
                + ", ".join(labels)
            )
        binary = binary_default if output.binary is None else output.binary
        resolved.append(
            ResolvedOutput(output.name, binary, output.classification, labels.get(output.name))
        )
    return resolved


def assemble_outputs(
    outputs: Sequence[ResolvedOutput],
    rows: Sequence[Mapping[str, np.ndarray]],
    flags: Mapping[str, dict[str, str]] | None = None,
) -> list[OutputTensor]:
    """Per-row results -> one tensor per output with the client's batch axis first;
    ``flags``: parameters per output name (:mod:`service.v2.annotations`)."""
    assembled: list[OutputTensor] = []
    for output in outputs:
        stacked = np.stack([row[output.name] for row in rows])
        if output.classification and output.labels is not None:
            stacked = _classify(stacked, output.labels, output.classification)
        parameters = dict((flags or {}).get(output.name, {}))
        assembled.append(OutputTensor(output.name, stacked, output.binary, parameters))
    return assembled


def carried_modalities(
    rows: Sequence[RawRow] | Sequence[FeatureRow], manifest: Manifest
) -> list[list[Modality]]:
    """The modalities each row carries, in the manifest's order."""
    return [
        [m for m in manifest.modality_order if m in (row if isinstance(row, dict) else row.inputs)]
        for row in rows
    ]


def _classify(probabilities: np.ndarray, labels: list[str], count: int) -> np.ndarray:
    """The classification extension: the top ``count`` as ``"<value>:<index>:<label>"``."""
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, : min(count, len(labels))]
    table = [
        [f"{probabilities[r, c]:f}:{c}:{labels[c]}".encode() for c in row]
        for r, row in enumerate(top)
    ]
    classes = np.empty(top.shape, dtype=object)
    classes[...] = table
    return classes


def _unique(tensors: Sequence[Tensor]) -> dict[str, Tensor]:
    by_name: dict[str, Tensor] = {}
    for tensor in tensors:
        if tensor.name in by_name:
            raise InvalidInput(f"input {tensor.name!r} is sent more than once")
        by_name[tensor.name] = tensor
    return by_name


def _is_raw(tensor: Tensor, manifest: Manifest) -> bool:
    return tensor.datatype == datatypes.BYTES and tensor.name in manifest.modality_order


def _check_known(tensor: _Declared, spec: TensorSpec | None, manifest: Manifest) -> None:
    if spec is None and tensor.name in manifest.modality_order:
        raise InvalidInput(
            f"input {tensor.name!r} has datatype {tensor.datatype}; raw inputs are BYTES",
            field=tensor.name,
        )
    if spec is None:
        graph = ", ".join(s.name for s in manifest.inputs)
        raw = ", ".join(manifest.modality_order)
        raise InvalidInput(
            f"unknown input {tensor.name!r}; this model takes the feature tensors {graph}, "
            f"or the raw BYTES inputs {raw}",
            field=tensor.name,
        )
    expected = datatypes.from_manifest(spec.dtype)
    if tensor.datatype != expected:
        raw_hint = " or BYTES (the encoded file)" if tensor.name in manifest.modality_order else ""
        raise InvalidInput(
            f"input {tensor.name!r} has datatype {tensor.datatype}; expected {expected}{raw_hint}",
            field=tensor.name,
        )
    if len(tensor.shape) != len(spec.shape) or any(
        isinstance(want, int) and got != want
        for got, want in zip(tensor.shape[1:], spec.shape[1:], strict=True)
    ):
        shown = [-1 if isinstance(d, str) else d for d in spec.shape]
        raise InvalidInput(
            f"input {tensor.name!r} has shape {list(tensor.shape)}; expected {shown} "
            "(-1: any size)",
            field=tensor.name,
        )


def _batch_size(tensors: Mapping[str, Tensor], max_rows: int) -> int:
    sizes = {name: tensor.shape[0] for name, tensor in tensors.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidInput(f"the inputs disagree on the batch size (first dimension): {sizes}")
    rows = next(iter(sizes.values()))
    if not 1 <= rows <= max_rows:
        raise InvalidInput(f"the batch has {rows} rows; this model takes 1 to {max_rows}")
    return rows


def _check_raw_shape(tensor: _Declared) -> None:
    if len(tensor.shape) not in (1, 2) or tuple(tensor.shape[1:]) not in ((), (1,)):
        raise InvalidInput(
            f"raw input {tensor.name!r} has shape {list(tensor.shape)}; expected [N] or "
            "[N, 1], one encoded file or text per row",
            field=tensor.name,
        )


def _raw_rows(tensors: Mapping[str, Tensor], max_rows: int) -> list[RawRow]:
    for tensor in tensors.values():
        _check_raw_shape(tensor)
    rows: list[RawRow] = [{} for _ in range(_batch_size(tensors, max_rows))]
    for name, tensor in tensors.items():
        modality: Modality = name  # type: ignore[assignment]  # _is_raw checked the name
        for row, element in zip(rows, tensor.array.ravel(), strict=True):
            if element:
                row[modality] = element
    for i, row in enumerate(rows):
        if not row:
            raise InvalidInput(f"row {i} carries no input: every element of it is empty")
    return rows


def _feature_rows(
    tensors: Mapping[str, Tensor], manifest: Manifest, max_rows: int, vocab_size: int | None
) -> list[FeatureRow]:
    rows = _batch_size(tensors, max_rows)
    arrays = {name: tensor.array for name, tensor in tensors.items()}
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(f"input {name!r} holds NaN or infinite values", field=name)
    sent = _sent_modalities(arrays, manifest)
    carried = _carried(arrays.get(manifest.presence_input), sent, manifest, rows)
    feature_rows: list[FeatureRow] = []
    for i in range(rows):
        inputs: dict[Modality, dict[str, np.ndarray]] = {}
        for modality in carried[i]:
            recipe = manifest.recipe(modality)
            if isinstance(recipe, TextRecipe):
                inputs[modality] = _text_row(arrays, recipe, i, vocab_size)
            else:
                inputs[modality] = {recipe.input: arrays[recipe.input][i].copy()}
        if not inputs:
            raise InvalidInput(f"row {i} carries no modality")
        feature_rows.append(FeatureRow(inputs))
    return feature_rows


def _graph_inputs(modality: Modality, manifest: Manifest) -> list[str]:
    recipe = manifest.recipe(modality)
    if isinstance(recipe, TextRecipe):
        return [recipe.input_ids, recipe.attention_mask]
    return [recipe.input]


def _sent_modalities(arrays: Mapping[str, np.ndarray], manifest: Manifest) -> list[Modality]:
    sent: list[Modality] = []
    for modality in manifest.modality_order:
        names = _graph_inputs(modality, manifest)
        given = [n for n in names if n in arrays]
        if given and len(given) != len(names):
            missing = sorted(set(names) - set(given))
            raise InvalidInput(f"{modality} needs {', '.join(names)}; missing {missing}")
        if given:
            sent.append(modality)
    if not sent:
        needed = ", ".join(n for m in manifest.modality_order for n in _graph_inputs(m, manifest))
        raise InvalidInput(f"send the feature tensors of at least one modality: {needed}")
    return sent


def _carried(
    presence: np.ndarray | None, sent: list[Modality], manifest: Manifest, rows: int
) -> list[list[Modality]]:
    """Per row, the modalities it carries."""
    if presence is None:
        return [list(sent) for _ in range(rows)]
    if not np.isin(presence, (0.0, 1.0)).all():
        raise InvalidInput(f"{manifest.presence_input!r} must hold only 0 and 1")
    carried: list[list[Modality]] = []
    for i in range(rows):
        marked = [m for j, m in enumerate(manifest.modality_order) if presence[i, j] == 1.0]
        if missing := [m for m in marked if m not in sent]:
            raise InvalidInput(
                f"{manifest.presence_input!r} marks {', '.join(missing)} present in row {i} "
                "but its tensors were not sent"
            )
        carried.append(marked)
    return carried


def _text_row(
    arrays: Mapping[str, np.ndarray], recipe: TextRecipe, i: int, vocab_size: int | None
) -> dict[str, np.ndarray]:
    ids, mask = arrays[recipe.input_ids][i], arrays[recipe.attention_mask][i]
    if not np.isin(mask, (0, 1)).all():
        raise InvalidInput(f"{recipe.attention_mask!r} must hold only 0 and 1 (row {i})")
    unmasked = np.flatnonzero(mask)
    if unmasked.size == 0:
        raise InvalidInput(f"row {i} carries text but {recipe.attention_mask!r} is all zeros")
    length = int(unmasked[-1]) + 1
    if length > recipe.max_length:
        raise InvalidInput(
            f"row {i} has {length} tokens; this model takes at most {recipe.max_length}"
        )
    ids = ids[:length]
    if vocab_size is not None and (ids.min() < 0 or ids.max() >= vocab_size):
        raise InvalidInput(
            f"{recipe.input_ids!r} of row {i} holds ids outside the vocabulary [0, {vocab_size})"
        )
    return {recipe.input_ids: ids.copy(), recipe.attention_mask: mask[:length].copy()}
