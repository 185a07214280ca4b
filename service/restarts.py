"""Worker restarts, recorded by the supervisor and reported by every worker.

The supervisor (``service.workers``) restarts a worker that dies; a crash loop (a request that
kills a worker, memory exhausted, a broken library) must show, not hide behind restarts. The
supervisor writes each restart to a small JSON file whose path it hands to its workers in
``MMSERVE_RESTARTS_FILE``; ``GET /readyz`` reports the restarts of the last minute and
``/metrics`` exports ``mmserve_worker_restarts_total``. A single process (``--workers 1``)
has no supervisor and no file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

ENV = "MMSERVE_RESTARTS_FILE"
RECENT_S = 60.0  # "restarts in the last minute"


@dataclass
class RestartLog:
    """The supervisor's record: total restarts and the wall-clock times of recent ones."""

    path: Path
    total: int = 0
    recent: list[float] = field(default_factory=list)

    def record(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.total += 1
        self.recent = [t for t in self.recent if now - t < RECENT_S] + [now]
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"total": self.total, "recent": self.recent}))
        os.replace(temporary, self.path)  # readers see the old file or the new, never half

    def in_last_minute(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        return sum(1 for t in self.recent if now - t < RECENT_S)


def read() -> RestartLog | None:
    """The supervisor's record as a worker sees it; None without a supervisor."""
    if not (path := os.environ.get(ENV)):
        return None
    try:
        data = json.loads(Path(path).read_text())
        return RestartLog(Path(path), int(data["total"]), [float(t) for t in data["recent"]])
    except FileNotFoundError:
        return RestartLog(Path(path))  # no restart yet
    except (OSError, ValueError, KeyError, TypeError):
        return None  # being replaced or damaged: report nothing rather than fail a probe


class RestartCollector(Collector):
    """``mmserve_worker_restarts_total`` for ``/metrics``, read from the supervisor's file."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        if (restarts := read()) is not None:
            yield CounterMetricFamily(
                "mmserve_worker_restarts",
                "Worker processes restarted by the supervisor after dying.",
                value=restarts.total,
            )
