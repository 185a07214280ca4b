"""The upload fast path (``service.routes.fastpath``) answers exactly as the FastAPI routes do.

A query with a percent-encoded value is passed on to FastAPI, so the same request can be sent
down either path and the answers compared.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.routes.fastpath import UploadRoutes
from service.routes.params import TOP_K_DEFAULT, ModelQuery, PredictQuery, plain_query
from service.routes.predict import EMBED, PREDICT, PREDICT_DEFAULT, UPLOAD_ROUTES
from tests.service import media
from tests.service.conftest import DEFAULT_MODEL, multipart

UPLOADS: dict[str, bytes | str] = {
    "image": media.png(),
    "audio": media.encode_audio(media.tone(), 16000, "WAV", "PCM_16"),
    "text": "seven",
}


def _answer(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    for varying in ("request_id", "timings_ms", "batch_size"):
        body.pop(varying)
    return body


@pytest.mark.parametrize("path", ["/v1/predict", f"/v1/models/{DEFAULT_MODEL}/predict"])
def test_fast_path_and_fastapi_route_give_the_same_answer(client: TestClient, path: str) -> None:
    fast = client.post(f"{path}?top_k=5&version=1", files=multipart(UPLOADS))
    # "%35" is "5": the fast path leaves percent-decoding to FastAPI.
    routed = client.post(f"{path}?top_k=%35&version=1", files=multipart(UPLOADS))
    assert _answer(fast) == _answer(routed)
    assert len(_answer(fast)["tasks"]["digit"]["top_k"]) == 5


def test_fast_path_and_fastapi_route_give_the_same_embedding(client: TestClient) -> None:
    path = f"/v1/models/{DEFAULT_MODEL}/embed"
    fast = client.post(f"{path}?version=1", files=multipart(UPLOADS))
    routed = client.post(f"{path}?version=%31", files=multipart(UPLOADS))
    assert _answer(fast) == _answer(routed)
    assert _answer(fast)["dim"] == len(_answer(fast)["embedding"]) > 0


def test_fast_path_errors_match_the_routes(client: TestClient) -> None:
    unknown = client.post("/v1/models/no-such-model/predict", files=multipart(UPLOADS))
    routed = client.post("/v1/models/no-such-model/predict?top_k=%33", files=multipart(UPLOADS))
    assert unknown.status_code == routed.status_code == 404
    first, second = unknown.json()["error"], routed.json()["error"]
    assert first["request_id"] == unknown.headers["X-Request-ID"]
    first.pop("request_id"), second.pop("request_id")
    assert first == second and first["field"] == "model"
    wrong_version = client.post("/v1/predict?version=99", files=multipart(UPLOADS))
    assert wrong_version.status_code == 404
    assert wrong_version.json()["error"]["field"] == "version"


def test_fast_path_answers_are_counted_by_route(client: TestClient) -> None:
    def count() -> float:
        text = client.get("/metrics").text
        line = next(
            (
                line
                for line in text.splitlines()
                if line.startswith("mmserve_requests_total{")
                and 'endpoint="/v1/models/{model}/predict"' in line
                and f'model="{DEFAULT_MODEL}"' in line
                and 'status="200"' in line
            ),
            None,
        )
        return 0.0 if line is None else float(line.rsplit(" ", 1)[1])

    before = count()
    assert client.post(f"/v1/models/{DEFAULT_MODEL}/predict", files=multipart(UPLOADS)).is_success
    assert count() == before + 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", (TOP_K_DEFAULT, None)),
        (b"top_k=7", (7, None)),
        (b"version=2&top_k=1000", (1000, "2")),
        (b"version=v1.0_b-c", (TOP_K_DEFAULT, "v1.0_b-c")),
        (b"top_k=05", (5, None)),  # as FastAPI reads it: the same pydantic model
        (b"other=1&top_k=3&", (3, None)),  # keys the query does not name are ignored, as there
    ],
)
def test_plain_queries_are_served_directly(query: bytes, expected: tuple[int, str | None]) -> None:
    parsed = plain_query(query, PredictQuery)
    assert parsed is not None and (parsed.top_k, parsed.version) == expected


@pytest.mark.parametrize(
    "query",
    [b"top_k=0", b"top_k=1001", b"top_k=x", b"top_k=", b"top_k=3&top_k=4", b"version=",
     b"version=a/b", b"version=_1", b"version=1&version=2", b"top_k=%33", b"text=a+b"],
)  # fmt: skip
def test_other_queries_are_left_to_fastapi(query: bytes) -> None:
    assert plain_query(query, PredictQuery) is None


def test_each_route_reads_its_own_query() -> None:
    embed = plain_query(b"version=2&top_k=0", ModelQuery)  # embed takes no top_k: ignored
    assert embed is not None and embed.version == "2"
    assert plain_query(b"", ModelQuery) == ModelQuery()


def test_the_upload_routes_are_found_by_their_templates() -> None:
    routes = UploadRoutes(UPLOAD_ROUTES)
    assert routes.find("/v1/predict") == (PREDICT_DEFAULT, None)
    assert routes.find("/v1/models/m-1.2/predict") == (PREDICT, "m-1.2")
    assert routes.find("/v1/models/m/embed") == (EMBED, "m")
    for path in [
        "/v1/models/m/other",
        "/v1/models/-bad/predict",  # not a model name: FastAPI's 422
        "/v1/models/a/b/predict",
        "/v1/predict/",
        "/v1/models//embed",
    ]:
        assert routes.find(path) is None
