"""Errors that say what to do, over real HTTP, the same on the fast path and FastAPI's routes.

``?top_k=%35`` ("5") sends a request down FastAPI's routes instead of the fast path (see
``service.routes.fastpath``), so each case is checked on both.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import REPO_ROOT
from tests.service import media
from tests.service.conftest import DEFAULT_MODEL, _free_port

PATHS = ["/v1/predict", "/v1/predict?top_k=%35", f"/v1/models/{DEFAULT_MODEL}/predict"]
Files = list[tuple[str, tuple[str | None, bytes]]]


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error


def _same_error_on_every_path(server: str, files: Files, status: int) -> dict[str, Any]:
    errors = [_error(httpx.post(server + path, files=files, timeout=10), status) for path in PATHS]
    for error in errors:
        error.pop("request_id")
    assert all(error == errors[0] for error in errors), errors
    return errors[0]


def test_empty_text_says_the_text_is_empty(server: str) -> None:
    error = _same_error_on_every_path(server, [("text", (None, b""))], 422)  # curl -F text=
    assert error["field"] == "text"
    assert error["message"].startswith("the text field is empty")
    assert "at least one" not in error["message"]


@pytest.mark.parametrize(("field", "value"), [("image", "digit.png"), ("audio", "seven.wav")])
def test_a_file_name_sent_as_text_gets_the_curl_hint(server: str, field: str, value: str) -> None:
    # curl -F image=digit.png (no @) sends the name as a plain field: no filename, no bytes.
    error = _same_error_on_every_path(server, [(field, (None, value.encode()))], 422)
    assert error["field"] == field
    assert error["message"].startswith(f"{field} must be a file upload")
    assert f"-F {field}=@{value}" in error["message"]


def test_a_file_without_a_file_name_is_still_accepted(server: str) -> None:
    # curl -F "image=<digit.png" sends the file's bytes without a filename: binary, not a name.
    response = httpx.post(
        f"{server}/v1/predict", files=[("image", (None, media.png()))], timeout=10
    )
    assert response.status_code == 200, response.text


def test_urlencoded_image_gets_the_curl_hint(server: str) -> None:
    response = httpx.post(f"{server}/v1/predict", data={"image": "digit.png"}, timeout=10)
    error = _error(response, 422)
    assert error["field"] == "image" and "-F image=@digit.png" in error["message"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_without_at_sign(server: str, tmp_path: Path) -> None:
    (tmp_path / "digit.png").write_bytes(b"\x89PNG not really")
    command = ["curl", "-s", "-F", "image=digit.png", f"{server}/v1/predict"]
    answer = subprocess.run(command, cwd=tmp_path, capture_output=True, check=True, timeout=30)
    assert "with curl use -F image=@digit.png" in answer.stdout.decode()


@pytest.mark.parametrize(
    "path",
    ["/v1/predict", f"/v1/models/{DEFAULT_MODEL}/predict", f"/v1/models/{DEFAULT_MODEL}/embed"],
)
def test_get_on_an_upload_route_says_how_to_post(server: str, path: str) -> None:
    response = httpx.get(server + path, timeout=10)
    error = _error(response, 405)
    assert response.headers["Allow"] == "POST"
    assert error["code"] == "method_not_allowed"
    message = error["message"]
    assert "POST a multipart/form-data body" in message
    assert "text, image and audio" in message and f"{server}/docs" in message
    assert f"curl -F text=seven -F image=@digit.png {server}{path}" in message


def test_other_routes_405_names_the_allowed_method(server: str) -> None:
    response = httpx.delete(f"{server}/healthz", timeout=10)
    error = _error(response, 405)
    assert response.headers["Allow"] == "GET" and error["message"].endswith("use GET")


def _serve(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "service", "serve", "--port", "0", "--workers", "1"]
    return subprocess.run(
        [*command, *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )


def test_a_missing_model_dir_stops_serve(tmp_path: Path) -> None:
    missing = tmp_path / "onnx_modles"
    result = _serve("--model-dir", str(missing))
    assert result.returncode == 2
    assert f"the model folder {missing} does not exist" in result.stderr
    assert "<name>/<version>/manifest.json" in result.stderr


def test_a_model_dir_without_manifests_stops_serve(tmp_path: Path) -> None:
    (tmp_path / "digits-xattn" / "1").mkdir(parents=True)  # a model folder, no manifest.json
    result = _serve("--model-dir", str(tmp_path))
    assert result.returncode == 2
    assert f"the model folder {tmp_path} holds no model" in result.stderr
    assert "--allow-empty" in result.stderr


def test_allow_empty_starts_with_no_models(tmp_path: Path) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", "1",
               "--model-dir", str(tmp_path), "--allow-empty", "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, "serve --allow-empty exited"
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("serve --allow-empty did not answer within 60 s")
        assert health.status_code == 200 and health.json()["models"] == {}
    finally:
        process.terminate()
        process.wait(timeout=30)
