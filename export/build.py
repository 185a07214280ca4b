"""Rebuild a reference model folder end to end, and the manifest that describes it.

``build_reference(fusion)``: tokenizer -> feature pools -> train -> ONNX export -> parity and
batch-invariance checks -> evaluation through ONNX Runtime (fp32 and int8) -> report.md,
confusion_digit.png, tokenizer/ and manifest.json in ``onnx_models/<name>/1/``.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from export.config import (
    AUDIO_RECIPE,
    CONSISTENT_LABELS,
    DIGIT_LABELS,
    IMAGE_RECIPE,
    MODEL_NAMES,
    TEXT_RECIPE,
    DataConfig,
    Fusion,
    ModelConfig,
    TrainConfig,
)
from export.dataset import Pools, assemble, cached_pools, split_rows, texts
from export.evaluate import accuracies, evaluate, ort_runner, speed
from export.model import DigitModel
from export.onnx_export import OPSET, batch_invariance, export_graph, parity, quantize_int8
from export.ood import calibrate, ood_set
from export.report import write_confusion_png, write_report
from export.textforms import corpus
from export.tokenizer import save_tokenizer, train_tokenizer
from service.manifest import (
    BatchingSpec,
    Manifest,
    ModalityRecipes,
    OodSpec,
    Provenance,
    TaskSpec,
    TensorSpec,
    write_manifest,
)

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "onnx_models"
CACHE_DIR = REPO / ".cache"
ARTIFACTS_DIR = REPO / "artifacts"
VERSION = "1"
LIBRARIES = [
    "torch",
    "onnx",
    "onnxruntime",
    "transformers",
    "tokenizers",
    "numpy",
    "scikit-learn",
    "soxr",
    "pillow",
]


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


def reference_tokenizer(cfg: DataConfig) -> Tokenizer:
    """The WordPiece tokenizer trained on the clean forms plus the training texts."""
    items, _ = texts(cfg, "train")
    return train_tokenizer(corpus() + items)


def graph_specs(dim: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs and outputs of the reference models."""
    inputs = [
        TensorSpec(
            name="image",
            dtype="float32",
            shape=["batch", 1, IMAGE_RECIPE.height, IMAGE_RECIPE.width],
        ),
        TensorSpec(
            name="audio",
            dtype="float32",
            shape=["batch", AUDIO_RECIPE.coefficients, AUDIO_RECIPE.frames],
        ),
        TensorSpec(name="input_ids", dtype="int64", shape=["batch", "tokens"]),
        TensorSpec(name="attention_mask", dtype="int64", shape=["batch", "tokens"]),
        TensorSpec(name="presence", dtype="float32", shape=["batch", 3]),
    ]
    outputs = [
        TensorSpec(name="digit_probs", dtype="float32", shape=["batch", 10]),
        TensorSpec(name="consistent_probs", dtype="float32", shape=["batch", 2]),
        TensorSpec(name="contributions", dtype="float32", shape=["batch", 3]),
        TensorSpec(name="embedding", dtype="float32", shape=["batch", dim]),
    ]
    return inputs, outputs


def reference_manifest(
    name: str,
    fusion: Fusion,
    dim: int,
    provenance: Provenance,
    evaluation: dict[str, Any],
    ood: OodSpec | None = None,
) -> Manifest:
    inputs, outputs = graph_specs(dim)
    return Manifest(
        name=name,
        version=VERSION,
        description=(
            "Digit 0-9 from any non-empty subset of a handwritten image, a spoken clip and a "
            "typed "
            f"text ({fusion} fusion); also says whether the given modalities show the same digit."
        ),
        inputs=inputs,
        outputs=outputs,
        modality_order=["image", "audio", "text"],
        presence_input="presence",
        modalities=ModalityRecipes(image=IMAGE_RECIPE, audio=AUDIO_RECIPE, text=TEXT_RECIPE),
        tasks=[
            TaskSpec(
                name="digit", output="digit_probs", labels=DIGIT_LABELS, description="Which digit."
            ),
            TaskSpec(
                name="consistent",
                output="consistent_probs",
                labels=CONSISTENT_LABELS,
                description="Do the present modalities show the same digit?",
                # one modality always agrees with itself: trained and scored on 2+ only
                min_modalities=2,
            ),
        ],
        contribution_output="contributions",
        embedding_output="embedding",
        fusion=fusion,
        # One worker per core splits the clients between workers: at 32 concurrent clients on
        # 2 cores each worker holds ~16, so larger batches never form; 16 also cuts warm-up
        # (every batch size once) fourfold.
        batching=BatchingSpec(max_batch_size=16, max_wait_ms=2.0),
        provenance=provenance,
        evaluation=evaluation,
        ood=ood,
    )


