"""The manifest schema's task ``min_modalities`` and optional ``ood`` section, the one schema
``export/`` writes and the service reads; and the score both sides compute from it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from service.manifest import Manifest, load_manifest, write_manifest
from service.ood import ood_check, ood_scores
from tests.service.conftest import COMMITTED, DEFAULT_MODEL

FOLDER = COMMITTED / DEFAULT_MODEL / "1"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FOLDER / "manifest.json").read_text(encoding="utf-8"))
    return data


def edited(raw: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    out.update(changes)
    return out


def test_committed_manifests_declare_both() -> None:
    for folder in sorted(COMMITTED.glob("*/1")):
        manifest = load_manifest(folder)
        assert {t.name: t.min_modalities for t in manifest.tasks} == {"digit": 1, "consistent": 2}
        assert manifest.ood is not None and manifest.ood.task == "digit"
        assert len(manifest.ood.subsets) == 7
        recorded = manifest.evaluation["ood"]["per_subset"]
        for subset in manifest.ood.subsets:
            assert recorded["+".join(subset.modalities)]["threshold"] == subset.threshold


def test_older_manifests_still_validate(raw: dict[str, Any]) -> None:
    old = edited(raw)
    del old["ood"]
    for task in old["tasks"]:
        del task["min_modalities"]
    manifest = Manifest.model_validate(old)
    assert manifest.ood is None
    assert all(t.min_modalities == 1 for t in manifest.tasks)
    assert ood_check(manifest) is None


@pytest.mark.parametrize("value", [0, -1, 4])
def test_min_modalities_must_be_possible(raw: dict[str, Any], value: int) -> None:
    tasks = copy.deepcopy(raw["tasks"])
    tasks[1]["min_modalities"] = value
    with pytest.raises(ValidationError, match="min_modalities|needs 4 modalities"):
        Manifest.model_validate(edited(raw, tasks=tasks))


def _ood(raw: dict[str, Any], **changes: Any) -> dict[str, Any]:
    ood = copy.deepcopy(raw["ood"])
    ood.update(changes)
    return edited(raw, ood=ood)


def test_ood_names_a_task(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="ood.task 'colour' is not one of the tasks"):
        Manifest.model_validate(_ood(raw, task="colour"))


def test_ood_needs_one_centroid_per_label(raw: dict[str, Any]) -> None:
    subsets = copy.deepcopy(raw["ood"]["subsets"])
    subsets[0]["centroids"] = subsets[0]["centroids"][:9]
    with pytest.raises(ValidationError, match="9 centroids; task 'digit' has 10 labels"):
        Manifest.model_validate(_ood(raw, subsets=subsets))


def test_ood_centroids_match_the_embedding(raw: dict[str, Any]) -> None:
    subsets = copy.deepcopy(raw["ood"]["subsets"])
    subsets[0]["centroids"] = [row[:63] for row in subsets[0]["centroids"]]
    with pytest.raises(ValidationError, match="must have 64 values, like embedding"):
        Manifest.model_validate(_ood(raw, subsets=subsets))


def test_ood_subsets_are_unique_and_known(raw: dict[str, Any]) -> None:
    subsets = copy.deepcopy(raw["ood"]["subsets"])
    with pytest.raises(ValidationError, match="twice"):
        Manifest.model_validate(_ood(raw, subsets=[*subsets, subsets[0]]))
    subsets[0]["modalities"] = ["video"]
    with pytest.raises(ValidationError, match="modalities"):
        Manifest.model_validate(_ood(raw, subsets=subsets))


def test_ood_threshold_is_positive_and_section_needs_subsets(raw: dict[str, Any]) -> None:
    subsets = copy.deepcopy(raw["ood"]["subsets"])
    subsets[0]["threshold"] = 0
    with pytest.raises(ValidationError, match="threshold"):
        Manifest.model_validate(_ood(raw, subsets=subsets))
    with pytest.raises(ValidationError, match="subsets"):
        Manifest.model_validate(_ood(raw, subsets=[]))


def test_ood_needs_an_embedding_output(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="ood needs embedding_output"):
        Manifest.model_validate(edited(raw, embedding_output=None))


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    manifest = load_manifest(FOLDER)
    write_manifest(manifest, tmp_path)
    assert load_manifest(tmp_path) == manifest
    # lists of numbers on one line each: the centroids do not take thousands of lines
    assert len((tmp_path / "manifest.json").read_text(encoding="utf-8").splitlines()) < 1500


def test_score_is_the_documented_formula() -> None:
    manifest = load_manifest(FOLDER)
    check = ood_check(manifest)
    assert check is not None
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=64).astype(np.float32)
    probabilities = np.full(10, 0.05, dtype=np.float32)
    probabilities[3] = 0.55
    subset = manifest.ood.subsets[2] if manifest.ood else None
    assert subset is not None
    centroids = np.asarray(subset.centroids)
    cosine = max(
        float(c @ embedding) / (np.linalg.norm(c) * np.linalg.norm(embedding)) for c in centroids
    )
    expected = (1 - cosine) + (1 - 0.55)
    got = ood_scores(embedding[None], probabilities[None], centroids)[0]
    assert got == pytest.approx(expected, abs=1e-4)
    outputs = {"embedding": embedding, "digit_probs": probabilities}
    assessed = check.assess(list(subset.modalities), outputs)
    assert assessed is not None
    assert assessed.score == pytest.approx(expected, abs=1e-4)
    assert assessed.unsure is (assessed.score > subset.threshold)
    assert check.assess([], outputs) is None  # no subset calibrated: no signal
