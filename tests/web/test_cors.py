"""CORS: a web client hosted elsewhere may upload when, and only when, its origin is allowed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.web.conftest import DEFAULT_MODEL

ALLOWED = "https://app.example"
OTHER = "https://evil.example"
PREDICT = f"/v1/models/{DEFAULT_MODEL}/predict"


def serve(model_root: Path, origins: list[str]) -> TestClient:
    return TestClient(
        create_app(
            Settings(
                model_dir=model_root, workers=1, cors_origins=origins, allowed_hosts=["testserver"]
            )
        )
    )


@pytest.fixture(scope="module")
def client(web_model_root: Path) -> Iterator[TestClient]:
    with serve(web_model_root, [ALLOWED, "https://other.example"]) as test_client:
        yield test_client


def preflight(client: TestClient, origin: str) -> tuple[int, dict[str, str]]:
    answer = client.options(
        PREDICT, headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    return answer.status_code, dict(answer.headers)


def test_an_allowed_origin_may_read_the_answers(client: TestClient) -> None:
    answer = client.get("/v1/models", headers={"Origin": ALLOWED})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    exposed = answer.headers["access-control-expose-headers"].lower()
    assert "retry-after" in exposed and "x-request-id" in exposed


def test_an_allowed_origin_may_read_the_error_messages(client: TestClient) -> None:
    answer = client.post(
        PREDICT,
        headers={"Origin": ALLOWED},
        files={"image": ("notes.png", b"not a picture", "image/png")},
    )
    assert answer.status_code == 415
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert answer.json()["error"]["field"] == "image"


def test_an_allowed_origin_passes_the_preflight(client: TestClient) -> None:
    status, headers = preflight(client, ALLOWED)
    assert status == 200
    assert headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in headers["access-control-allow-methods"]


def test_another_origin_gets_no_cors_headers(client: TestClient) -> None:
    answer = client.get("/v1/models", headers={"Origin": OTHER})
    assert "access-control-allow-origin" not in answer.headers
    status, headers = preflight(client, OTHER)
    assert status == 400
    assert "access-control-allow-origin" not in headers


def test_no_origin_is_allowed_by_default(web_model_root: Path) -> None:
    with serve(web_model_root, []) as client:
        answer = client.get("/v1/models", headers={"Origin": ALLOWED})
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers
        status, headers = preflight(client, ALLOWED)
        assert "access-control-allow-origin" not in headers


def test_origins_come_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMSERVE_CORS_ORIGINS", f"{ALLOWED}, https://b.example,")
    assert Settings().cors_origins == [ALLOWED, "https://b.example"]
