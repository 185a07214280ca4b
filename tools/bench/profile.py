"""``python -m tools.bench.profile``: where the service's workers spend a loaded run.

Starts the service as the benchmark does, drives it with ``hey`` at one concurrency, records
every worker twice at once with ``py-spy record --threads`` (``--idle``: wall time; ``--gil``:
who holds the GIL) for a few seconds in the middle of the run, and prints
:mod:`tools.bench.stacks`' breakdown per worker. The raw stacks stay in ``--out`` for
flame graphs (``flamegraph.pl`` or speedscope read them). Needs ``py-spy`` (``pip install
py-spy``) and permission to ptrace the workers (root, or ``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from service.helptext import plain
from tools.bench.connections import connections_by_worker
from tools.bench.load import Body, hey_command, parse_summary, run_hey
from tools.bench.plan import DEFAULT_MODEL, DEFAULT_REPOSITORY, Options
from tools.bench.runner import PREDICT_PATH, log, service_spec
from tools.bench.servers import running
from tools.bench.stacks import WorkerProfile, load_raw
from tools.bench.uploads import make_uploads, multipart_body
from tools.ports import free_port

_LEAD_IN_S = 1.5  # hey's connections settle before sampling starts


def _record(pid: int, out: Path, seconds: float, rate: int, mode: str) -> subprocess.Popen[bytes]:
    command = [
        "py-spy", "record", "--pid", str(pid), "--duration", f"{seconds:g}", "--rate", str(rate),
        mode, "--threads", "--nonblocking", "--format", "raw", "--output", str(out),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _path(out_dir: Path, pid: int, view: str) -> Path:
    return out_dir / f"worker-{pid}.{view}.txt"


def profile(
    options: Options, out_dir: Path, *, seconds: float, concurrency: int, rate: int, batching: bool
) -> str:
    body = Body.write(out_dir, *multipart_body(make_uploads()))
    port = free_port()
    spec = service_spec(options, batching=batching, port=port)
    with running(spec, port, out_dir) as server:
        url = server.url(PREDICT_PATH)
        run_hey(hey_command(url, body, concurrency, requests=500), 300)  # warm-up
        load = subprocess.Popen(
            hey_command(url, body, concurrency, seconds=seconds + 2 * _LEAD_IN_S),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(_LEAD_IN_S)
        workers = connections_by_worker(server.process.pid, port)
        recorders = [
            _record(pid, _path(out_dir, pid, view), seconds, rate, f"--{view}")
            for pid in workers
            for view in ("idle", "gil")
        ]
        for recorder in recorders:
            recorder.wait(seconds + 60)
        out, _ = load.communicate(timeout=seconds + 120)
    result = parse_summary(out)
    lines = [
        f"c{concurrency}: {result.rps:.1f} rps, p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, "
        f"{result.errors} errors"
    ]
    for pid, connections in sorted(workers.items(), key=lambda item: -item[1]):
        wall, gil = _path(out_dir, pid, "idle"), _path(out_dir, pid, "gil")
        if wall.exists() and gil.exists():
            lines.append(f"\n== worker {pid}: {connections} of the {concurrency} connections")
            lines.append(WorkerProfile(load_raw(wall), load_raw(gil)).render())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.profile", description=plain(__doc__)
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="sampling time")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--no-batching", action="store_true")
    parser.add_argument("--out", type=Path, help="keep the raw stacks here (default: temporary)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    options = Options(repository=args.model_dir, model=args.model)
    with tempfile.TemporaryDirectory(prefix="mmserve-profile-") as tmp:
        out_dir = args.out or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        log(f"profiling the service at c{args.concurrency} for {args.seconds:g} s")
        report = profile(
            options, out_dir, seconds=args.seconds, concurrency=args.concurrency,
            rate=args.rate, batching=not args.no_batching,
        )  # fmt: skip
        print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
