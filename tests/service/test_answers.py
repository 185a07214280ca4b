"""Answers that do not mislead, over real HTTP against the committed models: the consistency
task only with two or more modalities, and the out-of-distribution signal (``ood``) that marks
"hello world", a blank page, noise and a spoken non-digit word unsure but not real digits."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service import media
from tests.service.conftest import COMMITTED, DEFAULT_MODEL, serve_subprocess


def _files(uploads: Mapping[str, bytes | str]) -> list[tuple[str, tuple[str | None, bytes]]]:
    return [
        (name, (None, value.encode()) if isinstance(value, str) else (f"{name}.bin", value))
        for name, value in uploads.items()
    ]


def predict(base: str, uploads: Mapping[str, bytes | str], model: str = DEFAULT_MODEL) -> Any:
    response = httpx.post(f"{base}/v1/models/{model}/predict", files=_files(uploads), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def blank_png() -> bytes:
    return media.encode_image(Image.new("L", (64, 64), 255), "PNG")


def noise_png() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    return media.encode_image(Image.fromarray(pixels), "PNG")


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    assert (COMMITTED / DEFAULT_MODEL / "1" / "manifest.json").is_file()
    with serve_subprocess(COMMITTED) as base:
        yield base


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("speech")
    clips = {word: media.speak(word, folder) for word in ("seven", "hello")}
    if any(clip is None for clip in clips.values()):
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng) to speak test audio")
    return {word: clip for word, clip in clips.items() if clip is not None}


@pytest.mark.parametrize(
    "uploads",
    [{"text": "seven"}, {"image": media.png()}],
    ids=["text", "image"],
)
def test_one_modality_has_no_consistency_answer(served: str, uploads: dict[str, Any]) -> None:
    body = predict(served, uploads)
    assert list(body["tasks"]) == ["digit"]
    assert body["tasks"]["digit"]["label"] == "7"


def test_two_modalities_have_a_consistency_answer(served: str) -> None:
    agree = predict(served, {"image": media.png(), "text": "seven"})
    assert set(agree["tasks"]) == {"digit", "consistent"}
    assert agree["tasks"]["consistent"]["label"] == "yes"
    disagree = predict(served, {"image": media.png(media.digit_image("3")), "text": "seven"})
    assert disagree["tasks"]["consistent"]["label"] == "no"


def test_hello_world_is_unsure_but_still_says_what_the_model_says(served: str) -> None:
    body = predict(served, {"text": "hello world"})
    ood = body["ood"]
    assert ood["unsure"] is True and ood["task"] == "digit"
    assert ood["score"] > ood["threshold"]
    assert body["tasks"]["digit"]["label"] in [str(d) for d in range(10)]


@pytest.mark.parametrize(
    "uploads",
    [{"text": "seven"}, {"text": "7"}, {"image": media.png()}, {"image": media.png(), "text": "7"}],
    ids=["text-seven", "text-7", "drawn-7", "drawn-7+text"],
)
def test_real_digits_are_sure(served: str, uploads: dict[str, Any]) -> None:
    body = predict(served, uploads)
    assert body["tasks"]["digit"]["label"] == "7"
    assert body["ood"]["unsure"] is False
    assert body["ood"]["score"] <= body["ood"]["threshold"]


@pytest.mark.parametrize("image", [blank_png(), noise_png()], ids=["blank", "noise"])
def test_images_without_a_digit_are_unsure(served: str, image: bytes) -> None:
    assert predict(served, {"image": image})["ood"]["unsure"] is True


def test_spoken_words(served: str, speech: dict[str, bytes]) -> None:
    seven = predict(served, {"audio": speech["seven"]})
    assert seven["tasks"]["digit"]["label"] == "7" and seven["ood"]["unsure"] is False
    assert predict(served, {"audio": speech["hello"]})["ood"]["unsure"] is True


def test_model_detail_lists_min_modalities_and_thresholds(served: str) -> None:
    body = httpx.get(f"{served}/v1/models/{DEFAULT_MODEL}", timeout=10).json()
    assert {t["name"]: t["min_modalities"] for t in body["tasks"]} == {
        "digit": 1,
        "consistent": 2,
    }
    assert body["ood"]["task"] == "digit"
    assert len(body["ood"]["subsets"]) == 7
    assert all("centroids" not in s and s["threshold"] > 0 for s in body["ood"]["subsets"])


def test_openapi_says_so(served: str) -> None:
    schemas = httpx.get(f"{served}/openapi.json", timeout=10).json()["components"]["schemas"]
    answer = schemas["PredictResponse"]["properties"]
    assert "min_modalities" in answer["tasks"]["description"]
    assert "at least two" in answer["tasks"]["description"]
    assert "unsure" in answer["ood"]["description"]
    assert set(schemas["OodAssessment"]["required"]) == {"unsure", "score", "threshold", "task"}


def test_v2_flags_rows_instead_of_changing_numbers(served: str) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(served.removeprefix("http://"))
    texts = np.array([b"seven", b"hello world", b"seven"], dtype=object)
    images = np.array([b"", b"", media.png()], dtype=object)
    inputs = []
    for name, values in (("text", texts), ("image", images)):
        tensor = httpclient.InferInput(name, [3], "BYTES")
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    outputs = [
        httpclient.InferRequestedOutput("digit_probs"),
        httpclient.InferRequestedOutput("consistent_probs"),
    ]
    result = client.infer(DEFAULT_MODEL, inputs, outputs=outputs)
    consistent = result.get_output("consistent_probs")
    # rows 0 and 1 carry text alone: their consistency is not an answer; numbers stay finite
    assert consistent["parameters"]["not_applicable_rows"] == "0,1"
    assert np.isfinite(result.as_numpy("consistent_probs")).all()
    assert result.get_output("digit_probs")["parameters"]["unsure_rows"] == "1"
    assert result.as_numpy("digit_probs").argmax(axis=1)[[0, 2]].tolist() == [7, 7]


@pytest.fixture(scope="module")
def old_manifest_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model with a manifest from before ``min_modalities`` and ``ood``."""
    root = tmp_path_factory.mktemp("old-models")
    folder = root / DEFAULT_MODEL / "1"
    shutil.copytree(COMMITTED / DEFAULT_MODEL / "1", folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    del manifest["ood"]
    del manifest["evaluation"]["ood"]
    for task in manifest["tasks"]:
        del task["min_modalities"]
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def test_manifest_without_the_sections_loads_and_answers_without_the_signal(
    old_manifest_root: Path,
) -> None:
    with serve_subprocess(old_manifest_root) as base:
        body = predict(base, {"text": "hello world"})
        detail = httpx.get(f"{base}/v1/models/{DEFAULT_MODEL}", timeout=10).json()
    assert body["ood"] is None
    # no min_modalities: every task is answered, as before the field existed
    assert set(body["tasks"]) == {"digit", "consistent"}
    assert detail["ood"] is None
    assert [t["min_modalities"] for t in detail["tasks"]] == [1, 1]


def test_metrics_count_the_verdicts(served: str) -> None:
    def unsure_count() -> float:
        text = httpx.get(f"{served}/metrics", timeout=10).text
        prefix = f'mmserve_ood_answers_total{{model="{DEFAULT_MODEL}",verdict="unsure"}} '
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = unsure_count()
    predict(served, {"text": "hello world"})
    assert unsure_count() == before + 1
