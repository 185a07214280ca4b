"""Train a tiny model for a few steps, export it, check parity, masking and the manifest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from export.build import package
from export.config import DataConfig, ModelConfig, TrainConfig
from export.dataset import SUBSETS, Pools, assemble, split_rows
from export.evaluate import ort_runner, torch_runner
from export.model import DigitModel
from export.train import train
from service.features.text import load_tokenizer
from service.manifest import load_manifest

TINY = TrainConfig(steps=12, batch_size=16, warmup=2, log_every=0)


def test_train_export_parity_manifest(
    tmp_path: Path,
    small_cfg: DataConfig,
    small_tokenizer: Tokenizer,
    small_pools: tuple[Pools, Pools],
) -> None:
    train_pools, test_pools = small_pools
    cfg = ModelConfig(fusion="cross_attention", vocab_size=small_tokenizer.get_vocab_size())
    model, info = train(cfg, TINY, train_pools, log=lambda _: None)
    manifest = package(
        model,
        name="tiny-xattn",
        out_dir=tmp_path,
        tokenizer=small_tokenizer,
        data_cfg=small_cfg,
        train_cfg=TINY,
        train_info=info,
        test_pools=test_pools,
        train_pools=train_pools,
        log=lambda _: None,
    )
    loaded = load_manifest(tmp_path)
    assert loaded == manifest
    # the build writes the out-of-distribution section and its measurements
    assert loaded.ood is not None and len(loaded.ood.subsets) == 7
    assert set(loaded.evaluation["ood"]["per_subset"]) == set(loaded.evaluation["digit_accuracy"])
    assert {t.name: t.min_modalities for t in loaded.tasks} == {"digit": 1, "consistent": 2}
    assert loaded.provenance.parity_max_abs_diff is not None
    assert loaded.provenance.parity_max_abs_diff <= 1e-4
    assert loaded.provenance.parity_cases == 14
    assert (loaded.provenance.model_extra or {})["batch_invariance_max_abs_diff"] <= 1e-5
    assert [t.name for t in loaded.inputs] == [
        "image",
        "audio",
        "input_ids",
        "attention_mask",
        "presence",
    ]
    assert set(loaded.evaluation["digit_accuracy"]) == {
        "image",
        "audio",
        "text",
        "image+audio",
        "image+text",
        "audio+text",
        "image+audio+text",
    }
    assert (tmp_path / "report.md").exists() and (tmp_path / "confusion_digit.png").exists()
    tok = load_tokenizer(tmp_path / "tokenizer")
    assert tok.token_to_id("[PAD]") == 0
    # The graph answers like PyTorch for a service-style batch.
    rows = split_rows(small_cfg, test_pools)
    inputs = assemble(test_pools, rows.index[:5], np.ones((5, 3), dtype=np.float32))
    got = ort_runner(tmp_path / "model.onnx")(inputs)
    ref = torch_runner(model)(inputs)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], atol=1e-4)


@pytest.mark.parametrize("fusion", ["cross_attention", "concat", "mean", "gated"])
def test_absent_modalities_are_ignored_exactly(
    fusion: str, small_cfg: DataConfig, small_pools: tuple[Pools, Pools]
) -> None:
    """Whatever an absent modality's input holds, the row's outputs do not change; weights of
    absent modalities are 0, rows sum to 1, and nothing is NaN, even with nothing present."""
    _, pools = small_pools
    torch.manual_seed(0)
    model = DigitModel(replace(ModelConfig(), fusion=fusion, vocab_size=400)).eval()  # type: ignore[arg-type]
    run = torch_runner(model)
    rows = split_rows(small_cfg, pools)
    rng = np.random.default_rng(0)
    for presence in SUBSETS:
        pres = np.tile(np.asarray(presence, dtype=np.float32), (4, 1))
        clean = assemble(pools, rows.index[:4], pres)
        noisy = {k: v.copy() for k, v in clean.items()}
        if not presence[0]:
            noisy["image"] = rng.standard_normal(noisy["image"].shape).astype(np.float32)
        if not presence[1]:
            noisy["audio"] = rng.standard_normal(noisy["audio"].shape).astype(np.float32)
        if not presence[2]:
            noisy["input_ids"] = rng.integers(1, 300, noisy["input_ids"].shape)
        a, b = run(clean), run(noisy)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=f"{fusion} {presence} {k}")
        w = a["contributions"]
        assert np.all(w[:, np.asarray(presence) == 0] == 0.0)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    nothing = assemble(pools, rows.index[:2], np.zeros((2, 3), dtype=np.float32))
    assert all(np.isfinite(v).all() for v in run(nothing).values())


def test_training_is_deterministic(
    small_tokenizer: Tokenizer, small_pools: tuple[Pools, Pools]
) -> None:
    train_pools, _ = small_pools
    cfg = ModelConfig(fusion="gated", vocab_size=small_tokenizer.get_vocab_size())
    steps = replace(TINY, steps=3)
    a, _ = train(cfg, steps, train_pools, log=lambda _: None)
    b, _ = train(cfg, steps, train_pools, log=lambda _: None)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_tokenizer_is_deterministic(small_cfg: DataConfig) -> None:
    """WordPieceTrainer breaks ties in hash-map order; our vocabulary count does not."""
    from export.build import reference_tokenizer

    assert reference_tokenizer(small_cfg).to_str() == reference_tokenizer(small_cfg).to_str()
