"""Every kind of bad input gets its 4xx naming the field, and the service answers well after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service import media
from tests.service.conftest import DEFAULT_MODEL, make_settings, multipart

PNG = media.png()
WAV = media.encode_audio(media.tone(), 16000, "WAV", "PCM_16")


def _truncated_png() -> bytes:
    return PNG[: len(PNG) // 2]


def _corrupt_wav() -> bytes:
    return WAV[:44] + bytes(range(256)) * 4  # a WAV header, then the data chunk cut short


CASES: dict[str, tuple[list[tuple[str, tuple[str | None, bytes]]], int, str | None]] = {
    # name: (multipart files, expected status, field named)
    "empty text only": ([("text", (None, b""))], 422, "text"),
    "file name as image": ([("image", (None, b"digit.png"))], 422, "image"),
    "unknown field": ([("text", (None, b"seven")), ("video", ("v.mp4", b"xx"))], 422, "video"),
    "field twice": ([("text", (None, b"seven")), ("text", (None, b"one"))], 422, "text"),
    "text bytes not utf-8": ([("text", (None, b"\xff\xfe\xfa"))], 422, "text"),
    "blank text": ([("text", (None, b"   \n"))], 422, "text"),
    "empty image file": ([("image", ("digit.png", b""))], 422, "image"),
    "not an image": ([("image", ("digit.png", b"this is plain text, not a PNG"))], 415, "image"),
    "audio bytes as image": ([("image", ("digit.png", WAV))], 415, "image"),
    "truncated png": ([("image", ("digit.png", _truncated_png()))], 422, "image"),
    "decompression bomb": (
        [("image", ("bomb.png", media.png_claiming_size(50_000, 50_000)))],
        413,
        "image",
    ),
    "bomb under pillow's own limit": (
        [("image", ("bomb.png", media.png_claiming_size(8_000, 8_000)))],
        413,
        "image",
    ),
    "not audio": ([("audio", ("seven.wav", b"plain text, not a sound file"))], 415, "audio"),
    "malformed wav header": ([("audio", ("seven.wav", b"RIFF....WAVEfmt nonsense"))], 422, "audio"),
    "image bytes as audio": ([("audio", ("seven.wav", PNG))], 415, "audio"),
    "corrupt wav": ([("audio", ("seven.wav", _corrupt_wav()))], 422, "audio"),
    "audio over the limit": (
        [("audio", ("long.wav", media.encode_audio(media.tone(31, 8000), 8000, "WAV", "PCM_U8")))],
        413,
        "audio",
    ),
    "text over the limit": ([("text", (None, b"seven " * 400))], 413, "text"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_4xx_naming_the_field(client: TestClient, case: str) -> None:
    files, status, field = CASES[case]
    response = client.post("/v1/predict", files=files)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert error["message"] and error["code"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    _still_answers(client)


def _still_answers(client: TestClient) -> None:
    uploads = {"text": "seven", "image": PNG, "audio": WAV}
    response = client.post("/v1/predict", files=multipart(uploads))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"garbage", "multipart/form-data; boundary=xyz", 400),
        (
            b'--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nseven',
            "multipart/form-data; boundary=xyz",
            400,
        ),
        (
            b"--xyz\r\nContent-Type: text/plain\r\n\r\nseven\r\n--xyz--\r\n",
            "multipart/form-data; boundary=xyz",
            400,
        ),
        (b"--xyz--\r\n", "multipart/form-data; boundary=xyz", 422),
        (b"text=seven", "multipart/form-data", 400),
        (b'{"text": "seven"}', "application/json", 415),
        (b"seven", "", 415),
    ],
    ids=[
        "garbage",
        "no closing boundary",
        "part without name",
        "no parts",
        "no boundary",
        "json",
        "no content type",
    ],
)
def test_malformed_bodies_are_client_errors(
    client: TestClient, body: bytes, content_type: str, status: int
) -> None:
    response = client.post("/v1/predict", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert "error" in response.json()
    _still_answers(client)


def test_unknown_model_and_version_are_404(client: TestClient) -> None:
    files = multipart({"text": "seven"})
    response = client.post("/v1/models/no-such-model/predict", files=files)
    assert response.status_code == 404
    assert "no-such-model" in response.json()["error"]["message"]
    response = client.post(f"/v1/models/{DEFAULT_MODEL}/predict?version=999", files=files)
    assert response.status_code == 404
    assert client.get("/v1/models/no-such-model").status_code == 404


def test_bad_query_parameter_is_422_naming_it(client: TestClient) -> None:
    response = client.post("/v1/predict?top_k=0", files=multipart({"text": "seven"}))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "top_k"


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.get("/v1/predict")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


@pytest.fixture(scope="module")
def small_limits(model_root: Path) -> Iterator[TestClient]:
    limits = {"max_upload_bytes": 20_000, "max_body_bytes": 60_000, "max_text_chars": 10}
    with TestClient(create_app(make_settings(model_root, limits=limits))) as test_client:
        yield test_client


def test_part_over_the_upload_limit_is_413_naming_it(small_limits: TestClient) -> None:
    big = media.encode_image(media.digit_image(size=120, mode="RGB"), "BMP")
    assert 20_000 < len(big) < 60_000  # over the part limit, under the body limit
    response = small_limits.post("/v1/predict", files=[("image", ("big.bmp", big))])
    assert response.status_code == 413
    assert response.json()["error"]["field"] == "image"
    _still_answers_small(small_limits)


def test_body_over_the_limit_is_413_before_reading_it(small_limits: TestClient) -> None:
    response = small_limits.post(
        "/v1/predict",
        content=b"x" * 70_000,
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["field"] is None
    _still_answers_small(small_limits)


def test_text_limit_counts_characters_not_bytes(small_limits: TestClient) -> None:
    ok = small_limits.post("/v1/predict", files=multipart({"text": "семь семь"}))  # 9 chars
    assert ok.status_code == 200, ok.text
    over = small_limits.post("/v1/predict", files=multipart({"text": "seven seven"}))
    assert over.status_code == 413 and over.json()["error"]["field"] == "text"


def _still_answers_small(client: TestClient) -> None:
    response = client.post("/v1/predict", files=multipart({"text": "seven", "image": PNG}))
    assert response.status_code == 200, response.text


def test_body_over_the_limit_is_413_while_streaming(small_limits: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies as bytes arrive
        yield b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(30):  # 30 kB: over the part limit, under the body limit
            yield b"x" * 1000

    response = small_limits.post(
        "/v1/predict",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["field"] == "image"
    _still_answers_small(small_limits)


def test_mutated_bodies_never_cause_a_5xx(client: TestClient) -> None:
    """Nothing a client sends causes a 500: byte flips, cuts and splices of a valid upload."""
    boundary = "b0undary"
    valid = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\nseven\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="d.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + PNG
        + f"\r\n--{boundary}--\r\n".encode()
    )
    rng = np.random.default_rng(0)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    statuses = set()
    for _ in range(150):
        body = bytearray(valid)
        kind = rng.integers(3)
        if kind == 0:  # flip a few bytes anywhere
            for i in rng.integers(0, len(body), size=int(rng.integers(1, 8))):
                body[i] = int(rng.integers(256))
        elif kind == 1:  # cut
            body = body[: int(rng.integers(len(body)))]
        else:  # splice a random chunk in
            at = int(rng.integers(len(body)))
            body[at:at] = rng.integers(
                0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8
            ).tobytes()
        response = client.post("/v1/predict", content=bytes(body), headers=headers)
        assert response.status_code < 500, (response.status_code, response.text)
        statuses.add(response.status_code)
    assert len(statuses) > 2  # the mutations reached several different checks
    _still_answers(client)
