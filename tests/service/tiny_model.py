"""A small but real model folder built with ``onnx.helper``: the manifest contract, random weights.

Used where a test needs a model folder it can break or duplicate (a broken manifest next to a
working model, several versions of one name) and, until the trained models are committed, as
the stand-in for them. The graph keeps the contract of ``service/manifest.py``: image, audio,
input_ids/attention_mask and presence in; two tasks' probabilities, per-modality contributions
and the fused embedding out. Text is mean-pooled over the attention mask, so padding a row in a
batch cannot change its answer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from service.manifest import (
    AudioRecipe,
    BatchingSpec,
    ImageRecipe,
    Manifest,
    Modality,
    ModalityRecipes,
    Provenance,
    TaskSpec,
    TensorSpec,
    TextRecipe,
    write_manifest,
)

DIM = 8
WORDS = "zero one two three four five six seven eight nine".split()
IMAGE = ImageRecipe(
    input="image", height=32, width=32, mode="L", invert=True, mean=[0.2], std=[0.3]
)
AUDIO = AudioRecipe(
    input="audio",
    sample_rate=16000,
    clip_seconds=1.0,
    n_fft=512,
    hop_length=160,
    n_mels=40,
    n_mfcc=20,
    normalize="per_clip",
)
TEXT = TextRecipe(
    input_ids="input_ids",
    attention_mask="attention_mask",
    tokenizer_dir="tokenizer",
    max_length=16,
)


def _tokenizer() -> Tokenizer:
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tok


ALL: tuple[Modality, ...] = ("image", "audio", "text")
_BRANCH_INPUTS: dict[Modality, list[tuple[str, int, tuple[int | str, ...]]]] = {
    "image": [("image", TensorProto.FLOAT, (1, 32, 32))],
    "audio": [("audio", TensorProto.FLOAT, (20, AUDIO.frames))],
    "text": [
        ("input_ids", TensorProto.INT64, ("tokens",)),
        ("attention_mask", TensorProto.INT64, ("tokens",)),
    ],
}
_DTYPES = {TensorProto.FLOAT: "float32", TensorProto.INT64: "int64"}


def _manifest(name: str, version: str, modalities: tuple[Modality, ...]) -> Manifest:
    def spec(n: str, dtype: str, *shape: int | str) -> TensorSpec:
        return TensorSpec.model_validate({"name": n, "dtype": dtype, "shape": ["batch", *shape]})

    count = len(modalities)
    inputs = [spec(n, _DTYPES[t], *shape) for m in modalities for n, t, shape in _BRANCH_INPUTS[m]]
    recipes = {"image": IMAGE, "audio": AUDIO, "text": TEXT}
    return Manifest(
        name=name,
        version=version,
        description="Test model: random weights, the real contract.",
        inputs=[*inputs, spec("presence", "float32", count)],
        outputs=[
            spec("digit_probs", "float32", 10),
            spec("consistent_probs", "float32", 2),
            spec("contributions", "float32", count),
            spec("embedding", "float32", DIM),
        ],
        modality_order=list(modalities),
        presence_input="presence",
        modalities=ModalityRecipes.model_validate({m: recipes[m] for m in modalities}),
        tasks=[
            TaskSpec(name="digit", output="digit_probs", labels=[str(d) for d in range(10)]),
            TaskSpec(
                name="consistent",
                output="consistent_probs",
                labels=["no", "yes"],
                min_modalities=min(2, count),  # a one-modality model cannot ask for two
            ),
        ],
        contribution_output="contributions",
        embedding_output="embedding",
        fusion="mean",
        provenance=Provenance(opset=17, source="tests/service/tiny_model.py"),
        evaluation={"note": "random weights"},
        batching=BatchingSpec(max_batch_size=4, max_wait_ms=2.0),
    )


Branch = tuple[list[onnx.NodeProto], list[onnx.TensorProto]]


def _branches(vocab: int, rng: np.random.Generator) -> dict[Modality, Branch]:
    """Per modality: the nodes computing its ``(B, D)`` vector ``<modality>_vec``, weights."""
    n = helper.make_node

    def weight(name: str, *shape: int, scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name
        )

    text_nodes = [
        n("Gather", ["emb", "input_ids"], ["tok_vec"]),  # (B, T, D)
        n("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        n("Unsqueeze", ["mask_f", "axis_last"], ["mask_3"]),
        n("Mul", ["tok_vec", "mask_3"], ["tok_masked"]),
        n("ReduceSum", ["tok_masked", "axis_1"], ["tok_sum"], keepdims=0),
        n("ReduceSum", ["mask_f", "axis_1"], ["mask_sum"], keepdims=1),
        n("Max", ["mask_sum", "one"], ["mask_den"]),
        n("Div", ["tok_sum", "mask_den"], ["text_vec"]),  # mean over real tokens
    ]
    return {
        "image": (
            [
                n("Flatten", ["image"], ["img_flat"], axis=1),
                n("MatMul", ["img_flat", "w_img"], ["image_vec"]),
            ],
            [weight("w_img", 1024, DIM, scale=0.05)],
        ),
        "audio": (
            [
                n("Flatten", ["audio"], ["aud_flat"], axis=1),
                n("MatMul", ["aud_flat", "w_aud"], ["audio_vec"]),
            ],
            [weight("w_aud", 20 * AUDIO.frames, DIM, scale=0.02)],
        ),
        "text": (text_nodes, [weight("emb", vocab, DIM, scale=1.0)]),
    }


def _graph(vocab: int, seed: int, modalities: tuple[Modality, ...]) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    n = helper.make_node
    branches = _branches(vocab, rng)
    nodes = [node for m in modalities for node in branches[m][0]]
    inits = [init for m in modalities for init in branches[m][1]]
    count = len(modalities)
    nodes += [
        n("Concat", [f"{m}_vec" for m in modalities], ["stacked_flat"], axis=1),
        n("Reshape", ["stacked_flat", "shape_bmd"], ["stacked"]),  # (B, M, D)
        n("ReduceSum", ["presence", "axis_1"], ["present_n"], keepdims=1),
        n("Max", ["present_n", "one"], ["present_den"]),
        n("Div", ["presence", "present_den"], ["contributions"]),  # (B, M)
        n("Unsqueeze", ["contributions", "axis_last"], ["weights"]),
        n("Mul", ["stacked", "weights"], ["weighted"]),
        n("ReduceSum", ["weighted", "axis_1"], ["fused"], keepdims=0),
        n("Tanh", ["fused"], ["embedding"]),
        n("MatMul", ["embedding", "w_digit"], ["digit_logits"]),
        n("Softmax", ["digit_logits"], ["digit_probs"], axis=-1),
        n("MatMul", ["embedding", "w_cons"], ["cons_logits"]),
        n("Softmax", ["cons_logits"], ["consistent_probs"], axis=-1),
    ]
    inits += [
        numpy_helper.from_array((rng.standard_normal((DIM, 10)) * 3).astype(np.float32), "w_digit"),
        numpy_helper.from_array((rng.standard_normal((DIM, 2)) * 3).astype(np.float32), "w_cons"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis_last"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
        numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
        numpy_helper.from_array(np.array([-1, count, DIM], dtype=np.int64), "shape_bmd"),
    ]

    def value(name: str, elem: int, *shape: int | str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, elem, ["batch", *shape])

    inputs = [value(n_, t, *shape) for m in modalities for n_, t, shape in _BRANCH_INPUTS[m]]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [*inputs, value("presence", TensorProto.FLOAT, count)],
        [
            value("digit_probs", TensorProto.FLOAT, 10),
            value("consistent_probs", TensorProto.FLOAT, 2),
            value("contributions", TensorProto.FLOAT, count),
            value("embedding", TensorProto.FLOAT, DIM),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_tiny_model(
    root: Path,
    name: str = "tiny",
    version: str = "1",
    seed: int = 0,
    modalities: tuple[Modality, ...] = ALL,
) -> Path:
    """Write ``root/name/version/`` (model.onnx, manifest.json, tokenizer/); returns it."""
    folder = root / name / version
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    if "text" in modalities:
        (folder / TEXT.tokenizer_dir).mkdir()
        tokenizer.save(str(folder / TEXT.tokenizer_dir / "tokenizer.json"))
    onnx.save(_graph(tokenizer.get_vocab_size(), seed, modalities), str(folder / "model.onnx"))
    write_manifest(_manifest(name, version, modalities), folder)
    return folder


def copy_model(source: Path, root: Path, name: str, version: str) -> Path:
    """Copy a model folder under a new name/version (its manifest rewritten to match)."""
    from service.manifest import load_manifest

    folder = root / name / version
    shutil.copytree(source, folder)
    manifest = load_manifest(folder).model_copy(update={"name": name, "version": version})
    write_manifest(manifest, folder)
    return folder
