"""Each committed reference model reproduces its recorded test accuracy through ONNX Runtime
(within 0.5 percentage points), and honours the graph contract the service relies on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export.build import folder_data_config
from export.config import FUSIONS, MODEL_NAMES
from export.dataset import SUBSETS, Pools, assemble, build_pools, split_rows
from export.evaluate import accuracies, evaluate, ort_runner
from service.features.text import load_tokenizer
from service.manifest import load_manifest

MODELS = Path(__file__).resolve().parents[2] / "onnx_models"
FOLDERS = [MODELS / MODEL_NAMES[f] / "1" for f in FUSIONS]


_POOLS: dict[str, Pools] = {}


def _pools(folder: Path) -> Pools:
    """Test pools for a folder, rebuilt from its tokenizer and recorded data config; the
    reference models share both, so they share one build."""
    key = (folder / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8")
    if key not in _POOLS:
        cfg = folder_data_config(load_manifest(folder))
        _POOLS[key] = build_pools(cfg, "test", load_tokenizer(folder / "tokenizer"))
    return _POOLS[key]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.parent.name)
def test_reproduces_recorded_accuracy(folder: Path) -> None:
    manifest = load_manifest(folder)
    pools = _pools(folder)
    cfg = folder_data_config(manifest)
    results = evaluate(ort_runner(folder / manifest.model_file), cfg, pools)
    recorded = manifest.evaluation["digit_accuracy"]
    got = accuracies(results)
    assert set(got) == set(recorded)
    for subset, acc in got.items():
        assert abs(acc - recorded[subset]) <= 0.005, (subset, acc, recorded[subset])
    for subset, acc in accuracies(results, "consistent").items():
        assert abs(acc - manifest.evaluation["consistent_accuracy"][subset]) <= 0.005, subset


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.parent.name)
def test_graph_contract(folder: Path) -> None:
    """Names, shapes, probabilities, exact masking of absent modalities, batch invariance."""
    manifest = load_manifest(folder)
    assert manifest.modality_order == ["image", "audio", "text"]
    assert [t.name for t in manifest.outputs] == [
        "digit_probs",
        "consistent_probs",
        "contributions",
        "embedding",
    ]
    assert manifest.batching.max_batch_size == 16
    assert (folder / "model.onnx").stat().st_size <= 10_000_000
    pools = _pools(folder)
    rows = split_rows(folder_data_config(manifest), pools)
    run = ort_runner(folder / "model.onnx")
    # A batch mixing every subset, against each row alone (a single row has no padding).
    presence = np.asarray([SUBSETS[i % 7] for i in range(14)], dtype=np.float32)
    together = run(assemble(pools, rows.index[:14], presence))
    for i in range(14):
        alone = run(assemble(pools, rows.index[i : i + 1], presence[i : i + 1]))
        for k, v in alone.items():
            np.testing.assert_allclose(together[k][i : i + 1], v, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(together["digit_probs"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together["contributions"].sum(axis=1), 1.0, atol=1e-5)
    assert np.all(together["contributions"][presence == 0] == 0.0)
    assert all(np.isfinite(v).all() for v in together.values())
