"""Decoded V2 tensors -> batcher rows, and the requested outputs, checked against a manifest."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import InvalidInput
from service.manifest import (
    AudioRecipe,
    ImageRecipe,
    Manifest,
    ModalityRecipes,
    Provenance,
    TaskSpec,
    TensorSpec,
    TextRecipe,
)
from service.runtime.rows import FeatureRow
from service.v2.binding import assemble_outputs, bind_inputs, resolve_outputs
from service.v2.codec import OutputRequest, Tensor


def _spec(name: str, dtype: str, *shape: int | str) -> TensorSpec:
    return TensorSpec.model_validate({"name": name, "dtype": dtype, "shape": ["batch", *shape]})


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return Manifest(
        name="m",
        version="1",
        inputs=[
            _spec("image", "float32", 1, 4, 4),
            _spec("audio", "float32", 2, 3),
            _spec("input_ids", "int64", "tokens"),
            _spec("attention_mask", "int64", "tokens"),
            _spec("presence", "float32", 3),
        ],
        outputs=[_spec("digit_probs", "float32", 3), _spec("embedding", "float32", 2)],
        modality_order=["image", "audio", "text"],
        presence_input="presence",
        modalities=ModalityRecipes(
            image=ImageRecipe(input="image", height=4, width=4, mode="L", mean=[0], std=[1]),
            audio=AudioRecipe(
                input="audio", sample_rate=8000, clip_seconds=0.01, n_fft=16, hop_length=40,
                n_mels=4, n_mfcc=2,
            ),
            text=TextRecipe(
                input_ids="input_ids", attention_mask="attention_mask", tokenizer_dir="t",
                max_length=4,
            ),
        ),
        tasks=[TaskSpec(name="digit", output="digit_probs", labels=["a", "b", "c"])],
        embedding_output="embedding",
        fusion="mean",
        provenance=Provenance(opset=17),
    )  # fmt: skip


def _t(name: str, array: np.ndarray, datatype: str) -> Tensor:
    return Tensor(name, datatype, array)


def _bind(manifest: Manifest, *tensors: Tensor) -> list[dict[str, bytes]] | list[FeatureRow]:
    return bind_inputs(tensors, manifest, max_rows=4, vocab_size=10)  # type: ignore[return-value]


def _bytes(*elements: bytes) -> np.ndarray:
    array = np.empty(len(elements), dtype=object)
    array[:] = list(elements)
    return array


def test_raw_rows_skip_empty_elements(manifest: Manifest) -> None:
    rows = _bind(
        manifest,
        _t("image", _bytes(b"png", b""), "BYTES"),
        _t("text", _bytes(b"one", b"two").reshape(2, 1), "BYTES"),
    )
    assert rows == [{"image": b"png", "text": b"one"}, {"text": b"two"}]


def test_feature_rows_without_presence(manifest: Manifest) -> None:
    pixels = np.arange(32, dtype=np.float32).reshape(2, 1, 4, 4)
    ids = np.array([[2, 5, 3, 0], [2, 6, 0, 0]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=np.int64)
    rows = _bind(
        manifest,
        _t("image", pixels, "FP32"),
        _t("input_ids", ids, "INT64"),
        _t("attention_mask", mask, "INT64"),
    )
    assert all(isinstance(r, FeatureRow) for r in rows)
    first, second = rows
    assert isinstance(first, FeatureRow) and isinstance(second, FeatureRow)
    assert first.modalities == second.modalities == ["image", "text"]
    np.testing.assert_array_equal(second.inputs["image"]["image"], pixels[1])
    np.testing.assert_array_equal(first.inputs["text"]["input_ids"], [2, 5, 3])  # trimmed
    np.testing.assert_array_equal(second.inputs["text"]["attention_mask"], [1, 1])


def test_presence_selects_modalities_per_row(manifest: Manifest) -> None:
    presence = np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float32)
    rows = _bind(
        manifest,
        _t("image", np.zeros((2, 1, 4, 4), np.float32), "FP32"),
        _t("audio", np.ones((2, 2, 3), np.float32), "FP32"),
        _t("presence", presence, "FP32"),
    )
    assert [r.modalities for r in rows if isinstance(r, FeatureRow)] == [
        ["image", "audio"],
        ["audio"],
    ]


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ([_t("depth", np.zeros((1, 2), np.float32), "FP32")], "unknown input 'depth'"),
        ([_t("image", np.zeros((1, 1, 4, 4), np.float64), "FP64")], "expected FP32 or BYTES"),
        ([_t("image", np.zeros((1, 4, 4), np.float32), "FP32")], r"expected \[-1, 1, 4, 4\]"),
        ([_t("input_ids", np.zeros((1, 2), np.int64), "INT64")], "missing"),
        (
            [
                _t("image", np.zeros((1, 1, 4, 4), np.float32), "FP32"),
                _t("text", _bytes(b"one"), "BYTES"),
            ],
            "not both",
        ),
        (
            [
                _t("image", np.zeros((1, 1, 4, 4), np.float32), "FP32"),
                _t("audio", np.zeros((2, 2, 3), np.float32), "FP32"),
            ],
            "disagree on the batch size",
        ),
        ([_t("image", np.zeros((5, 1, 4, 4), np.float32), "FP32")], "takes 1 to 4"),
        ([_t("image", np.full((1, 1, 4, 4), np.nan, np.float32), "FP32")], "NaN"),
        (
            [
                _t("image", np.zeros((1, 1, 4, 4), np.float32), "FP32"),
                _t("presence", np.array([[0, 0, 1]], np.float32), "FP32"),
            ],
            "marks text present",
        ),
        (
            [
                _t("input_ids", np.array([[2, 11]], np.int64), "INT64"),
                _t("attention_mask", np.array([[1, 1]], np.int64), "INT64"),
            ],
            "outside the vocabulary",
        ),
        (
            [
                _t("input_ids", np.array([[2, 3, 4, 5, 6]], np.int64), "INT64"),
                _t("attention_mask", np.ones((1, 5), np.int64), "INT64"),
            ],
            "at most 4",
        ),
        (
            [
                _t("input_ids", np.array([[2, 3]], np.int64), "INT64"),
                _t("attention_mask", np.zeros((1, 2), np.int64), "INT64"),
            ],
            "all zeros",
        ),
        ([_t("text", _bytes(b"", b""), "BYTES")], "row 0 carries no input"),
        ([_t("image", _bytes(b"a", b"b").reshape(1, 2), "BYTES")], r"expected \[N\] or \[N, 1\]"),
    ],
)
def test_bad_inputs(manifest: Manifest, tensors: list[Tensor], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        _bind(manifest, *tensors)


def test_outputs_default_to_all(manifest: Manifest) -> None:
    resolved = resolve_outputs(None, manifest, binary_default=True)
    assert [(o.name, o.binary) for o in resolved] == [("digit_probs", True), ("embedding", True)]


def test_outputs_subset_and_classification(manifest: Manifest) -> None:
    requested = [OutputRequest("embedding", None), OutputRequest("digit_probs", False, 2)]
    resolved = resolve_outputs(requested, manifest, binary_default=True)
    rows = [
        {"digit_probs": np.array([0.2, 0.7, 0.1], np.float32), "embedding": np.ones(2, np.float32)}
    ]
    embedding, top = assemble_outputs(resolved, rows)
    assert (embedding.name, embedding.binary, embedding.array.shape) == ("embedding", True, (1, 2))
    assert not top.binary
    assert top.array.tolist() == [[b"0.700000:1:b", b"0.200000:0:a"]]


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ([OutputRequest("logits", None)], "unknown output 'logits'"),
        ([OutputRequest("embedding", None), OutputRequest("embedding", None)], "more than once"),
        ([OutputRequest("embedding", None, 3)], "has no labels"),
    ],
)
def test_bad_outputs(manifest: Manifest, requested: list[OutputRequest], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        resolve_outputs(requested, manifest, binary_default=False)
