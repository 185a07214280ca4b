"""Issue 4's targets, checked against one benchmark's figures.

Each check states its value, the bound it is held to and the ratio behind it, so a failed
target says by how much it missed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tools.bench.load import LoadRun

CEILING_SHARE = 0.85
BASELINE_MULTIPLE = 2.0
C1_OVERHEAD_MS = 2.0
TAIL_MULTIPLE = 3.0
RSS_GROWTH_PCT = 5.0
TOP_CONCURRENCY = 32


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    value: float | None
    op: Literal[">=", "<=", "<", "=="]
    bound: float | None
    unit: str
    ratio: float | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("value", "bound", "ratio"):
            if isinstance(data[key], float):
                data[key] = round(data[key], 3)
        return data


def _find(runs: Sequence[LoadRun], system: str, concurrency: int, batching: bool) -> LoadRun | None:
    return next(
        (
            r
            for r in runs
            if r.system == system and r.concurrency == concurrency and r.batching == batching
        ),
        None,
    )


def _compare(value: float | None, op: str, bound: float | None) -> bool:
    if value is None or bound is None:
        return False
    if op == ">=":
        return value >= bound
    if op == "<=":
        return value <= bound
    if op == "<":
        return value < bound
    return value == bound


def _check(
    name: str, description: str, value: float | None, op: Literal[">=", "<=", "<", "=="],
    bound: float | None, unit: str, ratio: float | None,
) -> Check:  # fmt: skip
    return Check(name, description, value, op, bound, unit, ratio, _compare(value, op, bound))


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def evaluate(
    runs: Sequence[LoadRun],
    *,
    ceiling_rps: float,
    inprocess_single_ms: float,
    rss_growth_pct: float | None,
    soak_errors: int,
) -> list[Check]:
    top = _find(runs, "service", TOP_CONCURRENCY, True)
    base = _find(runs, "baseline", TOP_CONCURRENCY, False)
    single = _find(runs, "service", 1, True)
    top_rps = top.result.rps if top else None
    base_rps = base.result.rps if base else None
    top_p50 = top.result.p50_ms if top else None
    top_p99 = top.result.p99_ms if top else None
    c1_p50 = single.result.p50_ms if single else None
    errors = sum(r.result.errors for r in runs) + soak_errors
    return [
        _check(
            "ceiling", f"service c{TOP_CONCURRENCY} batching rps >= {CEILING_SHARE} x ceiling_rps",
            top_rps, ">=", CEILING_SHARE * ceiling_rps, "rps", _div(top_rps, ceiling_rps),
        ),
        _check(
            "baseline", f"service c{TOP_CONCURRENCY} batching rps >= {BASELINE_MULTIPLE:g} x "
            f"baseline c{TOP_CONCURRENCY} rps",
            top_rps, ">=", _mul(BASELINE_MULTIPLE, base_rps), "rps", _div(top_rps, base_rps),
        ),
        _check(
            "latency_c1", f"service c1 p50 <= inprocess_single_ms + {C1_OVERHEAD_MS:g} ms",
            c1_p50, "<=", inprocess_single_ms + C1_OVERHEAD_MS, "ms",
            _div(c1_p50, inprocess_single_ms),
        ),
        _check(
            "tail_c32", f"service c{TOP_CONCURRENCY} batching p99 <= {TAIL_MULTIPLE:g} x its p50",
            top_p99, "<=", _mul(TAIL_MULTIPLE, top_p50), "ms", _div(top_p99, top_p50),
        ),
        _check(
            "errors", "zero errors (non-2xx or connection) in every run and the soak",
            float(errors), "==", 0.0, "requests", None,
        ),
        _check(
            "memory", f"RSS growth over the soak's second half < {RSS_GROWTH_PCT:g} %",
            rss_growth_pct, "<", RSS_GROWTH_PCT, "%", None,
        ),
    ]  # fmt: skip


def _mul(factor: float, value: float | None) -> float | None:
    return None if value is None else factor * value
