"""The benchmark's sequence: ceiling, then each server under load, then the targets.

Durations come from a :class:`Plan`; ``--quick`` is a smoke test of the whole sequence, not a
measurement. Progress goes to stderr so that ``--json`` leaves stdout to the JSON.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from service.settings import REPO_ROOT
from tools.bench import ceiling, memory
from tools.bench.connections import connections_per_worker
from tools.bench.load import (
    Body,
    HeyResult,
    LoadRun,
    hey_command,
    hey_path,
    parse_summary,
    run_hey,
)
from tools.bench.machine import load_average, machine_facts, usable_cores
from tools.bench.model import latest_version, load_model
from tools.bench.plan import Options, Plan
from tools.bench.servers import RunningServer, ServerSpec, running
from tools.bench.targets import evaluate
from tools.bench.uploads import Uploads, make_uploads, multipart_body
from tools.ports import free_port

PREDICT_PATH = "/v1/predict"
BATCH_SIZE_ENV = "MMSERVE_BATCHING__MAX_BATCH_SIZE"
# Connections are sampled this many times, 20 ms apart, keeping the most each worker held:
# the baseline closes every connection after one answer (see tools.bench.connections).
CONNECTION_SAMPLES = 10
PROVIDERS_ENV = "MMSERVE_RUNTIME__PROVIDERS"
# Thread pools every process under test starts with (see docs/benchmark.md).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


# Other work on the machine above this 1-minute load per core makes figures incomparable.
BUSY_LOAD_PER_CORE = 0.5


def machine_busy(load_at_start: list[float], cores: int) -> bool:
    return load_at_start[0] > BUSY_LOAD_PER_CORE * cores


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT)
    env.update(THREAD_ENV)
    env.update(extra)
    return env


def service_spec(options: Options, *, batching: bool, port: int) -> ServerSpec:
    command = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if options.workers is not None:
        command += ["--workers", str(options.workers)]
    extra = {
        "MMSERVE_MODEL_DIR": str(options.repository),
        "MMSERVE_DEFAULT_MODEL": options.model,
    }
    if options.providers is not None:
        extra[PROVIDERS_ENV] = ",".join(options.providers)
    if not batching:
        extra[BATCH_SIZE_ENV] = "1"
    env = _clean_env(extra)
    if batching:
        env.pop(BATCH_SIZE_ENV, None)  # a value left in the shell would turn batching off
    name = "service-batching" if batching else "service-no-batching"
    return ServerSpec(name, command, env)


def service_env() -> dict[str, str]:
    """The ``MMSERVE_*`` settings from the caller's environment that the service will see."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("MMSERVE_")}


def _gunicorn_has(flag: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--help"], capture_output=True, text=True, check=False
    )
    return flag in done.stdout


def baseline_spec(model_dir: Path, *, port: int) -> ServerSpec:
    command = [
        sys.executable, "-m", "gunicorn", "--workers", str(usable_cores()), "--worker-class",
        "sync", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
    ]  # fmt: skip
    # gunicorn >= 24 opens a control socket in ~/.gunicorn shared by every instance.
    if _gunicorn_has("--no-control-socket"):
        command.append("--no-control-socket")
    command.append("tools.bench.baseline_app:create_app()")
    return ServerSpec("baseline", command, _clean_env({"MMSERVE_BENCH_MODEL": str(model_dir)}))


@dataclass
class ServerFigures:
    name: str
    ready_s: float
    rss_mb: float
    runs: list[LoadRun]
    soak: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "ready_s": round(self.ready_s, 3),
            "rss_mb": round(self.rss_mb, 1),
        }
        if self.soak is not None:
            data["soak"] = self.soak
        return data


def _hey_timeout(seconds: float) -> float:
    return seconds + 60.0


def _load(
    server: RunningServer, body: Body, concurrency: int, seconds: float
) -> tuple[HeyResult, list[int]]:
    """One hey run; also which worker held the connections, sampled half way through."""
    command = hey_command(server.url(PREDICT_PATH), body, concurrency, seconds=seconds)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as hey:
        time.sleep(seconds / 2)
        split = connections_per_worker(server.process.pid, server.port, samples=CONNECTION_SAMPLES)
        out, err = hey.communicate(timeout=_hey_timeout(seconds))
    if hey.returncode != 0:
        raise RuntimeError(f"hey failed ({hey.returncode}): {err.strip()[-2000:]}")
    return parse_summary(out), split


