"""Session-wide: every log line the tests cause is checked for the secrets they sent."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.logcheck import Capture, leaks

# The tests' own HTTP clients log the URLs they request; what the product logs is the question.
CLIENT_LOGGERS = ("httpx", "httpcore", "urllib3", "geventhttpclient", "playwright")


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_the_logs() -> Iterator[Capture]:
    capture = Capture()
    capture.addFilter(lambda record: not record.name.startswith(CLIENT_LOGGERS))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)  # debug lines too: they are where payloads slip in
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)
    found = [line for line in capture.lines if leaks(line)]
    assert not found, f"log lines with a payload or key the tests sent: {found[:5]}"
