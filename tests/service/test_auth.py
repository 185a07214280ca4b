"""API keys over real HTTP: every route of the app with no key, a wrong key, a revoked key and
a good key in each header; the public routes stay open; keys reload without a restart.

One server (a subprocess, one worker) takes keys from ``MMSERVE_API_KEYS`` and from a key file
of digests. A key is revoked by rewriting the file, which the server notices by itself.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from service.app import create_app
from service.keys import hash_key
from tests.logcheck import leaks, secret
from tests.service.conftest import DEFAULT_MODEL, make_settings
from tests.service.live import LiveServer, live_server

INLINE_KEY = secret("alice-key-7f3a9c1e5b2d4f60")  # in MMSERVE_API_KEYS as alice=...
FILE_KEY = secret("bob-key-0c8e2a6f4b1d9e73")  # in the key file, as its digest
REVOKED_KEY = secret("dave-key-5a1f7c3e9b0d2e84")  # in the key file until the fixture removes it
WRONG_KEY = secret("mallory-key-00000000000000")
PUBLIC = {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/"}
GOOD_HEADERS = {
    "X-API-Key": {"X-API-Key": FILE_KEY},
    "Bearer": {"Authorization": f"Bearer {INLINE_KEY}"},
}


def key_file_text(*entries: tuple[str, str]) -> str:
    return "# name sha256:<hex>\n" + "".join(f"{n} {hash_key(k)}\n" for n, k in entries)


def wait_for_status(url: str, headers: dict[str, str], status: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while httpx.get(url, headers=headers).status_code != status:
        assert time.monotonic() < deadline, f"{url} did not answer {status} in {timeout_s} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api-keys"
    path.write_text(key_file_text(("bob", FILE_KEY), ("dave", REVOKED_KEY)))
    return path


@pytest.fixture(scope="module")
def keyed(
    model_root: Path, key_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    env = {
        "MMSERVE_API_KEYS": f"alice={INLINE_KEY}",
        "MMSERVE_API_KEYS_FILE": str(key_file),
        "MMSERVE_AUTH__RELOAD_INTERVAL_S": "0.2",
    }
    log_path = tmp_path_factory.mktemp("keyed") / "server.log"
    with live_server(model_root, log_path, env) as server:
        url = f"{server.url}/v1/models"
        assert httpx.get(url, headers={"X-API-Key": REVOKED_KEY}).status_code == 200
        key_file.write_text(key_file_text(("bob", FILE_KEY)))  # dave's key is revoked
        wait_for_status(url, {"X-API-Key": REVOKED_KEY}, 401, timeout_s=5)
        yield server
    assert leaks(server.log()) == [], "the server logged a key"


def app_routes() -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, found by walking its routers."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # FastAPI's included router
                walk(route.original_router.routes)
            elif getattr(route, "methods", None):
                found.extend((m, route.path) for m in sorted(route.methods) if m != "HEAD")

    walk(create_app(make_settings(Path("/nonexistent"))).routes)
    # Mounted files: the page's own (public) and the API docs' (protected).
    found += [("GET", "/static/app.js"), ("GET", "/docs-static/swagger-ui.css")]
    return sorted(set(found))


def concrete(path: str) -> str:
    # A repository route would act on the model: point it at one that does not exist.
    model = "no-such-model" if "/repository" in path else DEFAULT_MODEL
    return (
        path.replace("{model}", model)
        .replace("{model_name}", model)
        .replace("{version}", "1")
        .replace("{path:path}", "unknown")
    )


def call(server: LiveServer, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    data = {"text": "seven"} if method == "POST" and path.startswith("/v1") else None
    return httpx.request(method, server.url + concrete(path), headers=headers, data=data)


def assert_refused(response: httpx.Response, path: str) -> None:
    assert response.status_code == 401, (path, response.status_code, response.text)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    if path.startswith("/v2"):
        assert set(body) == {"error"} and isinstance(body["error"], str)
    else:
        assert body["error"]["code"] == "unauthorized"
        assert body["error"]["request_id"] == response.headers["X-Request-ID"]


ROUTES = app_routes()


def test_every_route_is_listed() -> None:
    paths = {path for _, path in ROUTES}
    assert {"/v1/predict", "/v2/models/{model}/infer", "/metrics", "/docs"} <= paths


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_route_needs_a_valid_key(keyed: LiveServer, method: str, path: str) -> None:
    public = path in PUBLIC or path.startswith("/static/")
    attempts = {
        "no key": {},
        "wrong key": {"X-API-Key": WRONG_KEY},
        "wrong bearer": {"Authorization": f"Bearer {WRONG_KEY}"},
        "revoked key": {"X-API-Key": REVOKED_KEY},
        "not a bearer": {"Authorization": f"Basic {INLINE_KEY}"},
    }
    for what, headers in attempts.items():
        response = call(keyed, method, path, headers)
        if public:
            assert response.status_code != 401, (what, response.text)
        else:
            assert_refused(response, path)
    for what, headers in GOOD_HEADERS.items():
        response = call(keyed, method, path, headers)
        assert response.status_code != 401, (what, response.text)
        assert response.status_code < 500 or path.endswith("/ready"), (what, response.text)


def test_predict_with_each_header_answers(keyed: LiveServer) -> None:
    for headers in GOOD_HEADERS.values():
        response = httpx.post(f"{keyed.url}/v1/predict", data={"text": "seven"}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == DEFAULT_MODEL


def test_metrics_count_key_names_never_keys(keyed: LiveServer) -> None:
    httpx.get(f"{keyed.url}/v1/models", headers={"X-API-Key": FILE_KEY})
    text = httpx.get(f"{keyed.url}/metrics", headers={"X-API-Key": FILE_KEY}).text
    assert 'mmserve_requests_by_key_total{key="bob",status="200"}' in text
    assert 'key="anonymous",status="401"' in text
    for key in (INLINE_KEY, FILE_KEY, REVOKED_KEY, WRONG_KEY):
        assert key not in text


def test_a_key_added_to_the_file_works_without_restart(keyed: LiveServer, key_file: Path) -> None:
    new_key = "erin-key-3d9b7f1a5c2e8d46"
    url = f"{keyed.url}/v1/models"
    assert httpx.get(url, headers={"X-API-Key": new_key}).status_code == 401
    key_file.write_text(key_file_text(("bob", FILE_KEY), ("erin", new_key)))
    wait_for_status(url, {"X-API-Key": new_key}, 200, timeout_s=5)
    assert httpx.get(url, headers={"X-API-Key": FILE_KEY}).status_code == 200
    # A file that no longer parses keeps the keys that were valid (and says why in the log).
    key_file.write_text("erin not-a-digest\n")
    time.sleep(0.6)
    assert httpx.get(url, headers={"X-API-Key": new_key}).status_code == 200
    assert "API keys not reloaded" in keyed.log()
    key_file.write_text(key_file_text(("bob", FILE_KEY)))
    wait_for_status(url, {"X-API-Key": new_key}, 401, timeout_s=5)


def test_tritonclient_with_a_key(keyed: LiveServer) -> None:
    address = keyed.url.removeprefix("http://")
    client = httpclient.InferenceServerClient(address)
    try:
        assert client.is_server_live()  # health is public
        with pytest.raises(InferenceServerException, match="API key"):
            client.get_model_metadata(DEFAULT_MODEL)
        headers = {"Authorization": f"Bearer {INLINE_KEY}"}
        metadata = client.get_model_metadata(DEFAULT_MODEL, headers=headers)
        assert metadata["name"] == DEFAULT_MODEL
        text = httpclient.InferInput("text", [1], "BYTES")
        import numpy as np

        text.set_data_from_numpy(np.array([b"seven"], dtype=np.object_))
        result = client.infer(DEFAULT_MODEL, [text], headers=headers)
        assert result.get_response()["model_name"] == DEFAULT_MODEL
    finally:
        client.close()


@pytest.mark.slow
def test_sighup_reloads_every_worker(model_root: Path, tmp_path: Path) -> None:
    """Two workers, a key file checked only once an hour: SIGHUP alone makes the new key valid."""
    key_file = tmp_path / "keys"
    key_file.write_text(key_file_text(("bob", FILE_KEY)))
    env = {"MMSERVE_API_KEYS_FILE": str(key_file), "MMSERVE_AUTH__RELOAD_INTERVAL_S": "3600"}
    new_key = "frank-key-6e2c8a4f0b7d1e95"
    with live_server(model_root, tmp_path / "server.log", env, workers=2) as server:
        url = f"{server.url}/v1/models"
        key_file.write_text(key_file_text(("bob", FILE_KEY), ("frank", new_key)))
        time.sleep(0.2)
        assert httpx.get(url, headers={"X-API-Key": new_key}).status_code == 401
        os.kill(server.process.pid, signal.SIGHUP)
        time.sleep(1.0)
        # A new connection each time: the kernel spreads them over both workers' sockets.
        statuses = [
            httpx.get(url, headers={"X-API-Key": new_key}, timeout=10).status_code
            for _ in range(24)
        ]
        assert statuses == [200] * 24, server.log()
        assert server.process.poll() is None


def test_health_answers_without_a_key_and_says_nothing_of_keys(keyed: LiveServer) -> None:
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
        response = httpx.get(keyed.url + path)
        assert response.status_code == 200, (path, response.text)
    assert json.dumps(httpx.get(keyed.url + "/readyz").json()).count("key") == 0


def test_the_api_description_names_both_ways_to_send_a_key(keyed: LiveServer) -> None:
    schema = httpx.get(f"{keyed.url}/openapi.json", headers={"X-API-Key": FILE_KEY}).json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    assert "security" not in schema["paths"]["/v1/predict"]["post"]  # the global one applies


def test_a_preflight_needs_no_key_and_a_refusal_is_readable_cross_origin(
    model_root: Path,
) -> None:
    from fastapi.testclient import TestClient

    origin = "https://app.example"
    settings = make_settings(model_root, api_keys=f"alice={INLINE_KEY}", cors_origins=[origin])
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/v1/predict",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key",
            },
        )
        assert preflight.status_code == 200
        assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
        refused = client.get("/v1/models", headers={"Origin": origin})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == origin
        allowed = client.get("/v1/models", headers={"Origin": origin, "X-API-Key": INLINE_KEY})
        assert allowed.status_code == 200