def _soak(server: RunningServer, body: Body, plan: Plan) -> dict[str, Any]:
    """``soak_requests`` at ``soak_concurrency`` while sampling the server's RSS."""
    command = hey_command(
        server.url(PREDICT_PATH), body, plan.soak_concurrency, requests=plan.soak_requests
    )
    samples: list[tuple[float, float]] = []
    start = time.perf_counter()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as hey:
        while hey.poll() is None:
            samples.append((time.perf_counter() - start, server.rss_mb()))
            time.sleep(plan.rss_sample_s)
        out, err = hey.communicate()
    if hey.returncode != 0:
        raise RuntimeError(f"hey failed ({hey.returncode}): {err.strip()[-2000:]}")
    result = parse_summary(out)
    samples.append((time.perf_counter() - start, server.rss_mb()))
    return {
        "requests": plan.soak_requests,
        "concurrency": plan.soak_concurrency,
        "rps": round(result.rps, 1),
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "rss_start_mb": round(samples[0][1], 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "rss_growth_pct": round(memory.growth_pct(samples), 2),
        "rss_samples_mb": [[round(t, 2), round(mb, 1)] for t, mb in samples],
    }


def measure_server(
    spec: ServerSpec,
    port: int,
    body: Body,
    options: Options,
    *,
    system: str,
    batching: bool,
    log_dir: Path,
    soak: bool = False,
) -> ServerFigures:
    plan = options.plan
    log(f"starting {spec.name}: {' '.join(spec.command[1:])}")
    with running(spec, port, log_dir) as server:
        log(f"{spec.name} ready in {server.ready_s:.2f} s; warming up")
        # Every worker's first requests pay one-off costs (lazy imports, first-use buffers);
        # a fixed number of requests, not a duration, so a slow start cannot cut it short.
        command = hey_command(
            server.url(PREDICT_PATH), body, max(plan.concurrencies), requests=plan.warmup_requests
        )
        run_hey(command, _hey_timeout(plan.warmup_requests / 10.0))
        runs = []
        for concurrency in plan.concurrencies:
            result, split = _load(server, body, concurrency, plan.load_seconds)
            runs.append(LoadRun(system, concurrency, batching, result, split))
            log(
                f"{spec.name} c{concurrency}: {result.rps:.1f} rps, p50 {result.p50_ms} ms, "
                f"p99 {result.p99_ms} ms, {result.errors} errors, connections per worker {split}"
            )
        figures = ServerFigures(spec.name, server.ready_s, server.rss_mb(), runs)
        if soak:
            log(f"soak: {plan.soak_requests} requests at c{plan.soak_concurrency}")
            figures.soak = _soak(server, body, plan)
            log(f"soak: RSS growth over the second half {figures.soak['rss_growth_pct']} %")
    return figures


def measure_ceiling(
    model_dir: Path, uploads: Uploads, plan: Plan, providers: list[str] | None = None
) -> dict[str, Any]:
    cores = usable_cores()
    with threadpool_limits(1):
        model = load_model(model_dir, providers=providers)
        single_ms = ceiling.single_request_ms(model, uploads, plan.single_requests)
        log(f"in-process single request: {single_ms:.2f} ms (median of {plan.single_requests})")
        threads = ceiling.run_threads(
            model, uploads, cores, plan.ceiling_batch_size, plan.ceiling_seconds
        )
    log(f"ceiling, {cores} threads: {threads.rps:.1f} rps")
    processes = ceiling.run_processes(
        model_dir, uploads, cores, plan.ceiling_batch_size, plan.ceiling_seconds, providers
    )
    log(f"ceiling, {cores} processes: {processes.rps:.1f} rps")
    best = max(threads, processes, key=lambda run: run.rps)
    return {
        "ceiling_providers": model.session.providers_in_use,
        "ceiling_rps": round(best.rps, 1),
        "inprocess_single_ms": round(single_ms, 3),
        "ceiling": {"layout": best.layout, "runs": [threads.to_dict(), processes.to_dict()]},
    }


def remeasure_ceiling(
    model_dir: Path,
    uploads: Uploads,
    plan: Plan,
    summary: dict[str, Any],
    providers: list[str] | None = None,
) -> None:
    """Measure the best layout again after the servers; ``ceiling_rps`` becomes the mean.

    This machine's speed drifts by 10-30 % over minutes (other tenants), so one ceiling
    window before the servers could be taken in a fast or a slow phase; two windows that
    bracket every server run make the ratio to it less of a draw.
    """
    cores = usable_cores()
    layout = summary["ceiling"]["layout"]
    if layout == "processes":
        again = ceiling.run_processes(
            model_dir, uploads, cores, plan.ceiling_batch_size, plan.ceiling_seconds, providers
        )
    else:
        with threadpool_limits(1):
            again = ceiling.run_threads(
                load_model(model_dir, providers=providers), uploads, cores,
                plan.ceiling_batch_size,
                plan.ceiling_seconds,
            )  # fmt: skip
    log(f"ceiling again, {cores} {layout}: {again.rps:.1f} rps")
    before = summary["ceiling_rps"]
    summary["ceiling"]["before_rps"] = before
    summary["ceiling"]["after_rps"] = round(again.rps, 1)
    summary["ceiling"]["runs"].append(again.to_dict())
    summary["ceiling_rps"] = round((before + again.rps) / 2.0, 1)


def run(options: Options) -> dict[str, Any]:
    started = time.perf_counter()
    plan = options.plan
    hey_path()  # fail early, before minutes of work, when the load generator is missing
    model_dir = latest_version(options.repository, options.model)
    summary: dict[str, Any] = {
        "schema": 1,
        "quick": options.quick,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start": load_average(),
        "model": {"name": options.model, "version": model_dir.name, "path": str(model_dir)},
        "plan": asdict(plan),
        "thread_env": THREAD_ENV,
        "service_env": service_env(),
    }
    uploads = make_uploads()
    summary["uploads"] = {
        "text": uploads.text,
        "image_png_bytes": len(uploads.image_png),
        "audio_wav_bytes": len(uploads.audio_wav),
        "audio_source": uploads.audio_source,
    }
    log(f"model {model_dir}; audio: {uploads.audio_source}")
    summary["providers"] = options.providers or ["auto"]
    summary.update(measure_ceiling(model_dir, uploads, plan, options.providers))
    with tempfile.TemporaryDirectory(prefix="mmserve-bench-") as tmp:
        tmp_dir = Path(tmp)
        body = Body.write(tmp_dir, *multipart_body(uploads))
        servers = _measure_servers(options, model_dir, body, tmp_dir)
    remeasure_ceiling(model_dir, uploads, plan, summary, options.providers)
    runs = [r for figures in servers for r in figures.runs]
    service = servers[0]
    assert service.soak is not None
    summary.update(
        ready_s=round(service.ready_s, 3),
        rss_mb=round(service.soak["rss_end_mb"], 1),
        rss_growth_pct=service.soak["rss_growth_pct"],
        runs=[r.to_dict() for r in runs],
        servers=[s.to_dict() for s in servers],
    )
    checks = evaluate(
        runs,
        ceiling_rps=summary["ceiling_rps"],
        inprocess_single_ms=summary["inprocess_single_ms"],
        rss_growth_pct=service.soak["rss_growth_pct"],
        soak_errors=service.soak["errors"],
    )
    summary["targets"] = {c.name: c.to_dict() for c in checks}
    summary["targets_passed"] = all(c.passed for c in checks)
    summary["load_average_end"] = load_average()
    summary["machine_busy"] = machine_busy(summary["load_average_start"], usable_cores())
    summary["duration_s"] = round(time.perf_counter() - started, 1)
    summary["machine"] = machine_facts(REPO_ROOT)
    return summary


def _measure_servers(
    options: Options, model_dir: Path, body: Body, log_dir: Path
) -> list[ServerFigures]:
    port = free_port()
    figures = [
        measure_server(
            service_spec(options, batching=True, port=port), port, body, options,
            system="service", batching=True, log_dir=log_dir, soak=True,
        ),
    ]  # fmt: skip
    port = free_port()
    figures.append(
        measure_server(
            service_spec(options, batching=False, port=port), port, body, options,
            system="service", batching=False, log_dir=log_dir,
        )
    )  # fmt: skip
    if options.baseline:
        port = free_port()
        figures.append(
            measure_server(
                baseline_spec(model_dir, port=port), port, body, options,
                system="baseline", batching=False, log_dir=log_dir,
            )
        )  # fmt: skip
    return figures
