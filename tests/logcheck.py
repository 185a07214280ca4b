"""No payload, text or key in any log line: the secrets tests send, checked against the logs.

A test registers what it sends that must never be logged (``secret("...")`` returns its
argument). ``tests/conftest.py`` captures every log record of the whole test session at DEBUG,
tracebacks included, and fails the session's last test if any registered secret appears.
Servers run in subprocesses are checked by their own tests, with :func:`leaks`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

SENT: set[str] = set()


def secret(value: str) -> str:
    SENT.add(value)
    return value


def leaks(text: str, secrets: Iterable[str] | None = None) -> list[str]:
    """The secrets that appear in ``text``, as sent or percent-encoded (as in a logged URL)."""
    return sorted(
        s
        for s in (SENT if secrets is None else secrets)
        if any(form in text for form in (s, quote(s), quote(s, safe=""), quote_plus(s)))
    )


class Capture(logging.Handler):
    """Keeps every record, formatted as a log file would show it (traceback included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted: keep its raw parts
            self.lines.append(f"{record.msg!r} {record.args!r}")
