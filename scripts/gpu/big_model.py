"""A bring-your-own CLIP of ViT-B/32 size, exported and timed on ONNX Runtime CUDA vs CPU.

The model is ``export/examples/tiny_clip.py``'s ``ServableClip`` around a ``CLIPModel`` built
from a config of CLIP ViT-B/32's sizes (vision 768 wide, 12 layers, 224 px in 32 px patches;
text 512 wide, 12 layers; projection 512: about 150 M parameters) with random weights: no
download, the device's own torch and transformers. ``--size tiny`` builds the tiny demo
config instead, so the whole path runs in seconds on a machine without a GPU.

Each provider runs each batch size (1 to 256) ``--repeats`` times after one warm-up run,
within a time budget per provider (batches whose first run would overrun it are skipped and
listed). CUDA is timed twice: ``session.run`` on numpy arrays (what the service does: copies
in and out included) and with IO binding on inputs already on the GPU and outputs left there
(the GPU's own time: the most IO binding could save).

    python -m scripts.gpu.big_model --size base --out-dir /tmp/clip-b32 --json big.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

TEXT_TOKENS = 32
SIZES: dict[str, dict[str, Any]] = {
    "base": {  # CLIP ViT-B/32
        "text": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                 "num_attention_heads": 8, "max_position_embeddings": 77},
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                   "num_attention_heads": 12, "image_size": 224, "patch_size": 32},
        "projection_dim": 512,
    },
    "tiny": {  # export/examples/tiny_clip.py's
        "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "max_position_embeddings": 77},
        "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        "projection_dim": 16,
    },
}  # fmt: skip
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def export(size: str, out_dir: Path) -> Path:
    """Export the CLIP of ``size`` as a servable folder; returns its ``model.onnx``."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from export.byom import export_spec
    from export.examples.tiny_clip import ServableClip, tiny_clip

    spec = tiny_clip(Path(tempfile.mkdtemp(prefix="clip-tok-")))  # tokenizer, recipes, fields
    dims = SIZES[size]
    image_size = int(dims["vision"]["image_size"])
    eos = int(spec.example_inputs["input_ids"].max())
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={**dims["text"], "vocab_size": 49_408, "eos_token_id": eos,
                     "bos_token_id": eos - 1, "pad_token_id": 0},
        vision_config=dims["vision"],
        projection_dim=dims["projection_dim"],
    )  # fmt: skip
    for sub_config in (config, config.text_config, config.vision_config):
        sub_config._attn_implementation = "eager"  # type: ignore[union-attr]
    clip = CLIPModel(config)
    clip.eval()  # type: ignore[no-untyped-call]
    rng = np.random.default_rng(0)
    spec.module = ServableClip(clip)
    spec.example_inputs["image"] = rng.standard_normal((2, 3, image_size, image_size)).astype(
        np.float32
    )
    image = spec.manifest_fields["modalities"]["image"]
    image["height"] = image["width"] = image_size
    spec.manifest_fields.update(name=f"clip-{size}", description=f"Random-weight CLIP ({size})")
    export_spec(spec, out_dir, tolerance=1e-3)
    return out_dir / "model.onnx"


