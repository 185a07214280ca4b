"""The device run's results as one markdown page: ``python -m scripts.gpu.report OUT_DIR``.

Reads what ``run_on_device.sh`` wrote (``checks.json``, ``parity.json``, ``service.json``,
``bench-*.json``, ``big-model.json``); a missing file becomes a line saying the step did not
produce it, so a partial run still reports what it has.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from scripts.gpu.big_model import markdown as big_model_table


def _load(out: Path, name: str) -> Any:
    path = out / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _parity(parity: dict[str, Any] | None, title: str) -> list[str]:
    if parity is None:
        return [f"**{title}**: not produced (see run.log)", ""]
    lines = [
        f"**{title}** (providers {','.join(parity['providers'])}, TF32 "
        f"{'on' if parity['use_tf32'] else 'off'}, tolerance {parity['tolerance']:g}; "
        f"every modality subset at batch 1 and 16)",
        "",
        "| model | providers in use | max abs diff | passed |",
        "|---|---|---:|---|",
    ]
    for model in parity["models"]:
        lines.append(
            f"| {model['model']} | {','.join(model['providers_in_use'])} | "
            f"{model['max_abs_diff']:.2e} | {'yes' if model['passed'] else 'NO'} |"
        )
    return [*lines, ""]


def _service(service: dict[str, Any] | None) -> list[str]:
    if service is None:
        return ["**Service**: not produced (see run.log)", ""]
    execution = service["execution"]
    return [
        f"**Service** (`serve --workers {service['workers']} --providers "
        f"{service['providers']}`): ready in {service['ready_s']} s, providers in use "
        f"{execution['providers_in_use']}, fallback_reason {execution['fallback_reason']!r}, "
        f"max_batch_size {service['batching']['max_batch_size']}, warm-up "
        f"{service['warmup_s']:.2f} s; `/v1/predict` {service['predict_status']} in "
        f"{service['predict_ms_last_of_20']} ms (20th request); ok = {service['ok']}",
        "",
    ]


def _bench(benches: dict[str, dict[str, Any] | None]) -> list[str]:
    lines = [
        "| providers | ceiling rps | single ms | c | rps | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, bench in benches.items():
        if bench is None:
            lines.append(f"| {name}: not produced (see run.log) |||||||")
            continue
        for run in bench["runs"]:
            if run["system"] != "service" or not run["batching"]:
                continue
            lines.append(
                f"| {','.join(bench['providers'])} | {bench['ceiling_rps']} | "
                f"{bench['inprocess_single_ms']} | {run['concurrency']} | {run['rps']} | "
                f"{run['p50_ms']} | {run['p99_ms']} | {run['errors']} |"
            )
    return [*lines, ""]


def report(out: Path) -> str:
    checks = _load(out, "checks.json") or {}
    lines = ["# mmserve on the GPU machine", "", "```", json.dumps(checks, indent=2), "```", ""]
    parity = _load(out, "parity.json")
    lines += _parity(parity, "Parity, CUDA vs CPU")
    if parity is not None and "tf32_off" in parity:
        lines += _parity(parity["tf32_off"], "Parity with TF32 off")
    lines += _service(_load(out, "service.json"))
    lines += ["**Benchmark** (`python -m service bench`, service with batching)", ""]
    lines += _bench({"CPU": _load(out, "bench-cpu.json"), "CUDA": _load(out, "bench-cuda.json")})
    big = _load(out, "big-model.json")
    lines += ["**Big model**", ""]
    lines += [big_model_table(big) if big else "not produced (see run.log)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:])[0])
    (out / "report.md").write_text(report(out), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
