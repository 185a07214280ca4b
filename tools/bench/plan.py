"""What one benchmark run does: the :class:`Plan` (durations, counts) and its :class:`Options`.

No numpy or ONNX Runtime here, so that :mod:`tools.bench.cli` shows these defaults in
``--help`` without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from service.settings import REPO_ROOT

DEFAULT_REPOSITORY = REPO_ROOT / "onnx_models"  # the bundled models, as `serve` defaults to
DEFAULT_MODEL = "digits-xattn"


@dataclass(frozen=True)
class Plan:
    load_seconds: float = 8.0
    warmup_requests: int = 500  # at the top concurrency, before each server's runs
    concurrencies: tuple[int, ...] = (1, 8, 32)
    ceiling_seconds: float = 5.0
    ceiling_batch_size: int = 8
    single_requests: int = 200
    soak_requests: int = 10_000
    soak_concurrency: int = 32
    rss_sample_s: float = 0.25


QUICK = Plan(
    load_seconds=1.5,
    warmup_requests=128,
    ceiling_seconds=1.0,
    single_requests=30,
    soak_requests=600,
)


@dataclass
class Options:
    plan: Plan = field(default_factory=Plan)
    quick: bool = False
    repository: Path = DEFAULT_REPOSITORY
    model: str = DEFAULT_MODEL
    workers: int | None = None  # None: the service's default
    baseline: bool = True
    providers: list[str] | None = None  # None: the service's default (auto), ceiling too
