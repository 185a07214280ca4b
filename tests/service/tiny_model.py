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
    ImageRecipe,
    Manifest,
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


def _manifest(name: str, version: str, vocab: int) -> Manifest:
    def spec(n: str, dtype: str, *shape: int | str) -> TensorSpec:
        return TensorSpec.model_validate({"name": n, "dtype": dtype, "shape": ["batch", *shape]})

    return Manifest(
        name=name,
        version=version,
        description="Test model: random weights, the real contract.",
        inputs=[
            spec("image", "float32", 1, 32, 32),
            spec("audio", "float32", 20, AUDIO.frames),
            spec("input_ids", "int64", "tokens"),
            spec("attention_mask", "int64", "tokens"),
            spec("presence", "float32", 3),
        ],
        outputs=[
            spec("digit_probs", "float32", 10),
            spec("consistent_probs", "float32", 2),
            spec("contributions", "float32", 3),
            spec("embedding", "float32", DIM),
        ],
        modality_order=["image", "audio", "text"],
        presence_input="presence",
        modalities=ModalityRecipes(image=IMAGE, audio=AUDIO, text=TEXT),
        tasks=[
            TaskSpec(name="digit", output="digit_probs", labels=[str(d) for d in range(10)]),
            TaskSpec(name="consistent", output="consistent_probs", labels=["no", "yes"]),
        ],
        contribution_output="contributions",
        embedding_output="embedding",
        fusion="mean",
        provenance=Provenance(opset=17, source="tests/service/tiny_model.py"),
        evaluation={"note": "random weights"},
        batching={"max_batch_size": 4, "max_wait_ms": 2.0},  # type: ignore[arg-type]
    )


def _graph(vocab: int, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int, scale: float = 0.05) -> onnx.TensorProto:
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name
        )

    n = helper.make_node
    frames = AUDIO.frames
    nodes = [
        n("Flatten", ["image"], ["img_flat"], axis=1),
        n("MatMul", ["img_flat", "w_img"], ["img_vec"]),
        n("Flatten", ["audio"], ["aud_flat"], axis=1),
        n("MatMul", ["aud_flat", "w_aud"], ["aud_vec"]),
        n("Gather", ["emb", "input_ids"], ["tok_vec"]),  # (B, T, D)
        n("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        n("Unsqueeze", ["mask_f", "axis_last"], ["mask_3"]),
        n("Mul", ["tok_vec", "mask_3"], ["tok_masked"]),
        n("ReduceSum", ["tok_masked", "axis_1"], ["tok_sum"], keepdims=0),
        n("ReduceSum", ["mask_f", "axis_1"], ["mask_sum"], keepdims=1),
        n("Max", ["mask_sum", "one"], ["mask_den"]),
        n("Div", ["tok_sum", "mask_den"], ["txt_vec"]),
        n("Concat", ["img_vec", "aud_vec", "txt_vec"], ["stacked_flat"], axis=1),
        n("Reshape", ["stacked_flat", "shape_b3d"], ["stacked"]),  # (B, 3, D)
        n("ReduceSum", ["presence", "axis_1"], ["present_n"], keepdims=1),
        n("Max", ["present_n", "one"], ["present_den"]),
        n("Div", ["presence", "present_den"], ["contributions"]),  # (B, 3)
        n("Unsqueeze", ["contributions", "axis_last"], ["weights"]),
        n("Mul", ["stacked", "weights"], ["weighted"]),
        n("ReduceSum", ["weighted", "axis_1"], ["fused"], keepdims=0),
        n("Tanh", ["fused"], ["embedding"]),
        n("MatMul", ["embedding", "w_digit"], ["digit_logits"]),
        n("Softmax", ["digit_logits"], ["digit_probs"], axis=-1),
        n("MatMul", ["embedding", "w_cons"], ["cons_logits"]),
        n("Softmax", ["cons_logits"], ["consistent_probs"], axis=-1),
    ]
    inits = [
        weight("w_img", 1024, DIM),
        weight("w_aud", 20 * frames, DIM, scale=0.02),
        weight("emb", vocab, DIM, scale=1.0),
        weight("w_digit", DIM, 10, scale=3.0),
        weight("w_cons", DIM, 2, scale=3.0),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis_last"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
        numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
        numpy_helper.from_array(np.array([-1, 3, DIM], dtype=np.int64), "shape_b3d"),
    ]

    def value(name: str, elem: int, *shape: int | str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, elem, ["batch", *shape])

    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            value("image", TensorProto.FLOAT, 1, 32, 32),
            value("audio", TensorProto.FLOAT, 20, frames),
            value("input_ids", TensorProto.INT64, "tokens"),
            value("attention_mask", TensorProto.INT64, "tokens"),
            value("presence", TensorProto.FLOAT, 3),
        ],
        [
            value("digit_probs", TensorProto.FLOAT, 10),
            value("consistent_probs", TensorProto.FLOAT, 2),
            value("contributions", TensorProto.FLOAT, 3),
            value("embedding", TensorProto.FLOAT, DIM),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_tiny_model(root: Path, name: str = "tiny", version: str = "1", seed: int = 0) -> Path:
    """Write ``root/name/version/`` (model.onnx, manifest.json, tokenizer/); returns it."""
    folder = root / name / version
    (folder / TEXT.tokenizer_dir).mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    tokenizer.save(str(folder / TEXT.tokenizer_dir / "tokenizer.json"))
    onnx.save(_graph(tokenizer.get_vocab_size(), seed), str(folder / "model.onnx"))
    write_manifest(_manifest(name, version, tokenizer.get_vocab_size()), folder)
    return folder


def copy_model(source: Path, root: Path, name: str, version: str) -> Path:
    """Copy a model folder under a new name/version (its manifest rewritten to match)."""
    from service.manifest import load_manifest

    folder = root / name / version
    shutil.copytree(source, folder)
    manifest = load_manifest(folder).model_copy(update={"name": name, "version": version})
    write_manifest(manifest, folder)
    return folder
