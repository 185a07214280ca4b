"""The benchmark's parsers, arithmetic and verdict on real captured inputs (no service, no hey)."""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.bench.cli import TARGET_MISSED, add_arguments, exit_status
from tools.bench.connections import connections_per_worker
from tools.bench.load import LoadRun, parse_summary
from tools.bench.memory import growth_pct
from tools.bench.runner import CONNECTION_SAMPLES
from tools.bench.stacks import EVENT_LOOP_C, IDLE, classify
from tools.bench.targets import TOP_CONCURRENCY, evaluate
from tools.bench.uploads import Uploads, multipart_body

HEY_SUMMARY = """
Summary:
  Total:\t2.0278 secs
  Slowest:\t0.3569 secs
  Fastest:\t0.0113 secs
  Average:\t0.0292 secs
  Requests/sec:\t271.2334

Latency distribution:
  10% in 0.0138 secs
  50% in 0.0297 secs
  99% in 0.0989 secs

Status code distribution:
  [200]\t545 responses
  [429]\t5 responses

Error distribution:
  [3]\tPost "http://127.0.0.1:1/v1/predict": dial tcp 127.0.0.1:1: connect: connection refused
"""


def test_hey_summary_counts_only_2xx_and_every_error() -> None:
    result = parse_summary(HEY_SUMMARY)
    assert result.ok == 545 and result.non_2xx == 5 and result.connection_errors == 3
    assert result.errors == 8
    assert result.rps == pytest.approx(545 / 2.0278)
    assert result.p50_ms == pytest.approx(29.7) and result.p99_ms == pytest.approx(98.9)


def test_short_runs_take_the_slowest_request_as_p99() -> None:
    short = HEY_SUMMARY.replace("  99% in 0.0989 secs\n", "")
    assert parse_summary(short).p99_ms == pytest.approx(356.9)


def test_not_a_summary_is_refused() -> None:
    with pytest.raises(ValueError, match="not a hey summary"):
        parse_summary("hey: connection refused")


def test_growth_is_measured_over_the_second_half() -> None:
    samples = [(0.0, 100.0), (1.0, 200.0), (2.0, 200.0), (3.0, 204.0), (4.0, 210.0)]
    assert growth_pct(samples) == pytest.approx(5.0)  # 200 MB at half time -> 210 MB


def test_stacks_are_sorted_into_stages() -> None:
    loop = "Runner.run (asyncio/runners.py:118)"
    parse = "MultipartParser.write (python_multipart/multipart.py:1000)"
    assert classify([loop, "read_uploads (service/uploads.py:219)", parse]) == "multipart parsing"
    assert classify([loop]) == EVENT_LOOP_C
    assert (
        classify(["WorkerThread.run (anyio/x.py:1)", "Condition.wait (threading.py:327)"]) == IDLE
    )


def test_multipart_body_carries_every_field() -> None:
    body, content_type = multipart_body(Uploads("seven", b"PNG", b"WAV", "test"))
    boundary = content_type.partition("boundary=")[2]
    assert body.count(f"--{boundary}".encode()) == 4 and body.endswith(
        f"--{boundary}--\r\n".encode()
    )
    for name in (b'name="text"', b'name="image"; filename=', b'name="audio"; filename='):
        assert name in body


def _failing_summary() -> dict[str, Any]:
    result = parse_summary(HEY_SUMMARY)  # 8 errors: the zero-errors target fails
    runs = [
        LoadRun("service", TOP_CONCURRENCY, True, result),
        LoadRun("baseline", TOP_CONCURRENCY, False, result),
        LoadRun("service", 1, True, result),
    ]
    checks = evaluate(
        runs, ceiling_rps=300.0, inprocess_single_ms=3.0, rss_growth_pct=1.0, soak_errors=0
    )
    return {
        "targets": {c.name: c.to_dict() for c in checks},
        "targets_passed": all(c.passed for c in checks),
    }


