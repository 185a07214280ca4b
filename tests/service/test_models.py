"""``GET /v1/models``, ``GET /v1/models/{model}``, health, metrics and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from service.app import create_app
from tests.service.conftest import DEFAULT_MODEL, DirectModel, make_settings, multipart


def test_list_models(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["default_model"] == DEFAULT_MODEL
    assert body["failed"] == []
    summary = next(m for m in body["models"] if m["name"] == DEFAULT_MODEL)
    assert summary["default"] is True
    assert set(summary["modalities"]) == {"image", "audio", "text"}


def test_model_detail(client: TestClient, direct: DirectModel) -> None:
    body = client.get(f"/v1/models/{DEFAULT_MODEL}").json()
    manifest = direct.manifest
    assert body["version"] == manifest.version
    assert [t["name"] for t in body["tasks"]] == [t.name for t in manifest.tasks]
    assert body["tasks"][0]["labels"] == manifest.tasks[0].labels
    assert body["recipes"]["image"]["height"] == manifest.modalities.image.height  # type: ignore[union-attr]
    assert body["recipes"]["audio"]["sample_rate"] == manifest.modalities.audio.sample_rate  # type: ignore[union-attr]
    assert body["execution_providers"] == ["CPUExecutionProvider"]
    assert body["limits"]["max_upload_bytes"] > 0
    assert body["batching"]["max_batch_size"] >= 1 and body["batching"]["max_queue"] >= 1
    assert body["evaluation"] == manifest.evaluation


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "models": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"][DEFAULT_MODEL] == "ready"


def test_metrics_count_requests_by_model(client: TestClient) -> None:
    client.post("/v1/predict", files=multipart({"text": "seven"}))
    text = client.get("/metrics").text
    labels = f'endpoint="/v1/predict",model="{DEFAULT_MODEL}",status="200"'
    assert f"mmserve_requests_total{{{labels}}}" in text
    assert "mmserve_batch_size_bucket" in text


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def test_openapi_is_valid_3x(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"].startswith("3.")
    validate(openapi)


def test_every_route_documents_its_answers(openapi: dict[str, Any]) -> None:
    for path, operations in openapi["paths"].items():
        # The V2 protocol has its own error body, {"error": "<message>"}.
        v2 = path.startswith("/v2")
        errors = {"ErrorBody", "Readiness"} if v2 else {"ErrorResponse", "ReadinessResponse"}
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "200" in responses, (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema["$ref"].rsplit("/", 1)[-1] in errors, (method, path, status)


@pytest.mark.parametrize(
    "path", ["/v1/predict", "/v1/models/{model}/predict", "/v1/models/{model}/embed"]
)
def test_upload_routes_offer_file_pickers(openapi: dict[str, Any], path: str) -> None:
    operation = openapi["paths"][path]["post"]
    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["image"]["format"] == "binary"
    assert schema["properties"]["audio"]["format"] == "binary"
    assert schema["properties"]["text"]["type"] == "string"
    assert {"413", "415", "422", "404", "429"} <= set(operation["responses"])


def test_responses_have_examples(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    for name in ("PredictResponse", "EmbedResponse", "ErrorResponse", "ModelList"):
        assert "example" in schemas[name], name


def test_docs_page(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200 and "swagger-ui" in response.text


def test_cors_origins_from_settings(model_root: Path) -> None:
    settings = make_settings(model_root, cors_origins=["https://app.example"])
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/v1/predict",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