def feeds(batch: int, image_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    ids = rng.integers(5, 100, size=(batch, TEXT_TOKENS), dtype=np.int64)
    return {
        "image": rng.standard_normal((batch, 3, image_size, image_size)).astype(np.float32),
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "presence": np.ones((batch, 2), dtype=np.float32),
    }


def open_session(model: Path, provider: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The CPU gets every core (intra_op 0 = ONNX Runtime's default): its best single-model
    # figure, not the service's one-thread-per-worker layout.
    providers = (
        [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    )
    session = ort.InferenceSession(str(model), sess_options=options, providers=providers)
    if session.get_providers()[0] != provider:
        raise RuntimeError(f"{provider} did not start: the session got {session.get_providers()}")
    return session


def _time(run: Callable[[], object], repeats: int) -> list[float]:
    run()  # warm-up: kernels chosen, buffers allocated for this shape
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def _bound_runner(
    session: ort.InferenceSession, inputs: dict[str, np.ndarray]
) -> Callable[[], object]:
    binding = session.io_binding()
    for name, value in inputs.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda", 0)

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run


def measure(
    model: Path, provider: str, batches: list[int], repeats: int, budget_s: float, image_size: int
) -> dict[str, Any]:
    session = open_session(model, provider)
    names = [o.name for o in session.get_outputs()]
    rows: list[dict[str, Any]] = []
    skipped: list[int] = []
    started = time.perf_counter()
    last_ms, last_batch = 0.0, 1
    for batch in batches:
        spent = time.perf_counter() - started
        # A run costs at most in proportion to its batch: skip the ones that would overrun.
        estimate_s = last_ms / 1000.0 * batch / last_batch * (repeats + 1)
        if rows and spent + estimate_s > budget_s:
            skipped.append(batch)
            continue
        inputs = feeds(batch, image_size)
        samples = _time(lambda inputs=inputs: session.run(names, inputs), repeats)  # type: ignore[misc]
        row: dict[str, Any] = {
            "batch": batch,
            "median_ms": round(statistics.median(samples), 3),
            "rows_per_s": round(batch / (statistics.median(samples) / 1000.0), 1),
        }
        if provider == "CUDAExecutionProvider":
            bound = _time(_bound_runner(session, inputs), repeats)
            row["iobinding_median_ms"] = round(statistics.median(bound), 3)
        last_ms, last_batch = float(row["median_ms"]), batch
        rows.append(row)
        print(f"big model {provider} batch {batch}: {row}", file=sys.stderr, flush=True)
    return {"provider": provider, "providers_in_use": session.get_providers(), "rows": rows,
            "skipped_batches": skipped}  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    runs = {run["provider"]: {r["batch"]: r for r in run["rows"]} for run in result["runs"]}
    cpu, cuda = runs.get("CPUExecutionProvider", {}), runs.get("CUDAExecutionProvider", {})
    lines = [
        f"CLIP ({result['size']}, {result['parameters_m']} M parameters, random weights), "
        f"image {result['image_size']} px + {TEXT_TOKENS} tokens; median of {result['repeats']}",
        "",
        "| batch | CPU ms | CPU rows/s | CUDA ms | CUDA rows/s | CUDA IO-bound ms | speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in sorted(set(cpu) | set(cuda)):
        c, g = cpu.get(batch, {}), cuda.get(batch, {})
        ratio = f"{c['median_ms'] / g['median_ms']:.1f}×" if c and g and g["median_ms"] > 0 else "–"
        lines.append(
            f"| {batch} | {c.get('median_ms', '–')} | {c.get('rows_per_s', '–')} | "
            f"{g.get('median_ms', '–')} | {g.get('rows_per_s', '–')} | "
            f"{g.get('iobinding_median_ms', '–')} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def parameters_m(model: Path) -> float:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return round(sum(int(np.prod(t.dims)) for t in graph.initializer) / 1e6, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--out-dir", type=Path, required=True, help="the exported model folder")
    parser.add_argument("--providers", default="CPUExecutionProvider,CUDAExecutionProvider")
    parser.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=60.0, help="per provider")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    model = export(args.size, args.out_dir)
    export_s = time.perf_counter() - started
    image_size = int(SIZES[args.size]["vision"]["image_size"])
    batches = [int(b) for b in args.batches.split(",")]
    result: dict[str, Any] = {
        "size": args.size,
        "parameters_m": parameters_m(model),
        "model_mb": round(model.stat().st_size / 1e6, 1),
        "image_size": image_size,
        "text_tokens": TEXT_TOKENS,
        "export_s": round(export_s, 1),
        "repeats": args.repeats,
        "onnxruntime": ort.__version__,
        "runs": [
            measure(model, p.strip(), batches, args.repeats, args.budget_s, image_size)
            for p in args.providers.split(",")
        ],
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.write_text(markdown(result), encoding="utf-8")
    print(markdown(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
