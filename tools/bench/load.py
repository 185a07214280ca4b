"""Load generation with ``hey`` (Go, from Debian): no Python client competing for the GIL.

Every request posts the same multipart body (built once, written to a file, sent with
``-D``). Figures come from hey's summary: requests per second counts 2xx answers only;
latency percentiles are hey's (0.1 ms resolution); errors are non-2xx answers plus
connection-level errors (timeouts, resets, refused). hey prints no 99th percentile for runs
of fewer than 100 requests; the nearest-rank p99 of those is the slowest request, used then.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class LoadGeneratorMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Body:
    """One request body in a file, as hey sends it (``-D path -T content_type``)."""

    path: Path
    content_type: str

    @classmethod
    def write(cls, folder: Path, payload: bytes, content_type: str) -> Body:
        path = folder / "body.multipart"
        path.write_bytes(payload)
        return cls(path, content_type)


@dataclass(frozen=True)
class HeyResult:
    seconds: float
    ok: int
    non_2xx: int
    connection_errors: int
    p50_ms: float | None
    p99_ms: float | None
    status_codes: dict[int, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.connection_errors

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class LoadRun:
    """One row of the benchmark's ``runs``."""

    system: str
    concurrency: int
    batching: bool
    result: HeyResult
    connections_per_worker: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "system": self.system,
            "concurrency": self.concurrency,
            "batching": self.batching,
            "rps": round(r.rps, 1),
            "p50_ms": _round(r.p50_ms),
            "p99_ms": _round(r.p99_ms),
            "errors": r.errors,
            "requests": r.ok + r.non_2xx,
            "seconds": round(r.seconds, 2),
            "status_codes": {str(k): v for k, v in sorted(r.status_codes.items())},
            "connections_per_worker": self.connections_per_worker,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def hey_path() -> str:
    path = shutil.which("hey")
    if path is None:
        raise LoadGeneratorMissing("hey is not installed (Debian: apt-get install hey)")
    return path


def hey_command(
    url: str,
    body: Body,
    concurrency: int,
    *,
    seconds: float | None = None,
    requests: int | None = None,
    timeout_s: int = 30,
) -> list[str]:
    """``-z`` runs for a duration; ``-n`` sends a fixed number of requests."""
    amount = ["-z", f"{seconds:g}s"] if seconds is not None else ["-n", str(requests)]
    return [
        hey_path(), *amount, "-c", str(concurrency), "-t", str(timeout_s), "-m", "POST",
        "-D", str(body.path), "-T", body.content_type, url,
    ]  # fmt: skip


def run_hey(command: list[str], timeout_s: float) -> HeyResult:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"hey failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return parse_summary(done.stdout)


_TOTAL = re.compile(r"Total:\s+([\d.]+) secs")
_SLOWEST = re.compile(r"Slowest:\s+([\d.]+) secs")
_PERCENTILE = re.compile(r"(\d+)% in ([\d.]+) secs")
_STATUS = re.compile(r"\[(\d{3})\]\s+(\d+) responses")
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.*)$", re.MULTILINE)


def parse_summary(text: str) -> HeyResult:
    """hey's default summary -> :class:`HeyResult`."""
    total = _TOTAL.search(text)
    if total is None:
        raise ValueError(f"not a hey summary:\n{text[:2000]}")
    percentiles = {int(p): round(float(s) * 1000.0, 2) for p, s in _PERCENTILE.findall(text)}
    slowest = _SLOWEST.search(text)
    if 99 not in percentiles and slowest is not None and float(slowest.group(1)) > 0:
        percentiles[99] = round(float(slowest.group(1)) * 1000.0, 2)
    codes = {int(code): int(n) for code, n in _STATUS.findall(text)}
    _, _, error_part = text.partition("Error distribution:")
    connection_errors = sum(int(n) for n, _ in _ERROR.findall(error_part))
    ok = sum(n for code, n in codes.items() if 200 <= code < 300)
    return HeyResult(
        seconds=float(total.group(1)),
        ok=ok,
        non_2xx=sum(codes.values()) - ok,
        connection_errors=connection_errors,
        p50_ms=percentiles.get(50),
        p99_ms=percentiles.get(99),
        status_codes=codes,
    )
