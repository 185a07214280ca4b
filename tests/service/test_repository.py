"""The model repository through the app: versions, defaults, and folders that fail to load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.model_dir import scan
from service.repository import version_key
from tests.service import media
from tests.service.conftest import DEFAULT_MODEL, make_settings, multipart
from tests.service.tiny_model import build_tiny_model, copy_model


def test_versions_sort_numerically() -> None:
    versions = ["10", "2", "1", "1.10", "1.9", "1.9a"]
    assert sorted(versions, key=version_key) == ["1", "1.9", "1.9a", "1.10", "2", "10"]


def test_scan_skips_hidden_folders_and_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "1").mkdir(parents=True)
    (tmp_path / "a" / ".tmp").mkdir()
    (tmp_path / ".cache" / "1").mkdir(parents=True)
    (tmp_path / "README.md").write_text("models\n")
    assert scan(tmp_path) == [tmp_path / "a" / "1"]
    assert scan(tmp_path / "missing") == []


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory: pytest.TempPathFactory, model_folder: Path) -> Path:
    """The committed model next to broken folders and several versions of one name."""
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(model_folder, root / DEFAULT_MODEL / "1")
    for version in ("1", "2", "10"):
        copy_model(model_folder, root, "multi", version)
    broken = root / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text('{"name": "broken", "version": ')
    no_manifest = root / "empty" / "3"
    no_manifest.mkdir(parents=True)
    mismatch = copy_model(model_folder, root, "renamed", "1")
    mismatch.rename(mismatch.parent / "7")
    missing_onnx = copy_model(model_folder, root, "no-graph", "1")
    (missing_onnx / "model.onnx").unlink()
    return root


@pytest.fixture(scope="module")
def mixed(mixed_root: Path) -> TestClient:
    with TestClient(create_app(make_settings(mixed_root))) as client:
        yield client  # type: ignore[misc]


def test_failed_folders_are_reported_by_name_and_reason(mixed: TestClient) -> None:
    body = mixed.get("/v1/models").json()
    failed = {(f["name"], f["version"]): f["reason"] for f in body["failed"]}
    assert set(failed) == {("broken", "1"), ("empty", "3"), ("renamed", "7"), ("no-graph", "1")}
    assert "manifest.json" in failed[("empty", "3")]
    assert "renamed/1" in failed[("renamed", "7")]
    assert {m["name"] for m in body["models"]} == {DEFAULT_MODEL, "multi"}
    assert body["default_model"] == DEFAULT_MODEL


def test_readyz_is_503_naming_the_failures(mixed: TestClient) -> None:
    response = mixed.get("/readyz")
    assert response.status_code == 503
    models = response.json()["models"]
    assert models[DEFAULT_MODEL] == "ready"
    assert models["broken/1"].startswith("failed:")
    assert mixed.get("/healthz").status_code == 200


def test_the_others_still_serve(mixed: TestClient) -> None:
    files = multipart({"text": "seven"})
    assert mixed.post("/v1/predict", files=files).status_code == 200
    response = mixed.post("/v1/models/broken/predict", files=files)
    assert response.status_code == 503
    assert "failed to load" in response.json()["error"]["message"]
    assert mixed.get("/v1/models/no-graph").status_code == 503


def test_name_serves_the_latest_version_and_versions_are_addressable(mixed: TestClient) -> None:
    files = multipart({"text": "seven"})
    assert mixed.post("/v1/models/multi/predict", files=files).json()["version"] == "10"
    pinned = mixed.post("/v1/models/multi/predict?version=2", files=files)
    assert pinned.json()["version"] == "2"
    detail = mixed.get("/v1/models/multi").json()
    assert detail["version"] == "10" and detail["versions"] == ["1", "2", "10"]
    assert mixed.get("/v1/models/multi?version=1").json()["version"] == "1"


def test_default_model_from_settings(mixed_root: Path) -> None:
    with TestClient(create_app(make_settings(mixed_root, default_model="multi"))) as client:
        response = client.post("/v1/predict", files=multipart({"text": "seven"}))
        assert response.json()["model"] == "multi"
        assert client.get("/v1/models").json()["default_model"] == "multi"


def test_no_models_is_not_ready(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as client:
        assert client.get("/readyz").status_code == 503
        response = client.post("/v1/predict", files=multipart({"text": "seven"}))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "model_not_ready"


def test_unavailable_provider_fails_the_model_not_the_service(model_root: Path) -> None:
    settings = make_settings(
        model_root, runtime={"providers": ["NoSuchExecutionProvider"], "feature_threads": 1}
    )
    with TestClient(create_app(settings)) as client:
        failed = client.get("/v1/models").json()["failed"]
        assert failed and "NoSuchExecutionProvider" in failed[0]["reason"]
        assert client.get("/readyz").status_code == 503


def test_a_modality_the_model_does_not_take_is_422_naming_it(tmp_path: Path) -> None:
    build_tiny_model(tmp_path, "image-text", modalities=("image", "text"))
    build_tiny_model(tmp_path, "audio-only", modalities=("audio",))
    wav = media.encode_audio(media.tone(), 16000, "WAV", "PCM_16")
    with TestClient(create_app(make_settings(tmp_path))) as client:
        response = client.post(
            "/v1/models/image-text/predict", files=multipart({"text": "seven", "audio": wav})
        )
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "audio"
        ok = client.post("/v1/models/image-text/predict", files=multipart({"text": "seven"}))
        assert ok.status_code == 200 and ok.json()["contributions"] == {"image": 0.0, "text": 1.0}
        audio = client.post("/v1/models/audio-only/predict", files=multipart({"audio": wav}))
        assert audio.status_code == 200, audio.text
        assert client.get("/v1/models/audio-only").json()["modalities"] == ["audio"]
