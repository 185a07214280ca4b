"""Dynamic batching through real HTTP: correctness under concurrency, back-pressure, metrics,
and the batcher's own guarantees (issue 4)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.errors import InvalidInput, ModelNotReady
from service.manifest import load_manifest
from service.runtime.batching import Batcher
from service.runtime.extract import ExtractedRow
from service.runtime.rows import FeatureRow
from service.runtime.session import ModelSession
from service.runtime.warmup import synthetic_row
from tests.service import media
from tests.service.conftest import serve_subprocess

MODALITIES = ("image", "audio", "text")
WORDS = ["zero", "one", "two", "3", "four", "the number five", "six", "sieben", "eight", "九"]


def _requests(count: int) -> list[dict[str, object]]:
    """``count`` different uploads cycling through all 7 modality subsets."""
    subsets = [combo for n in (1, 2, 3) for combo in itertools.combinations(MODALITIES, n)]
    rng = np.random.default_rng(3)
    out: list[dict[str, object]] = []
    for i in range(count):
        digit = str(i % 10)
        subset = subsets[i % len(subsets)]
        files: dict[str, tuple[str, bytes, str]] = {}
        data: dict[str, str] = {}
        if "image" in subset:
            image = media.png(media.digit_image(digit, size=40 + i))
            files["image"] = ("d.png", image, "image/png")
        if "audio" in subset:
            clip = media.tone(seconds=0.5 + 0.02 * i) * float(rng.uniform(0.2, 0.9))
            files["audio"] = ("a.wav", media.encode_audio(clip, 16000, "WAV"), "audio/wav")
        if "text" in subset:
            data["text"] = WORDS[i % 10] + " " * (i % 3) + "!" * (i % 4)  # varied lengths
        out.append({"files": files, "data": data})
    return out


def _digit_probs(answer: dict[str, object]) -> list[float]:
    tasks = answer["tasks"]
    assert isinstance(tasks, dict)
    return [p["probability"] for p in sorted(tasks["digit"]["top_k"], key=lambda p: p["label"])]


@pytest.mark.slow
def test_concurrent_requests_get_exactly_their_single_answers(server: str) -> None:
    requests = _requests(64)
    url = f"{server}/v1/predict?top_k=10"
    with httpx.Client(timeout=30) as client:
        singles = []
        for r in requests:
            response = client.post(url, files=r["files"], data=r["data"])  # type: ignore[arg-type]
            assert response.status_code == 200, response.text
            singles.append(response.json())

    async def all_at_once() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(
                *[
                    client.post(url, files=r["files"], data=r["data"])  # type: ignore[arg-type]
                    for r in requests
                ]
            )

    concurrent = asyncio.run(all_at_once())
    assert [r.status_code for r in concurrent] == [200] * 64
    answers = [r.json() for r in concurrent]
    assert max(a["batch_size"] for a in answers) > 1, "no batching happened under concurrency"
    for single, batched in zip(singles, answers, strict=True):
        assert batched["modalities"] == single["modalities"]
        np.testing.assert_allclose(_digit_probs(batched), _digit_probs(single), atol=1e-5)
        assert batched["tasks"]["digit"]["label"] == single["tasks"]["digit"]["label"]
        for modality, weight in single["contributions"].items():
            assert batched["contributions"][modality] == pytest.approx(weight, abs=1e-5)

    metrics = httpx.get(f"{server}/metrics").text
    count = _sample(metrics, 'mmserve_batch_size_count{model="digits-xattn"}')
    singles_bucket = _sample(metrics, 'mmserve_batch_size_bucket{le="1.0",model="digits-xattn"}')
    assert count > singles_bucket, "the batch-size histogram shows no batch larger than 1"
    assert (
        _sample(
            metrics,
            'mmserve_requests_total{endpoint="/v1/predict",model="digits-xattn",status="200"}',
        )
        >= 128
    )  # noqa: E501


def _sample(metrics: str, name: str) -> float:
    labels = re.findall(r"(\w+)=\"([^\"]*)\"", name)
    metric = name.split("{")[0]
    for line in metrics.splitlines():
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.slow
def test_overload_answers_429_then_recovers(model_root: Path) -> None:
    env = {"MMSERVE_BATCHING__MAX_QUEUE": "4", "MMSERVE_RUNTIME__FEATURE_THREADS": "1"}
    request = _requests(3)[2]  # image + audio + text: the most work per request
    with serve_subprocess(model_root, env) as base:
        url = f"{base}/v1/predict"

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as c:
                return await asyncio.gather(
                    *[
                        c.post(url, files=request["files"], data=request["data"])  # type: ignore[arg-type]
                        for _ in range(64)
                    ]
                )

        statuses = [r.status_code for r in asyncio.run(burst())]
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(429) > 0 and statuses.count(200) > 0
        rejected = next(r for r in asyncio.run(burst()) if r.status_code == 429)
        assert rejected.headers["retry-after"].isdigit()
        assert rejected.json()["error"]["code"] == "overloaded"
        for _ in range(5):  # load has stopped: answers are normal again
            response = httpx.post(url, files=request["files"], data=request["data"])  # type: ignore[arg-type]
            assert response.status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        assert _sample(metrics, 'mmserve_rejected_requests_total{reason="overloaded"}') > 0
        assert _sample(metrics, 'mmserve_queue_depth{model="digits-xattn"}') == 0


class _Counting:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def queue_changed(self, depth: int) -> None:
        pass

    def batch_done(self, size: int, inference_s: float) -> None:
        self.batches.append(size)

    def rejected(self, reason: str) -> None:
        pass


def test_a_cancelled_request_costs_no_features_or_inference(model_folder: Path) -> None:
    manifest = load_manifest(model_folder)
    session = ModelSession(model_folder / manifest.model_file, providers=["CPUExecutionProvider"])
    row = synthetic_row(manifest)
    gate = threading.Event()
    extracted: list[str] = []

    def job(name: str, wait: bool = False) -> ExtractedRow:
        if wait:
            gate.wait(10)  # holds the batch thread busy
        extracted.append(name)
        return ExtractedRow(row)

    async def scenario() -> list[int]:
        observer = _Counting()
        batcher = Batcher(session, manifest, max_batch_size=8, max_wait_ms=0, max_queue=8,
                          observer=observer)  # fmt: skip
        await batcher.start()
        first = asyncio.create_task(batcher.submit_job(lambda: job("first", True), timeout_s=10))
        await asyncio.sleep(0.05)  # the first row's batch now occupies the thread
        leaving = asyncio.create_task(batcher.submit_job(lambda: job("leaving"), timeout_s=10))
        await asyncio.sleep(0.05)
        leaving.cancel()  # its client went away while it was queued
        await asyncio.gather(leaving, return_exceptions=True)
        gate.set()
        await first
        await batcher.close(drain_timeout_s=5)
        return observer.batches

    assert asyncio.run(scenario()) == [1]
    assert extracted == ["first"]


def test_a_row_whose_features_fail_fails_alone_in_its_batch(model_folder: Path) -> None:
    manifest = load_manifest(model_folder)
    session = ModelSession(model_folder / manifest.model_file, providers=["CPUExecutionProvider"])
    row = synthetic_row(manifest)

    def bad() -> ExtractedRow:
        raise InvalidInput("image is not an image", field="image")

    async def scenario() -> tuple[list[object], list[int]]:
        observer = _Counting()
        batcher = Batcher(session, manifest, max_batch_size=8, max_wait_ms=0, max_queue=8,
                          observer=observer)  # fmt: skip
        await batcher.start()
        jobs = [lambda: ExtractedRow(row), bad, lambda: ExtractedRow(row)]
        results = await asyncio.gather(
            *[batcher.submit_job(j, timeout_s=10) for j in jobs], return_exceptions=True
        )
        await batcher.close(drain_timeout_s=5)
        return results, observer.batches

    (first, failed, last), batches = asyncio.run(scenario())
    assert isinstance(failed, InvalidInput) and failed.field == "image"
    assert not isinstance(first, BaseException) and not isinstance(last, BaseException)
    assert first.batch_size == last.batch_size == 2 and batches == [2]
    np.testing.assert_array_equal(first.outputs["digit_probs"], last.outputs["digit_probs"])


def test_a_failing_row_fails_alone(model_folder: Path) -> None:
    manifest = load_manifest(model_folder)
    session = ModelSession(model_folder / manifest.model_file, providers=["CPUExecutionProvider"])
    good = synthetic_row(manifest)
    bad_inputs = dict(good.inputs)
    bad_inputs["audio"] = {"audio": np.zeros((3, 3), dtype=np.float32)}  # wrong shape
    bad = FeatureRow(bad_inputs)

    async def scenario() -> list[object]:
        batcher = Batcher(session, manifest, max_batch_size=8, max_wait_ms=50, max_queue=8)
        await batcher.start()
        results = await asyncio.gather(
            *[batcher.submit(r, timeout_s=10) for r in (good, bad, good)], return_exceptions=True
        )
        await batcher.close(drain_timeout_s=5)
        return results

    first, failed, last = asyncio.run(scenario())
    assert not isinstance(first, BaseException) and not isinstance(last, BaseException)
    assert isinstance(failed, Exception) and not isinstance(failed, ModelNotReady)
    np.testing.assert_array_equal(first.outputs["digit_probs"], last.outputs["digit_probs"])


def test_a_retired_batcher_serves_requests_that_resolved_it_before_closing(
    model_folder: Path,
) -> None:
    """A request that resolved a model just before it was replaced submits after the swap."""
    manifest = load_manifest(model_folder)
    session = ModelSession(model_folder / manifest.model_file, providers=["CPUExecutionProvider"])
    row = synthetic_row(manifest)

    async def scenario() -> tuple[object, object, float]:
        batcher = Batcher(session, manifest, max_batch_size=8, max_wait_ms=0, max_queue=8)
        await batcher.start()
        loop = asyncio.get_running_loop()
        retired = asyncio.create_task(batcher.retire(drain_timeout_s=10, quiet_s=0.3))
        async with batcher.arriving():  # its body is being read while the batcher retires
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.2)  # decoded elsewhere: nothing pending, but it will submit
        late = await batcher.submit(row, timeout_s=10)
        started = loop.time()
        await retired
        closed_after = loop.time() - started
        after = await asyncio.gather(batcher.submit(row, timeout_s=1), return_exceptions=True)
        return late, after[0], closed_after

    late, after, closed_after = asyncio.run(scenario())
    assert not isinstance(late, BaseException)
    assert isinstance(after, ModelNotReady)  # closed once quiet
    assert closed_after < 2.0  # within about quiet_s of its last request, not drain_timeout_s


def test_a_request_with_many_rows_takes_only_its_share_of_each_batch(
    model_folder: Path,
) -> None:
    """Eight rows of one request queued before another client's row: the other row runs in
    the first batch after them, not behind all eight (max_request_rows_per_batch=2)."""
    manifest = load_manifest(model_folder)
    session = ModelSession(model_folder / manifest.model_file, providers=["CPUExecutionProvider"])
    row = synthetic_row(manifest)
    gate = threading.Event()
    extracted: list[str] = []

    def job(name: str, wait: bool = False) -> ExtractedRow:
        if wait:
            gate.wait(10)  # holds the batch thread while the others queue
        extracted.append(name)
        return ExtractedRow(row)

    async def scenario() -> list[int]:
        observer = _Counting()
        batcher = Batcher(session, manifest, max_batch_size=8, max_wait_ms=0, max_queue=16,
                          observer=observer, max_request_rows_per_batch=2)  # fmt: skip
        await batcher.start()
        first = asyncio.create_task(batcher.submit_job(lambda: job("first", True), timeout_s=10))
        await asyncio.sleep(0.05)
        group = object()
        many = [
            asyncio.create_task(
                batcher.submit_job(functools.partial(job, f"many-{i}"), timeout_s=10, group=group)
            )
            for i in range(8)
        ]
        await asyncio.sleep(0.02)
        other = asyncio.create_task(batcher.submit_job(lambda: job("other"), timeout_s=10))
        await asyncio.sleep(0.02)
        gate.set()
        await asyncio.gather(first, other, *many)
        await batcher.close(drain_timeout_s=5)
        return observer.batches

    batches = asyncio.run(scenario())
    assert batches == [1, 3, 2, 2, 2]
    assert extracted.index("other") < extracted.index("many-2")
    assert extracted[1:4] == ["many-0", "many-1", "other"]


def test_requests_still_reading_their_bodies_hold_no_place_in_the_queue(
    model_folder: Path,
) -> None:
    """Issue 13: clients that open a request and stall must not lock the model out."""
    manifest = load_manifest(model_folder)
    session = ModelSession(model_folder / manifest.model_file, providers=["CPUExecutionProvider"])
    row = synthetic_row(manifest)

    async def scenario() -> list[object]:
        batcher = Batcher(session, manifest, max_batch_size=8, max_wait_ms=0, max_queue=2)
        await batcher.start()
        stalled = asyncio.Event()

        async def stalled_client() -> None:
            async with batcher.arriving():  # its body never comes
                await stalled.wait()

        stalls = [asyncio.create_task(stalled_client()) for _ in range(10)]
        await asyncio.sleep(0.05)
        answers = await asyncio.gather(
            *(batcher.submit(row, timeout_s=5) for _ in range(2)), return_exceptions=True
        )
        stalled.set()
        await asyncio.gather(*stalls)
        await batcher.close(1.0)
        return answers

    answers = asyncio.run(scenario())
    assert not any(isinstance(a, BaseException) for a in answers), answers
