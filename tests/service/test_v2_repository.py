"""The V2 model repository extension: index, load and unload, in one process and across the
worker processes of one replica (through the official ``tritonclient.http``)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tritonclient.http as httpclient
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from service.app import create_app
from tests.service.conftest import make_settings, serve_subprocess
from tests.service.test_reload import DIGIT, NAME, POLL_S, SOURCE, predict, publish, wait_for
from tests.service.tiny_model import copy_model


@pytest.fixture
def root(tmp_path: Path) -> Path:
    publish(tmp_path, "1")
    broken = copy_model(SOURCE, tmp_path, "broken", "1")
    (broken / "model.onnx").write_bytes(b"not a graph")
    return tmp_path


def _client(root: Path, poll_interval_s: float) -> TestClient:
    settings = make_settings(root, repository={"poll_interval_s": poll_interval_s})
    return TestClient(create_app(settings))


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    with _client(root, POLL_S) as test_client:
        yield test_client


def index(client: TestClient, **body: object) -> dict[str, tuple[str, str]]:
    response = client.post("/v2/repository/index", json=body or None)
    assert response.status_code == 200, response.text
    return {f"{e['name']}/{e['version']}": (e["state"], e["reason"]) for e in response.json()}


def test_the_index_lists_every_folder_with_its_state(client: TestClient) -> None:
    entries = index(client)
    assert entries[f"{NAME}/1"] == ("READY", "")
    state, reason = entries["broken/1"]
    assert state == "UNAVAILABLE" and reason.startswith("failed to load:")
    assert list(index(client, ready=True)) == [f"{NAME}/1"]
    assert "model_repository" in client.get("/v2").json()["extensions"]


def test_unload_answers_404_until_load(client: TestClient) -> None:
    assert client.post(f"/v2/repository/models/{NAME}/unload").status_code == 200
    response = predict(client)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["field"] == "model" and "unloaded" in error["message"]
    assert client.get(f"/v2/models/{NAME}/ready").status_code == 404
    assert index(client)[f"{NAME}/1"][0] == "UNLOADING"  # its batcher drains, then closes
    wait_for(lambda: index(client)[f"{NAME}/1"] == ("UNAVAILABLE", "unloaded"))
    time.sleep(POLL_S * 3)  # the poller does not bring it back by itself
    assert predict(client).status_code == 404
    assert client.post(f"/v2/repository/models/{NAME}/load", json={}).status_code == 200
    assert predict(client).status_code == 200


def test_load_failures_and_bad_requests_answer_in_the_protocols_shape(client: TestClient) -> None:
    failed = client.post("/v2/repository/models/broken/load")
    assert failed.status_code == 400 and "failed to load" in failed.json()["error"]
    missing = client.post("/v2/repository/models/nothing/load")
    assert missing.status_code == 404 and "nothing" in missing.json()["error"]
    assert client.post("/v2/repository/models/nothing/unload").status_code == 404
    config = client.post(
        f"/v2/repository/models/{NAME}/load", json={"parameters": {"config": "{}"}}
    )
    assert config.status_code == 400 and "parameters.config" in config.json()["error"]
    bad = client.post("/v2/repository/index", json={"ready": "yes"})
    assert bad.status_code == 400 and "ready" in bad.json()["error"]
    wrong_method = client.get("/v2/repository/index")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert client.post("/v2/repository/models/..%2Fetc/load").status_code in (400, 404)


def test_with_polling_off_a_new_folder_waits_for_a_load_request(root: Path) -> None:
    with _client(root, 0) as client:
        publish(root, "2")
        time.sleep(0.5)
        assert predict(client).json()["version"] == "1"
        assert index(client)[f"{NAME}/2"][0] == "UNAVAILABLE"
        assert client.post(f"/v2/repository/models/{NAME}/load").status_code == 200
        assert predict(client).json()["version"] == "2"


def _statuses(base: str, path: str, count: int = 16) -> set[int]:
    """``count`` requests, each on a new connection: the kernel spreads them over the workers."""
    files = {"image": ("d.png", DIGIT, "image/png")}
    return {httpx.post(f"{base}{path}", files=files, timeout=30).status_code for _ in range(count)}


def test_tritonclient_load_and_unload_reach_every_worker(root: Path) -> None:
    shutil.rmtree(root / "broken")  # a failure at start-up would keep the replica unready
    env = {"MMSERVE_REPOSITORY__POLL_INTERVAL_S": str(POLL_S)}
    with serve_subprocess(root, env, workers=2) as base:
        path = f"/v1/models/{NAME}/predict"
        triton = httpclient.InferenceServerClient(base.removeprefix("http://"))
        try:
            entries = triton.get_model_repository_index()
            assert {"name": NAME, "version": "1", "state": "READY", "reason": ""} in entries
            triton.unload_model(NAME)
            assert not triton.is_model_ready(NAME)  # at once in the worker that answered
            wait_for(lambda: _statuses(base, path) == {404}, timeout_s=POLL_S * 10 + 5)
            triton.load_model(NAME)
            assert triton.is_model_ready(NAME)
            wait_for(lambda: _statuses(base, path) == {200}, timeout_s=POLL_S * 10 + 5)
            broken = copy_model(SOURCE, root / ".staging", "broken", "1")
            (broken / "model.onnx").write_bytes(b"not a graph")
            broken.parent.rename(root / "broken")
            with pytest.raises(InferenceServerException, match="failed to load"):
                triton.load_model("broken")
            assert httpx.get(f"{base}/readyz").status_code == 200
        finally:
            triton.close()
