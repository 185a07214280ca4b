"""The service's errors mapped to the protocol's statuses on /v2."""

from __future__ import annotations

import json

import pytest

from service.errors import (
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    UnsupportedMediaType,
)
from service.v2.errors import from_service_error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput("x"), 400),
        (UnsupportedMediaType("x"), 400),
        (PayloadTooLarge("x"), 400),
        (ModelNotFound("x"), 404),
        (ModelNotReady("x"), 503),
        (Overloaded("x", retry_after_s=2), 503),
        (RequestTimeout("x"), 504),
        (InferenceFailed("x"), 500),
    ],
)
def test_status_and_shape(error: ServiceError, status: int) -> None:
    response = from_service_error(error)
    assert response.status_code == status
    assert json.loads(bytes(response.body)) == {"error": "x"}
    if isinstance(error, Overloaded):
        assert response.headers["Retry-After"] == "2"
