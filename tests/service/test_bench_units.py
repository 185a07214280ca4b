"""The benchmark's parsers and arithmetic, on real captured inputs (no servers, no hey)."""

from __future__ import annotations

import pytest

from service.bench.load import parse_summary
from service.bench.memory import growth_pct
from service.bench.stacks import EVENT_LOOP_C, IDLE, classify
from service.bench.uploads import Uploads, multipart_body

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


def test_flags_shape_the_plan_and_the_service_settings() -> None:
    import argparse

    from service.bench.cli import _plan, add_arguments
    from service.bench.runner import QUICK, Options, service_spec

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