def int8_figures(
    onnx_path: Path, results: dict[str, Any], cfg: DataConfig, pools: Pools
) -> dict[str, Any]:
    """Quantise to a temporary file; accuracy change per subset and speed ratio (batch 32)."""
    with tempfile.TemporaryDirectory() as tmp:
        q_path = quantize_int8(onnx_path, Path(tmp) / "model.int8.onnx")
        q_results = evaluate(ort_runner(q_path), cfg, pools)
        fp32_s = speed(ort_runner(onnx_path), pools, cfg)
        int8_s = speed(ort_runner(q_path), pools, cfg)
        int8_bytes = q_path.stat().st_size
    fp, q = accuracies(results), accuracies(q_results)
    full = list(fp)[-1]
    return {
        "fp32_accuracy": fp[full],
        "int8_accuracy": q[full],
        "accuracy_change_pp": round(100 * (q[full] - fp[full]), 2),
        "max_abs_change_pp": round(max(abs(100 * (q[k] - fp[k])) for k in fp), 2),
        "int8_digit_accuracy": q,
        "fp32_ms": round(fp32_s * 1000, 3),
        "int8_ms": round(int8_s * 1000, 3),
        "speedup": round(fp32_s / int8_s, 3),
        "fp32_bytes": onnx_path.stat().st_size,
        "int8_bytes": int8_bytes,
    }


def key_figures(results: dict[str, Any], int8: dict[str, Any], pools: Pools) -> dict[str, Any]:
    """What goes into ``manifest.evaluation`` (the report holds everything)."""
    return {
        "split": "test",
        "rows": results["rows"],
        "digit_accuracy": accuracies(results),
        "digit_macro_f1": {k: v["macro_f1"] for k, v in results["digit"].items()},
        "digit_roc_auc": {k: v["roc_auc"] for k, v in results["digit"].items()},
        "consistent_accuracy": accuracies(results, "consistent"),
        "consistent_roc_auc": {k: v["roc_auc"] for k, v in results["consistent"].items()},
        "mean_contributions": results["contributions"],
        "int8": {k: v for k, v in int8.items() if k != "int8_digit_accuracy"},
        "test_features_sha256": pools.digest(),
        "reproduce": "python -m export evaluate --model-dir <this folder>",
    }


def package(
    model: DigitModel,
    *,
    name: str,
    out_dir: Path,
    tokenizer: Tokenizer,
    data_cfg: DataConfig,
    train_cfg: TrainConfig,
    train_info: dict[str, float],
    test_pools: Pools,
    train_pools: Pools | None = None,
    log: Any = print,
) -> Manifest:
    """Export a trained model into a servable folder, with checks, evaluation and reports."""
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    tok_dir = out_dir / TEXT_RECIPE.tokenizer_dir
    if tok_dir.exists():
        shutil.rmtree(tok_dir)
    save_tokenizer(tokenizer, tok_dir, TEXT_RECIPE.max_length)
    rows = split_rows(data_cfg, test_pools)
    example = assemble(test_pools, rows.index[:2], np.ones((2, 3), dtype=np.float32))
    onnx_path = export_graph(model, example, out_dir / "model.onnx")
    diff, cases = parity(model, onnx_path, test_pools, rows)
    invariance = batch_invariance(ort_runner(onnx_path), test_pools, rows)
    log(f"{name}: parity {diff:.2e} over {cases} cases, batch invariance {invariance:.2e}")
    results = evaluate(ort_runner(onnx_path), data_cfg, test_pools)
    int8 = int8_figures(onnx_path, results, data_cfg, test_pools)
    log(
        f"{name}: digit accuracy {accuracies(results)}; "
        f"int8 {int8['accuracy_change_pp']:+.2f} pp, {int8['speedup']:.2f}x"
    )
    provenance = Provenance(
        created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        opset=OPSET,
        libraries=library_versions(),
        parity_max_abs_diff=float(f"{diff:.3g}"),
        parity_cases=cases,
        seed=train_cfg.seed,
        source=f"python -m export build --fusion {model.cfg.fusion}",
        exporter="torch.onnx.export (TorchScript, dynamo=False)",
        batch_invariance_max_abs_diff=float(f"{invariance:.3g}"),
        train_seconds=train_info["train_seconds"],
        final_loss=train_info["final_loss"],
        model_config=model.cfg.to_dict(),
        train_config={k: v for k, v in train_cfg.to_dict().items() if k != "extra"},
        data_config=data_cfg.to_dict(),
    )
    train_pools = train_pools or cached_pools(data_cfg, "train", tokenizer, CACHE_DIR)
    ood, ood_report = calibrate(
        ort_runner(onnx_path), data_cfg, train_pools, test_pools, ood_set(tokenizer)
    )
    log(f"{name}: ood {ood_report['per_subset']}")
    figures = key_figures(results, int8, test_pools) | {"ood": ood_report}
    manifest = reference_manifest(
        name, model.cfg.fusion, model.cfg.dim, provenance, figures, ood=ood
    )
    write_manifest(manifest, out_dir)
    write_confusion_png(results, out_dir / "confusion_digit.png", f"{name} ({model.cfg.fusion})")
    write_report(
        out_dir / "report.md",
        name=name,
        fusion=model.cfg.fusion,
        results=results,
        int8=int8,
        provenance=manifest.provenance.model_dump(),
        ood=ood_report,
    )
    return manifest


