"""``scripts/gpu/run_on_device.sh --cpu-only``: the device run rehearsed on the CPU.

A GPU machine is lent rarely and briefly, so the script must not meet a bug there first: this
runs its steps with the CPU standing in for CUDA (parity, the service, the CLIP export and
timing, the report) and checks what it writes. The bench and the nested pytest are left out
(the bench has its own tests; pytest inside pytest proves nothing more).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gpu" / "run_on_device.sh"


@pytest.mark.slow
def test_the_device_script_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSERVE_")}
    env |= {
        "OUT": str(tmp_path / "out"),
        "PYTHON": sys.executable,  # the interpreter running the tests (CI: .venv, not on PATH)
        "WHL": str(tmp_path / "no-wheels"),  # nothing to install: this environment has it all
        "STAGE": str(tmp_path / "no-stage"),
        "SITE": str(tmp_path / "site"),
        "STEPS": "install env parity service big",
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-only"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "big-model.json", "checks.json", "parity.json", "report.md", "run.log", "service.json",
    ]  # fmt: skip
    checks = json.loads((out / "checks.json").read_text())
    for step in ("install", "env", "parity", "service", "big"):
        assert checks[f"step_{step}"].startswith("exit 0"), checks
    assert checks["step_bench_accel"] == "skipped"
    assert checks["env"]["available_providers"]
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and len(parity["models"]) >= 1
    assert all(len(m["cases"]) == 14 for m in parity["models"])  # 7 subsets x batch 1, 16
    service = json.loads((out / "service.json").read_text())
    assert service["ok"] and service["predict_status"] == 200
    big = json.loads((out / "big-model.json").read_text())
    assert [row["batch"] for row in big["runs"][0]["rows"]] == [1, 2, 4]
    report = (out / "report.md").read_text()
    assert "| digits-xattn/1 | CPUExecutionProvider | 0.00e+00 | yes |" in report
    assert "CLIP (tiny" in report
