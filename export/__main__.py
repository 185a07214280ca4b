"""``python -m export``: the command line of the export toolchain.

python -m export dataset [--regenerate-clips]   build (and cache) the feature pools
python -m export train --fusion F --out ckpt.pt train one model, save a checkpoint
python -m export export --checkpoint ckpt.pt    package a checkpoint into onnx_models/
python -m export build --fusion F               train + export + evaluate one reference model
python -m export build-all                      rebuild every reference model + docs
python -m export evaluate --model-dir DIR       re-score a model folder through ORT
python -m export ood --model-dir DIR           (re)choose the `unsure` thresholds of a folder
python -m export docs                           regenerate docs/evaluation.md
python -m export byom --factory mod:fn --out DIR  export your own torch.nn.Module
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from export.config import (
    FUSIONS,
    MODEL_NAMES,
    OOD_KEEP,
    OOD_KEEP_SINGLE,
    DataConfig,
    ModelConfig,
    TrainConfig,
)
from service.helptext import plain

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "evaluation.md"


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cmd_dataset(args: argparse.Namespace) -> int:
    from export.build import CACHE_DIR, reference_tokenizer
    from export.dataset import cached_pools

    if args.regenerate_clips:
        from export.speech import generate

        clips = generate(seed=args.seed)
        _log(f"wrote {len(clips)} clips to export/data/")
    cfg = DataConfig(seed=args.seed)
    tokenizer = reference_tokenizer(cfg)
    for split in ("train", "test"):
        pools = cached_pools(cfg, split, tokenizer, CACHE_DIR)
        _log(
            f"{split}: {len(pools.image)} images {pools.image.shape[1:]}, {len(pools.audio)} clips "
            f"{pools.audio.shape[1:]}, {len(pools.text_ids)} texts; sha256 {pools.digest()[:16]}"
        )
    return 0


def _train_cfg(args: argparse.Namespace) -> TrainConfig:
    cfg = TrainConfig(seed=args.seed)
    return replace(cfg, steps=args.steps) if args.steps else cfg


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from export.build import CACHE_DIR, reference_tokenizer
    from export.dataset import cached_pools
    from export.train import train

    data_cfg = DataConfig()
    tokenizer = reference_tokenizer(data_cfg)
    pools = cached_pools(data_cfg, "train", tokenizer, CACHE_DIR)
    model_cfg = ModelConfig(fusion=args.fusion, vocab_size=tokenizer.get_vocab_size())
    train_cfg = _train_cfg(args)
    model, info = train(model_cfg, train_cfg, pools, log=_log)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "model_config": model_cfg.to_dict(),
            "train_config": train_cfg.to_dict(),
            "train_info": info,
        },
        args.out,
    )
    _log(f"saved {args.out} ({info})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from export.build import CACHE_DIR, MODELS_DIR, VERSION, package, reference_tokenizer
    from export.dataset import cached_pools
    from export.model import DigitModel

    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model_cfg = ModelConfig(**ckpt["model_config"])
    model = DigitModel(model_cfg)
    model.load_state_dict(ckpt["state_dict"])
    data_cfg = DataConfig()
    tokenizer = reference_tokenizer(data_cfg)
    name = args.name or MODEL_NAMES[model_cfg.fusion]
    out = args.out or MODELS_DIR / name / VERSION
    train_cfg = TrainConfig(**ckpt.get("train_config", {}))
    package(
        model,
        name=name,
        out_dir=out,
        tokenizer=tokenizer,
        data_cfg=data_cfg,
        train_cfg=train_cfg,
        train_info=ckpt["train_info"],
        test_pools=cached_pools(data_cfg, "test", tokenizer, CACHE_DIR),
        log=_log,
    )
    _log(f"wrote {out}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from export.build import build_reference, reference_manifests
    from export.report import write_evaluation_doc

    fusions = FUSIONS if args.command == "build-all" else (args.fusion,)
    for fusion in fusions:
        build_reference(fusion, train_cfg=_train_cfg(args), log=_log)
    write_evaluation_doc(reference_manifests(), DOCS)
    _log(f"wrote {DOCS}")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from export.build import reference_manifests
    from export.report import write_evaluation_doc

    write_evaluation_doc(reference_manifests(), DOCS)
    _log(f"wrote {DOCS}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from export.build import evaluate_folder
    from export.evaluate import accuracies

    manifest, results, _ = evaluate_folder(args.model_dir)
    recorded = manifest.evaluation.get("digit_accuracy", {})
    worst = 0.0
    print(f"{'modalities':<20} {'digit acc':>10} {'recorded':>10} {'consistent':>11}")
    cons = accuracies(results, "consistent")
    for name, acc in accuracies(results).items():
        rec = recorded.get(name)
        if rec is not None:
            worst = max(worst, abs(acc - rec))
        c = f"{cons[name]:.4f}" if name in cons else "-"
        print(f"{name:<20} {acc:>10.4f} {rec if rec is not None else '-':>10} {c:>11}")
    if args.json:
        print(json.dumps({k: v for k, v in results.items()}, indent=1))
    print(f"largest difference from the recorded accuracy: {100 * worst:.2f} pp")
    return 0 if worst <= 0.005 else 1


def cmd_ood(args: argparse.Namespace) -> int:
    from export.build import calibrate_folder

    for folder in args.model_dir:
        manifest = calibrate_folder(folder, args.keep, args.keep_single)
        per = manifest.evaluation["ood"]["per_subset"]
        _log(f"{folder}: wrote ood thresholds")
        print(f"{'modalities':<20} {'threshold':>9} {'kept':>6} {'caught':>7}")
        for name, m in per.items():
            print(
                f"{name:<20} {m['threshold']:>9.4f} {m['keep_all']:>6.3f} {m['ood_caught']:>7.3f}"
            )
        for name, probe in manifest.evaluation["ood"]["probes"].items():
            verdict = "unsure" if probe["unsure"] else "sure"
            print(f"  {name}: {probe['digit']} ({probe['probability']:.3f}), {verdict}")
    return 0


def cmd_byom(args: argparse.Namespace) -> int:
    from export.byom import export_spec, load_factory

    manifest = export_spec(load_factory(args.factory), args.out, tolerance=args.tolerance)
    _log(
        f"wrote {args.out} ({manifest.name}/{manifest.version}); "
        f"parity {manifest.provenance.parity_max_abs_diff}"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "dataset", help="build and cache the feature pools (optionally re-synthesise the clips)"
    )
    s.add_argument(
        "--regenerate-clips", action="store_true", help="re-run espeak-ng into export/data/"
    )
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_dataset)

    s = sub.add_parser("train", help="train one model and save a checkpoint")
    s.add_argument("--fusion", choices=FUSIONS, default="cross_attention")
    s.add_argument("--steps", type=int, default=0, help="0: the TrainConfig default")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser(
        "export", help="package a checkpoint: ONNX, parity, evaluation, reports, manifest"
    )
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--name", default=None, help="default: the reference name of its fusion")
    s.add_argument("--out", type=Path, default=None, help="default: onnx_models/<name>/1")
    s.set_defaults(func=cmd_export)

    for name, helptext in (
        ("build", "train + export + evaluate one reference model"),
        ("build-all", "rebuild all four reference models and docs/evaluation.md"),
    ):
        s = sub.add_parser(name, help=helptext)
        if name == "build":
            s.add_argument("--fusion", choices=FUSIONS, default="cross_attention")
        s.add_argument("--steps", type=int, default=0, help="0: the TrainConfig default")
        s.add_argument("--seed", type=int, default=0)
        s.set_defaults(func=cmd_build)

    s = sub.add_parser(
        "evaluate", help="re-score a model folder through ONNX Runtime on the test split"
    )
    s.add_argument("--model-dir", type=Path, required=True)
    s.add_argument("--json", action="store_true", help="also print every metric")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser(
        "ood",
        help="choose the out-of-distribution thresholds of existing reference model folders "
        "(writes manifest.json's ood section and evaluation.ood; model.onnx is not changed)",
    )
    s.add_argument("--model-dir", type=Path, nargs="+", required=True)
    s.add_argument(
        "--keep",
        type=float,
        default=OOD_KEEP,
        help=f"two or three modalities: share of the test rows kept sure (default {OOD_KEEP})",
    )
    s.add_argument(
        "--keep-single",
        type=float,
        default=OOD_KEEP_SINGLE,
        help="one modality: share of the correctly answered test rows kept sure "
        f"(default {OOD_KEEP_SINGLE})",
    )
    s.set_defaults(func=cmd_ood)

    s = sub.add_parser("docs", help="regenerate docs/evaluation.md from the reference manifests")
    s.set_defaults(func=cmd_docs)

    s = sub.add_parser("byom", help="export your own torch.nn.Module into a servable folder")
    s.add_argument(
        "--factory", required=True, help="package.module:function returning an export.byom.ByomSpec"
    )
    s.add_argument("--out", type=Path, required=True, help="e.g. onnx_models/my-model/1")
    s.add_argument("--tolerance", type=float, default=1e-4, help="parity limit (max abs diff)")
    s.set_defaults(func=cmd_byom)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
