"""The repeat limiter on real logging handlers: per template, per window, with a summary."""

from __future__ import annotations

import io
import logging
import time

from service.log_limits import RepeatLimiter


def test_repeats_pass_up_to_the_limit_then_a_summary_after_the_window() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatLimiter(limit=3, window_s=0.2))
    logger = logging.getLogger("tests.log_limits")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(100):
            logger.warning("bad request from %s", f"client-{i}")  # one template, many texts
        logger.warning("another message")
        time.sleep(0.25)
        logger.warning("bad request from %s", "client-x")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[:3] == [
        "bad request from client-0",
        "bad request from client-1",
        "bad request from client-2 [similar messages are suppressed for 0.2 s]",
    ]
    assert lines[3:] == [
        "another message",
        "bad request from client-x [97 similar messages were suppressed]",
    ]
