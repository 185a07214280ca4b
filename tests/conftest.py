"""Session-wide: every log line the tests cause is checked for the secrets they sent."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.logcheck import Capture, leaks

# The tests' own HTTP clients log the URLs they request; what the product logs is the question.
PRODUCT_LOGGERS = ("service", "mmserve", "uvicorn", "starlette", "fastapi", "python_multipart")
CLIENT_LOGGERS = ("httpx", "httpcore", "urllib3", "geventhttpclient", "playwright")


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_the_logs() -> Iterator[Capture]:
    capture = Capture()
    capture.addFilter(lambda record: not record.name.startswith(CLIENT_LOGGERS))
    root = logging.getLogger()
    root.addHandler(capture)
    # Debug lines too, where payloads slip in: the service's and its HTTP stack's loggers.
    loggers = [logging.getLogger(name) for name in PRODUCT_LOGGERS]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for logger, level in zip(loggers, previous, strict=True):
            logger.setLevel(level)
    found = [line for line in capture.lines if leaks(line)]
    assert not found, f"log lines with a payload or key the tests sent: {found[:5]}"
