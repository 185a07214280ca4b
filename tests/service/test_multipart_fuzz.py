"""No multipart body or boundary, however malformed, gets a 5xx: each is a 400-class JSON error.

The bodies are mutations (seeded, so a failure reproduces) of one valid text + image upload:
bytes flipped, inserted, deleted or duplicated, the body cut short, delimiters doubled, and
boundaries of odd lengths and characters. Both the direct splitter and python_multipart's
streaming parser see them (bodies over ``WHOLE_BODY_MAX_BYTES`` stream).
"""

from __future__ import annotations

import random

from fastapi.testclient import TestClient

from service.uploads import WHOLE_BODY_MAX_BYTES
from tests.service import media

SEED = 13
ROUNDS = 2000
BOUNDARY = b"fuzzBoundary0123"


def valid_body(boundary: bytes, image: bytes) -> bytes:
    return (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="text"\r\n\r\nseven\r\n'
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="image"; filename="d.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + image + b"\r\n"
        b"--" + boundary + b"--\r\n"
    )


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        kind = rng.randrange(6)
        if kind == 0 and data:  # flip a byte
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind == 1:  # insert structural bytes
            data[at:at] = rng.choice([b"\r\n", b"--", b'"', b";", b":", b"\r\n\r\n", BOUNDARY])
        elif kind == 2:  # delete a run
            del data[at : at + rng.randint(1, 40)]
        elif kind == 3:  # duplicate a run
            data[at:at] = data[at : at + rng.randint(1, 200)]
        elif kind == 4:  # cut short
            del data[at:]
        else:  # a stray delimiter
            data[at:at] = b"\r\n--" + BOUNDARY + rng.choice([b"", b"--", b"\r\n"])
    return bytes(data)


def content_type(rng: random.Random) -> tuple[bytes, bytes]:
    """A boundary header, mostly the body's own, sometimes hostile."""
    if rng.random() < 0.8:
        return b"multipart/form-data; boundary=" + BOUNDARY, BOUNDARY
    odd = rng.choice([b"a" * 257, b"a" * 256, b"b" * 5000, b'"', b'""', b"x;y", b"\xe9", b"a b"])
    return b"multipart/form-data; boundary=" + odd, odd


def test_no_mutated_multipart_body_gets_a_5xx(client: TestClient) -> None:
    rng = random.Random(SEED)
    image = media.png()
    statuses: dict[int, int] = {}
    for round_ in range(ROUNDS):
        header, boundary = content_type(rng)
        body = mutate(rng, valid_body(boundary, image))
        if round_ % 10 == 0:  # pad some past the whole-body size so the streaming parser runs
            body = body.replace(b"seven", b"seven" + b" " * WHOLE_BODY_MAX_BYTES, 1)
        response = client.post("/v1/predict", content=body, headers={"content-type": header})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (round_, header[:80], body[:300], response.text)
        if response.status_code >= 400:
            assert set(response.json()["error"]) >= {"code", "message"}, response.text
    assert statuses.get(200, 0) > 0 and sum(n for s, n in statuses.items() if s >= 400) > ROUNDS / 2


def test_a_boundary_over_256_characters_is_a_400(client: TestClient) -> None:
    boundary = b"a" * 300
    body = valid_body(boundary, media.png())
    for path in ("/v1/predict", "/v1/models/digits-mean/predict"):
        response = client.post(
            path,
            content=body,
            headers={"content-type": f"multipart/form-data; boundary={'a' * 300}"},
        )
        assert response.status_code == 400, response.text
        assert "boundary is 300 characters; the limit is 256" in response.json()["error"]["message"]
