"""Model folders added, replaced and removed while serving, through the real app and server."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.reload import fingerprint
from service.settings import REPO_ROOT
from tests.service import media
from tests.service.conftest import make_settings, multipart, serve_subprocess
from tests.service.tiny_model import copy_model

SOURCE = REPO_ROOT / "onnx_models" / "digits-mean" / "1"  # small: 1 MB
POLL_S = 0.2
NAME = "m"
DIGIT = media.png(media.digit_image("7"))


def wait_for(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the change was not seen in time"
        time.sleep(0.05)


def publish(root: Path, version: str) -> Path:
    """The documented way: write the folder aside (hidden), then rename it into place."""
    staged = copy_model(SOURCE, root / ".staging", NAME, version)
    target = root / NAME / version
    target.parent.mkdir(exist_ok=True)
    staged.rename(target)
    return target


def predict(client: TestClient | httpx.Client, version: str | None = None) -> httpx.Response:
    query = "" if version is None else f"?version={version}"
    files = multipart({"image": DIGIT, "text": "seven"})
    return client.post(f"/v1/models/{NAME}/predict{query}", files=files)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    publish(tmp_path, "1")
    return tmp_path


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    settings = make_settings(root, repository={"poll_interval_s": POLL_S})
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def failures(client: TestClient) -> dict[tuple[str, str], str]:
    body = client.get("/v1/models").json()
    return {(f["name"], f["version"]): f["reason"] for f in body["failed"]}


def test_fingerprint_changes_with_a_file_and_needs_the_model_file(tmp_path: Path) -> None:
    folder = copy_model(SOURCE, tmp_path, NAME, "1")
    before = fingerprint(folder)
    assert before.complete()
    (folder / "report.md").write_text("changed\n")
    assert fingerprint(folder).fingerprint != before.fingerprint
    (folder / "model.onnx").unlink()
    assert not fingerprint(folder).complete()


def test_a_new_version_is_served_without_a_restart_and_becomes_the_latest(
    client: TestClient, root: Path
) -> None:
    assert predict(client).json()["version"] == "1"
    publish(root, "2")
    wait_for(lambda: predict(client).json()["version"] == "2")
    assert client.get(f"/v1/models/{NAME}").json()["versions"] == ["1", "2"]
    assert predict(client, "1").json()["version"] == "1"
    assert client.get("/readyz").status_code == 200


def test_a_removed_version_answers_404_and_the_name_falls_back(
    client: TestClient, root: Path
) -> None:
    publish(root, "2")
    wait_for(lambda: predict(client).json()["version"] == "2")
    shutil.rmtree(root / NAME / "2")
    wait_for(lambda: predict(client, "2").status_code == 404)
    assert predict(client, "2").json()["error"]["field"] == "version"
    assert predict(client).json()["version"] == "1"
    shutil.rmtree(root / NAME)
    wait_for(lambda: predict(client).status_code == 404)
    assert predict(client).json()["error"]["field"] == "model"


def test_a_broken_replacement_is_a_load_failure_and_the_old_version_serves(
    client: TestClient, root: Path
) -> None:
    broken = copy_model(SOURCE, root / ".staging", NAME, "1")
    (broken / "model.onnx").write_bytes(b"not an onnx graph")
    (root / NAME / "1").rename(root / ".old")
    broken.rename(root / NAME / "1")
    wait_for(lambda: (NAME, "1") in failures(client))
    assert "ONNX" in failures(client)[(NAME, "1")] or "onnx" in failures(client)[(NAME, "1")]
    response = predict(client)
    assert response.status_code == 200 and response.json()["version"] == "1"
    # A failure while serving is reported, but does not take the replica out of rotation.
    readyz = client.get("/readyz")
    assert readyz.status_code == 200 and readyz.json()["models"][f"{NAME}/1"].startswith("failed")
    # Fixed in place: it loads again and the failure is gone.
    shutil.rmtree(root / NAME / "1")
    (root / ".old").rename(root / NAME / "1")
    wait_for(lambda: (NAME, "1") not in failures(client))


def test_a_folder_still_being_written_is_not_loaded_early(client: TestClient, root: Path) -> None:
    folder = root / NAME / "3"
    staged = copy_model(SOURCE, root / ".staging", NAME, "3")
    folder.mkdir()
    shutil.copy(staged / "manifest.json", folder / "manifest.json")
    graph = (staged / "model.onnx").read_bytes()
    chunks = [graph[i : i + len(graph) // 10] for i in range(0, len(graph), len(graph) // 10)]
    with (folder / "model.onnx").open("wb") as out:
        for chunk in chunks:  # a slow copy: the file grows across several polls
            out.write(chunk)
            out.flush()
            time.sleep(POLL_S * 0.75)
            assert (NAME, "3") not in failures(client)
            assert predict(client).json()["version"] == "1"
    shutil.copytree(staged / "tokenizer", folder / "tokenizer")
    wait_for(lambda: predict(client).json()["version"] == "3")
    assert (NAME, "3") not in failures(client)


def test_a_folder_without_a_manifest_waits_instead_of_failing(
    client: TestClient, root: Path
) -> None:
    folder = root / NAME / "4"
    folder.mkdir()
    shutil.copy(SOURCE / "model.onnx", folder / "model.onnx")
    time.sleep(POLL_S * 5)
    assert (NAME, "4") not in failures(client)
    index = client.post("/v2/repository/index").json()
    entry = next(e for e in index if e["version"] == "4")
    assert entry["state"] == "UNAVAILABLE" and "settled" in entry["reason"]


def test_predictions_never_fail_while_versions_are_swapped(root: Path) -> None:
    env = {"MMSERVE_REPOSITORY__POLL_INTERVAL_S": str(POLL_S)}
    with serve_subprocess(root, env) as base, httpx.Client(base_url=base, timeout=30) as http:
        stop = threading.Event()
        answers: list[tuple[int, str]] = []

        def hammer() -> None:
            while not stop.is_set():
                response = predict(http)
                answers.append((response.status_code, response.text))

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            publish(root, "2")  # a new latest version
            wait_for(lambda: bool(answers) and '"version":"2"' in answers[-1][1])
            # Replaced in place, the two renames apart: the version must not vanish between.
            staged = copy_model(SOURCE, root / ".staging", NAME, "2")
            (root / NAME / "2").rename(root / ".old-2")
            time.sleep(POLL_S * 0.9)  # one poll at most sees it gone
            staged.rename(root / NAME / "2")
            shutil.rmtree(root / NAME / "1")  # the old version removed
            time.sleep(POLL_S * 10)
        finally:
            stop.set()
            thread.join()
        bad = [(status, text) for status, text in answers if status != 200]
        assert not bad, bad[:3]
        versions = {text.split('"version":"')[1][0] for _, text in answers}
        assert versions == {"1", "2"} and len(answers) > 20
        assert http.get(f"/v1/models/{NAME}").json()["versions"] == ["2"]
