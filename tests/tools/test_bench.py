"""The benchmark runs end to end (``--quick``) and reports every figure issue 4 asks for.

Speed targets are the benchmark's business, not a unit test's: here only the structure of the
JSON and that no request failed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_FIELDS = {"system", "concurrency", "batching", "rps", "p50_ms", "p99_ms", "errors"}
TARGETS = {"ceiling", "baseline", "latency_c1", "tail_c32", "errors", "memory"}
RUNS = {
    (system, concurrency, batching)
    for system, batching in (("service", True), ("service", False), ("baseline", False))
    for concurrency in (1, 8, 32)
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("hey") is None,
        reason="hey is not installed (Debian package 'hey'): the benchmark's load generator",
    ),
]


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "service", "bench", "--quick", "--no-fail", "--json", "--out",
         str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=420, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    printed: dict[str, Any] = json.loads(done.stdout)
    assert json.loads(out.read_text()) == printed
    return printed


def test_headline_figures_are_positive(summary: dict[str, Any]) -> None:
    for key in ("ceiling_rps", "inprocess_single_ms", "ready_s", "rss_mb"):
        assert isinstance(summary[key], float) and summary[key] > 0, key
    assert isinstance(summary["rss_growth_pct"], float)
    assert summary["model"]["name"] == "digits-xattn"
    assert summary["machine"]["cores"] >= 1 and summary["machine"]["cpu_model"]
    assert isinstance(summary["machine_busy"], bool)


def test_the_ceiling_brackets_the_server_runs(summary: dict[str, Any]) -> None:
    ceiling = summary["ceiling"]
    before, after = ceiling["before_rps"], ceiling["after_rps"]
    assert before > 0 and after > 0
    assert summary["ceiling_rps"] == pytest.approx((before + after) / 2, abs=0.1)
    assert [r["layout"] for r in ceiling["runs"]].count(ceiling["layout"]) == 2


def test_every_run_is_reported_without_errors(summary: dict[str, Any]) -> None:
    runs = summary["runs"]
    assert {(r["system"], r["concurrency"], r["batching"]) for r in runs} == RUNS
    for run in runs:
        assert RUN_FIELDS <= run.keys()
        assert run["errors"] == 0, run
        assert run["rps"] > 0 and run["p50_ms"] > 0 and run["p99_ms"] >= run["p50_ms"], run
    soak = summary["servers"][0]["soak"]
    assert soak["errors"] == 0 and len(soak["rss_samples_mb"]) >= 2


def test_every_target_is_evaluated(summary: dict[str, Any]) -> None:
    assert set(summary["targets"]) == TARGETS
    for check in summary["targets"].values():
        assert isinstance(check["passed"], bool)
        assert {"value", "bound", "op", "ratio", "description"} <= check.keys()
    assert summary["targets_passed"] == all(c["passed"] for c in summary["targets"].values())