def test_a_failed_target_makes_bench_exit_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    summary = _failing_summary()
    assert not summary["targets"]["errors"]["passed"]
    assert exit_status(summary, no_fail=False) == TARGET_MISSED == 1
    assert "errors" in capsys.readouterr().err
    assert exit_status(summary, no_fail=True) == 0
    passed = {"targets": {}, "targets_passed": True}
    assert exit_status(passed, no_fail=False) == 0


def test_no_fail_is_a_bench_flag() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--quick", "--no-fail"]).no_fail
    assert not parser.parse_args(["--quick"]).no_fail


# A server in its own process: it accepts on the port it prints, and either keeps every
# connection (keep-alive, like uvicorn) or closes each after a few milliseconds (one answer,
# like gunicorn's sync workers).
_SERVER = """
import socket, sys, time
keep = sys.argv[1] == "keep"
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
held = []
while True:
    connection, _ = listener.accept()
    if keep:
        held.append(connection)
    else:
        time.sleep(0.005)
        connection.close()
"""


@contextlib.contextmanager
def _server(mode: str) -> Iterator[tuple[int, int]]:
    command = [sys.executable, "-c", _SERVER, mode]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        try:
            yield process.pid, int(process.stdout.readline())
        finally:
            process.kill()


def test_keep_alive_connections_are_counted() -> None:
    with _server("keep") as (pid, port):
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            deadline = time.monotonic() + 10
            while connections_per_worker(pid, port) != [3] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert connections_per_worker(pid, port) == [3]
        finally:
            for client in clients:
                client.close()


def test_connections_of_one_request_each_are_seen() -> None:
    # The baseline's case: reported as 0/0 when the table was read before walking /proc.
    with _server("close") as (pid, port):
        stop = threading.Event()

        def connect_again_and_again() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    time.sleep(0.01)

        client = threading.Thread(target=connect_again_and_again)
        client.start()
        try:
            assert connections_per_worker(pid, port, samples=CONNECTION_SAMPLES) == [1]
        finally:
            stop.set()
            client.join()


def test_flags_shape_the_plan_and_the_service_settings() -> None:
    import argparse

    from tools.bench.cli import _plan, add_arguments
    from tools.bench.plan import QUICK, Options
    from tools.bench.runner import service_spec

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        "--quick --concurrency 32,128 --load-seconds 3 --soak-requests 99 --ceiling-batch-size 64"
        " --providers CUDAExecutionProvider,CPUExecutionProvider".split()
    )
    plan = _plan(args)
    assert plan.concurrencies == (32, 128) and plan.load_seconds == 3.0
    assert plan.soak_requests == 99 and plan.ceiling_batch_size == 64
    assert plan.warmup_requests == QUICK.warmup_requests  # untouched fields keep --quick's
    spec = service_spec(Options(plan=plan, providers=args.providers), batching=True, port=1)
    assert spec.env["MMSERVE_RUNTIME__PROVIDERS"] == "CUDAExecutionProvider,CPUExecutionProvider"
    with pytest.raises(SystemExit):
        parser.parse_args(["--concurrency", "0,32"])


def test_help_shows_the_full_plans_defaults() -> None:
    from tools.bench.plan import Plan

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = " ".join(parser.format_help().split())  # argparse wraps lines
    full = Plan()
    assert f"(default {','.join(map(str, full.concurrencies))})" in text
    assert f"seconds per load run (default {full.load_seconds:g})" in text
    assert f"requests in the soak (default {full.soak_requests})" in text


def test_the_bench_measures_the_version_the_service_resolves(tmp_path: Path) -> None:
    from tools.bench.model import latest_version

    names = ["1", "1.9", "1.10", "2", "10", ".hidden", "11-no-manifest"]
    for name in names:
        (tmp_path / "m" / name).mkdir(parents=True)
        if name != "11-no-manifest":
            (tmp_path / "m" / name / "manifest.json").write_text("{}")
    # The service's order (service.repository.version_key); hidden and unfinished folders skipped.
    assert latest_version(tmp_path, "m").name == "10"
    with pytest.raises(FileNotFoundError):
        latest_version(tmp_path, "absent")
