"""The service's errors: one base class carrying the HTTP status, one JSON shape everywhere.

    ServiceError (500)
    ├── BadRequest (400)          the request itself is malformed (body, multipart framing,
    │                             a Host this server does not serve)
    ├── Unauthorized (401)        no API key, or one that is not (or no longer) valid
    ├── InvalidInput (422)        a field is present but unusable: names the field
    │   └── UnsupportedMediaType (415)  bytes are not a supported image/audio format
    ├── ClientTimeout (408)       the request head or body did not arrive in time
    ├── PayloadTooLarge (413)     a part or the whole body is over its limit
    ├── HeadersTooLarge (431)     the request head is over its size or header-count limit
    ├── ModelNotFound (404)
    ├── ModelNotReady (503)       still loading, failed to load, or draining
    ├── TooManyConnections (503)  the worker holds its limit of open connections
    ├── Overloaded (429)          the model's queue is full; carries Retry-After
    ├── RequestTimeout (504)      the request waited longer than its deadline
    ├── ClientDisconnected (499)  the client left before its answer; its work was cancelled
    └── InferenceFailed (500)     ONNX Runtime failed on a batch

Libraries' exceptions (Pillow, soundfile, tokenizers, onnxruntime) are translated into these
where they occur, with ``raise ... from exc`` so the cause stays in the log.
The JSON shape is ``{"error": {"code", "message", "field", "request_id"}}``; :data:`ErrorCode`
lists every ``code`` it can carry (``tests/service/test_error_codes.py`` holds it to the classes).
"""

from __future__ import annotations

from typing import ClassVar, Literal

# Each class's code (mypy checks every class's code against it).
ServiceErrorCode = Literal[
    "internal_error",
    "bad_request",
    "unauthorized",
    "invalid_input",
    "unsupported_media_type",
    "payload_too_large",
    "client_timeout",
    "headers_too_large",
    "model_not_found",
    "model_not_ready",
    "too_many_connections",
    "overloaded",
    "timeout",
    "client_closed_request",
    "inference_failed",
]
# Starlette's own HTTP errors (an unknown route, a wrong method), which no class here raises:
# service.exception_handlers answers them in the same shape.
RoutingErrorCode = Literal["not_found", "method_not_allowed", "http_error"]
ErrorCode = Literal[ServiceErrorCode, RoutingErrorCode]


class ServiceError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[ServiceErrorCode] = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ServiceError):
    status_code = 400
    code = "bad_request"


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="mmserve"'}


class InvalidInput(ServiceError):
    status_code = 422
    code: ClassVar[ServiceErrorCode] = "invalid_input"  # declared: a subclass has its own


class UnsupportedMediaType(InvalidInput):
    status_code = 415
    code = "unsupported_media_type"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class ClientTimeout(ServiceError):
    """Written by :mod:`service.connections`, which then closes the connection."""

    status_code = 408
    code = "client_timeout"


class HeadersTooLarge(ServiceError):
    status_code = 431
    code = "headers_too_large"


class ModelNotFound(ServiceError):
    status_code = 404
    code = "model_not_found"


class ModelNotReady(ServiceError):
    status_code = 503
    code = "model_not_ready"


class TooManyConnections(ServiceError):
    status_code = 503
    code = "too_many_connections"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class Overloaded(ServiceError):
    status_code = 429
    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class RequestTimeout(ServiceError):
    status_code = 504
    code = "timeout"


class ClientDisconnected(ServiceError):
    """Nobody will read this answer; the status only shows in logs and metrics."""

    status_code = 499
    code = "client_closed_request"


class InferenceFailed(ServiceError):
    status_code = 500
    code = "inference_failed"
