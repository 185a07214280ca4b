"""``python -m export ood``: the committed thresholds come back from the data, and the
command rewrites only the manifest's ``ood`` parts and the report's section."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from export.__main__ import main
from export.report import OOD_HEADING, replace_ood_section
from service.manifest import load_manifest

MODELS = Path(__file__).resolve().parents[2] / "onnx_models"
DEFAULT = MODELS / "digits-xattn" / "1"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_committed_thresholds_reproduce(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: the out-of-distribution set speaks words")
    folder = tmp_path / "digits-xattn" / "1"
    shutil.copytree(DEFAULT, folder)
    graph = _sha(folder / "model.onnx")
    assert main(["ood", "--model-dir", str(folder)]) == 0
    assert _sha(folder / "model.onnx") == graph
    committed, again = load_manifest(DEFAULT), load_manifest(folder)
    assert committed.ood is not None and again.ood is not None
    for old, new in zip(committed.ood.subsets, again.ood.subsets, strict=True):
        assert old.modalities == new.modalities
        assert new.threshold == pytest.approx(old.threshold, abs=2e-3)
    recorded, measured = committed.evaluation["ood"], again.evaluation["ood"]
    for subset, figures in recorded["per_subset"].items():
        for key in ("keep_all", "ood_caught"):
            assert measured["per_subset"][subset][key] == pytest.approx(figures[key], abs=0.01)
    assert {k: v["unsure"] for k, v in measured["probes"].items()} == {
        k: v["unsure"] for k, v in recorded["probes"].items()
    }
    # everything but the ood parts is unchanged
    strip = {"ood": True}
    assert again.model_dump(exclude=strip | {"evaluation": {"ood"}}) == committed.model_dump(
        exclude=strip | {"evaluation": {"ood"}}
    )
    assert (folder / "report.md").read_text(encoding="utf-8").count(OOD_HEADING) == 1


def test_report_section_is_replaced_not_repeated() -> None:
    ood = load_manifest(DEFAULT).evaluation["ood"]
    text = (DEFAULT / "report.md").read_text(encoding="utf-8")
    once = replace_ood_section(text, ood)
    assert once == text  # the committed report already carries this section
    without = text.split(OOD_HEADING)[0]
    assert replace_ood_section(without, ood) == text
    assert replace_ood_section(without + "\n## Later\n\nmore\n", ood).count("## Later") == 1


def test_fit_subset_for_any_model() -> None:
    """The helper a BYO model uses: centroids from labelled embeddings, threshold from the
    held-out scores; the entry validates inside a manifest like the reference ones."""
    from export.ood import fit_subset
    from service.manifest import Manifest
    from service.ood import ood_scores

    rng = np.random.default_rng(0)
    directions = rng.normal(size=(10, 64))
    labels = np.repeat(np.arange(10), 20)
    embeddings = directions[labels] + 0.1 * rng.normal(size=(200, 64))
    held = directions[labels] + 0.1 * rng.normal(size=(200, 64))
    probabilities = np.eye(10)[labels] * 0.9 + 0.01
    subset = fit_subset(["text"], (embeddings, labels), (held, probabilities), keep=0.95)
    scores = ood_scores(held, probabilities, np.asarray(subset.centroids))
    assert np.mean(scores <= subset.threshold) == pytest.approx(0.95, abs=0.01)
    far = rng.normal(size=(50, 64))  # directions of no label, flat probabilities
    flat = np.full((50, 10), 0.1)
    assert np.all(ood_scores(far, flat, np.asarray(subset.centroids)) > subset.threshold)
    raw = load_manifest(DEFAULT).model_dump(mode="json")
    raw["ood"]["subsets"] = [subset.model_dump(mode="json")]
    assert Manifest.model_validate(raw).ood is not None
