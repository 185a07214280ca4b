"""Where a worker's time goes: py-spy's raw stacks sorted into the service's stages.

Two recordings per worker: with ``--idle`` (every thread, wall time) and with ``--gil`` (only
the thread holding the GIL). Each sample is attributed to the innermost frame that belongs to a
known stage (a feature function, ONNX Runtime, multipart parsing, FastAPI, ...); threads
blocked waiting for work count as idle. In the wall-time view a thread waiting for the GIL
shows the Python frame it waits in, so "busy" there means "not idle", not "running"; the GIL
view says who actually ran Python. The event loop's own C code (uvloop: epoll, socket I/O) is
invisible to py-spy without ``--native``, so it is one category, idle time included.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

IDLE = "idle: waiting for work"
EVENT_LOOP_C = "event loop in C (uvloop: epoll wait, socket I/O)"
# First match wins, innermost frame first; more specific stages come first.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("multipart parsing", ("python_multipart", "service/uploads.py", "starlette/formparsers")),
    ("features: image (Pillow)", ("features/image.py", "PIL/")),
    (
        "features: audio",
        ("features/audio.py", "features/spectral.py", "soundfile", "soxr", "scipy/fft"),
    ),
    ("features: text", ("features/text.py", "tokenizers")),
    ("features: other", ("runtime/extract.py",)),
    ("ONNX Runtime + collate", ("runtime/session.py", "runtime/rows.py", "onnxruntime")),
    ("metrics", ("prometheus_client", "service/metrics.py")),
    ("logging", ("logging/", "uvicorn/logging")),
    (
        "response: schemas, JSON",
        (
            "service/schemas.py", "pydantic", "json/", "service/inference.py",
            "fastapi/encoders", "starlette/responses.py",
        ),
    ),
    ("batcher", ("runtime/batching.py",)),
    ("request id (uuid4)", ("uuid.py",)),
    (
        "thread hand-off (anyio, futures)",
        ("anyio/", "concurrent/futures", "threading.py", "queue.py", "runtime/threads.py"),
    ),
    (
        "FastAPI/Starlette (routing, deps, middleware)",
        (
            "fastapi/", "starlette/", "service/middleware.py", "service/deps.py",
            "service/routes/", "service/exception_handlers.py",
        ),
    ),
    ("HTTP (uvicorn, httptools)", ("httptools", "uvicorn/protocols", "h11")),
)  # fmt: skip
_IDLE_LEAVES = (
    "Condition.wait (threading.py",
    "_worker (concurrent/futures/thread.py",
    "Event.wait (threading.py",
    "select (selectors.py",
    "Connection._recv (multiprocessing",
    "CpuRunner._work (service/runtime/threads.py",  # blocked on its job queue
)


def thread_group(thread: str) -> str:
    if "MainThread" in thread:
        return "event loop thread"
    if "batch-" in thread:
        return "batch threads (features + inference)"
    return "other threads"


def classify(frames: list[str]) -> str:
    if not frames:  # a thread sampled before it ran any Python
        return "other: no Python frames"
    leaf = frames[-1]
    if leaf.startswith(_IDLE_LEAVES):
        return IDLE
    for frame in reversed(frames):
        for stage, patterns in STAGES:
            if any(p in frame for p in patterns):
                return stage
    if leaf.startswith("Runner.run (asyncio/runners.py"):
        return EVENT_LOOP_C
    return f"other: {leaf}"


@dataclass
class Breakdown:
    """Samples per thread group and stage."""

    samples: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )

    def add_raw(self, lines: Iterable[str]) -> None:
        """py-spy ``--format raw`` lines: ``thread (tid): name;frame;frame... count``."""
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            self.samples[thread_group(frames[0])][classify(frames[1:])] += int(count)

    def total(self, group: str | None = None) -> int:
        groups = [group] if group else list(self.samples)
        return sum(sum(self.samples[g].values()) for g in groups)

    def stages(self, group: str, per: int) -> list[tuple[str, float]]:
        """(stage, samples / ``per``), largest first."""
        return [(stage, n / per) for stage, n in self.samples[group].most_common()]


GROUPS = ("event loop thread", "batch threads (features + inference)")


@dataclass
class WorkerProfile:
    """One worker's wall-time and GIL recordings over the same seconds."""

    wall: Breakdown
    gil: Breakdown

    def render(self, top: int = 8) -> str:
        # One event loop thread per worker: its wall samples are one thread's worth of time.
        one = self.wall.total("event loop thread") or 1
        lines = [
            f"GIL held {100 * self.gil.total() / one:.0f} % of the time "
            + "("
            + ", ".join(f"{g} {100 * self.gil.total(g) / one:.0f} %" for g in GROUPS)
            + ")",
            "threads not idle, on average (1.00 = one thread all the time), by stage:",
        ]
        for group in GROUPS:
            if group in self.wall.samples:
                lines.append(f"  {group}:")
                busy = [(s, n) for s, n in self.wall.stages(group, one) if s != IDLE]
                lines += [f"    {n:5.2f}  {s}" for s, n in busy[:top]]
        lines.append("GIL holder, share of the time, by stage:")
        held = sorted(
            ((n, f"{g}: {s}") for g in GROUPS for s, n in self.gil.stages(g, one)),
            reverse=True,
        )
        lines += [f"    {100 * n:4.0f} %  {label}" for n, label in held[:top]]
        return "\n".join(lines)


def load_raw(path: Path) -> Breakdown:
    result = Breakdown()
    result.add_raw(path.read_text().splitlines())
    return result
