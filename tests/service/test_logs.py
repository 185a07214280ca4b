"""No payload, text or key in any log line, at debug level, errors included.

A server with API keys, debug logging and access logs is sent texts, uploads and keys that
exist nowhere else (good requests, refused ones, malformed ones); after it stops, its whole
output is searched for each of them. The same requests through an in-process app land in the
test session's own log capture (``tests/conftest.py``), which is searched at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.logcheck import leaks, secret
from tests.service import media
from tests.service.conftest import DEFAULT_MODEL, make_settings
from tests.service.live import live_server

KEY = secret("log-canary-key-4b8e1d7a3f0c9e25")
WRONG_KEY = secret("log-canary-wrong-9d3a7e1b5c8f2d60")
TEXT = secret("canary seven umbrella 5e2b9f")
LONG_TEXT = secret("canary overlong 7c1d3a " * 10)  # over the 100-character limit below
IMAGE_BYTES = secret("canary-not-an-image-8f2e6a")
V2_TEXT = secret("canary v2 tensor 3b7f1e")
TRUNCATED_WAV = media.encode_audio(media.tone(0.1), 16000, "WAV")[:40]  # a header, no samples


def drive(http: httpx.Client | TestClient) -> list[int]:
    """The requests: good, refused and malformed, each carrying a secret."""
    good = {"X-API-Key": KEY}
    v2_body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [V2_TEXT]}]}
    calls = [
        http.post("/v1/predict", data={"text": TEXT}, headers=good),
        http.post("/v1/predict", data={"text": TEXT}, headers={"X-API-Key": WRONG_KEY}),
        http.post("/v1/predict", data={"text": TEXT}, headers={"Authorization": f"Basic {KEY}"}),
        http.post("/v1/predict", data={"text": LONG_TEXT}, headers=good),
        http.post(
            "/v1/predict",
            files={"image": ("x.png", IMAGE_BYTES.encode()), "text": (None, TEXT.encode())},
            headers=good,
        ),
        http.post(f"/v1/models/{DEFAULT_MODEL}/embed", data={"text": TEXT}, headers=good),
        http.post(f"/v2/models/{DEFAULT_MODEL}/infer", json=v2_body, headers=good),
        http.post(
            f"/v2/models/{DEFAULT_MODEL}/infer",
            content=json.dumps(v2_body)[:-3].encode(),  # cut short: not JSON
            headers=good,
        ),
        http.post(
            "/v1/predict",
            files={"audio": ("a.wav", TRUNCATED_WAV + IMAGE_BYTES.encode())},
            headers=good,
        ),
    ]
    return [response.status_code for response in calls]


EXPECTED = [200, 401, 401, 422, 415, 200, 200, 400, 422]


def test_a_debug_log_of_a_server_holds_no_payload_or_key(model_root: Path, tmp_path: Path) -> None:
    env = {
        "MMSERVE_API_KEYS": f"logs={KEY}",
        "MMSERVE_LOG_LEVEL": "debug",
        "MMSERVE_ACCESS_LOG": "true",
        "MMSERVE_LIMITS__MAX_TEXT_CHARS": "100",
    }
    with live_server(model_root, tmp_path / "server.log", env) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            statuses = drive(http)
    log = server.log()
    assert statuses[:3] == EXPECTED[:3] and statuses[5] == 200, statuses
    assert all(s >= 400 for s in statuses[3:5]), statuses
    assert "DEBUG" in log and '"POST /v1/predict HTTP/1.1" 401' in log  # the log is complete
    assert leaks(log) == [], "the server logged what it was sent"


@pytest.mark.parametrize("debug", [True])
def test_the_in_process_app_logs_no_payload_or_key(model_root: Path, debug: bool) -> None:
    settings = make_settings(model_root, api_keys=f"logs={KEY}", limits={"max_text_chars": 100})
    with TestClient(create_app(settings)) as client:
        statuses = drive(client)
    assert statuses[:3] == EXPECTED[:3] and statuses[5] == 200, statuses