def build_reference(
    fusion: Fusion,
    *,
    models_dir: Path = MODELS_DIR,
    data_cfg: DataConfig | None = None,
    train_cfg: TrainConfig | None = None,
    model_cfg: ModelConfig | None = None,
    name: str | None = None,
    cache_dir: Path = CACHE_DIR,
    log: Any = print,
) -> Manifest:
    """Train, export, check and evaluate one reference model into ``models_dir/name/1``."""
    from export.train import train

    data_cfg = data_cfg or DataConfig()
    train_cfg = train_cfg or TrainConfig()
    tokenizer = reference_tokenizer(data_cfg)
    model_cfg = replace(
        model_cfg or ModelConfig(), fusion=fusion, vocab_size=tokenizer.get_vocab_size()
    )
    name = name or MODEL_NAMES[fusion]
    train_pools = cached_pools(data_cfg, "train", tokenizer, cache_dir)
    test_pools = cached_pools(data_cfg, "test", tokenizer, cache_dir)
    model, info = train(model_cfg, train_cfg, train_pools, log=log)
    log(f"{name}: trained in {info['train_seconds']} s, loss {info['final_loss']}")
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    torch.save(
        {"state_dict": model.state_dict(), "model_config": model_cfg.to_dict(), "train_info": info},
        ARTIFACTS_DIR / f"{name}.pt",
    )
    return package(
        model,
        name=name,
        out_dir=models_dir / name / VERSION,
        tokenizer=tokenizer,
        data_cfg=data_cfg,
        train_cfg=train_cfg,
        train_info=info,
        test_pools=test_pools,
        train_pools=train_pools,
        log=log,
    )


def folder_data_config(manifest: Manifest) -> DataConfig:
    """The DataConfig recorded in a reference model's provenance."""
    extra = manifest.provenance.model_extra or {}
    return DataConfig(**extra.get("data_config", {}))


def evaluate_folder(
    model_dir: Path, *, model_file: str | None = None
) -> tuple[Manifest, dict[str, Any], Pools]:
    """Rebuild the test split with the folder's tokenizer and score its graph through ORT."""
    from service.features.text import load_tokenizer
    from service.manifest import load_manifest

    manifest = load_manifest(model_dir)
    cfg = folder_data_config(manifest)
    tokenizer = load_tokenizer(model_dir / TEXT_RECIPE.tokenizer_dir)
    from export.dataset import build_pools

    pools = build_pools(cfg, "test", tokenizer)
    results = evaluate(ort_runner(model_dir / (model_file or manifest.model_file)), cfg, pools)
    return manifest, results, pools


def calibrate_folder(
    model_dir: Path, keep: float, keep_single: float, cache_dir: Path = CACHE_DIR
) -> Manifest:
    """Write the ``ood`` section (and ``evaluation.ood``, the report's section) of an existing
    reference model folder; ``model.onnx`` is only read."""
    from export.report import replace_ood_section
    from service.features.text import load_tokenizer
    from service.manifest import load_manifest

    manifest = load_manifest(model_dir)
    cfg = folder_data_config(manifest)
    tokenizer = load_tokenizer(model_dir / TEXT_RECIPE.tokenizer_dir)
    train = cached_pools(cfg, "train", tokenizer, cache_dir)
    test = cached_pools(cfg, "test", tokenizer, cache_dir)
    run = ort_runner(model_dir / manifest.model_file)
    spec, report = calibrate(
        run, cfg, train, test, ood_set(tokenizer), keep=keep, keep_single=keep_single
    )
    raw = manifest.model_dump(mode="json")
    raw["ood"] = spec.model_dump(mode="json")
    raw["evaluation"] = {**manifest.evaluation, "ood": report}
    updated = Manifest.model_validate(raw)
    write_manifest(updated, model_dir)
    report_md = model_dir / "report.md"
    if report_md.exists():
        text = report_md.read_text(encoding="utf-8")
        report_md.write_text(replace_ood_section(text, report), encoding="utf-8")
    return updated


def reference_manifests(models_dir: Path = MODELS_DIR) -> list[Manifest]:
    """Manifests of the reference models that exist, in FUSIONS order."""
    from export.config import FUSIONS
    from service.manifest import load_manifest

    out = []
    for fusion in FUSIONS:
        folder = models_dir / MODEL_NAMES[fusion] / VERSION
        if (folder / "manifest.json").exists():
            out.append(load_manifest(folder))
    return out
