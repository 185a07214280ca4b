"""Failover behind nginx, with real replicas and real requests.

Three replicas (``python -m service serve --workers 1``) and nginx with the repository's config
start on loopback through :class:`tools.replicas.Cluster`. A bounded load of multipart
requests (image + audio + text) goes through nginx while one replica is sent SIGTERM and,
later, another SIGKILL. Every request must get the answer a replica gives directly (but those
in flight on the killed one, which nginx does not resend: a 503), the
terminated replica must finish what it had accepted and exit 0, and the survivor must carry
the rest.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import REPO_ROOT
from tests.service import media
from tests.service.tiny_model import build_tiny_model
from tools.replicas import Cluster, nginx_binary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        nginx_binary() is None, reason="nginx is not installed (scripts/setup.sh dev installs it)"
    ),
]

MODEL = "digits-xattn"
CONCURRENCY = 8
TERM_AFTER = 50  # responses before replica 1 gets SIGTERM
GRACE_S = 1.0  # replica 1 serves this long after SIGTERM; replica 0 is killed halfway through
AFTER_DRAIN = 100  # requests sent once replica 1 has exited: the survivor must answer them all
MAX_REQUESTS = 1000  # the bound, should the drain not end
ATOL = 1e-5
DYING_S = 0.5  # a SIGKILLed process takes a moment to die; nginx may still write to it then


@dataclass
class Outcome:
    started: float
    ended: float
    status: int
    body: dict[str, Any]
    upstreams: list[str]

    @property
    def served_by(self) -> str:
        return self.upstreams[-1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    committed = REPO_ROOT / "onnx_models"
    if (committed / MODEL / "1" / "manifest.json").is_file():
        return committed
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root, MODEL)  # the same contract, random weights
    return root


@pytest.fixture(scope="module")
def cluster(model_dir: Path) -> Iterator[Cluster]:
    env = {
        "MMSERVE_MODEL_DIR": str(model_dir),
        "MMSERVE_SHUTDOWN_GRACE_S": str(GRACE_S),
        "MMSERVE_DRAIN_TIMEOUT_S": "10",
        "MMSERVE_RUNTIME__PROVIDERS": "CPUExecutionProvider",
        "MMSERVE_RUNTIME__FEATURE_THREADS": "1",
        "MMSERVE_LOG_LEVEL": "info",
    }
    with Cluster(replicas=3, env=env) as started:
        yield started


def uploads() -> dict[str, tuple[str | None, bytes]]:
    wav = media.encode_audio(media.tone(), 16000, "WAV", "PCM_16")
    return {
        "image": ("digit.png", media.png()),
        "audio": ("tone.wav", wav),
        "text": (None, b"seven"),
    }


def same_answer(body: dict[str, Any], reference: dict[str, Any]) -> bool:
    for task, expected in reference["tasks"].items():
        got = body["tasks"][task]
        if got["label"] != expected["label"]:
            return False
        want = {item["label"]: item["probability"] for item in expected["top_k"]}
        have = {item["label"]: item["probability"] for item in got["top_k"]}
        if want.keys() != have.keys() or any(abs(have[k] - want[k]) > ATOL for k in want):
            return False
    return True


@dataclass
class Events:
    term: float = 0.0
    kill: float = 0.0
    exited: float = 0.0


async def slow_upload(url: str, events: Events) -> httpx.Response:
    """A request straight to replica 1 whose body is still arriving when it closes its listener.

    Sent during the grace period; the second half of the body follows once the listener is
    closed, so this request is certainly in flight through the drain.
    """
    request = httpx.Request("POST", f"{url}/v1/predict", files=uploads())
    body = request.read()

    async def trickle() -> AsyncIterator[bytes]:
        yield body[: len(body) // 2]
        await asyncio.sleep(max(0.0, events.term + GRACE_S + 0.5 - time.monotonic()))
        yield body[len(body) // 2 :]

    headers = {"content-type": request.headers["content-type"], "content-length": str(len(body))}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(request.url, content=trickle(), headers=headers)


async def load(cluster: Cluster, events: Events) -> tuple[list[Outcome], httpx.Response]:
    """Full concurrency throughout, so the replicas are busy whenever a signal lands."""
    files = uploads()
    outcomes: list[Outcome] = []
    killed, terminated, _ = cluster.servers
    slow: list[asyncio.Task[httpx.Response]] = []
    sent_after_exit = 0

    def next_request() -> bool:
        nonlocal sent_after_exit
        now = time.monotonic()
        if len(outcomes) >= TERM_AFTER and not events.term:
            events.term = now
            terminated.send_signal(signal.SIGTERM)
            slow.append(asyncio.create_task(slow_upload(terminated.url, events)))
        if events.term and not events.kill and now > events.term + GRACE_S / 2:
            events.kill = now  # while replica 1 is still serving its grace period
            killed.send_signal(signal.SIGKILL)
        if events.kill and not events.exited and terminated.process.poll() is not None:
            events.exited = now
        if events.exited:
            sent_after_exit += 1
            return sent_after_exit <= AFTER_DRAIN
        return len(outcomes) < MAX_REQUESTS

    async def worker(client: httpx.AsyncClient) -> None:
        while next_request():
            started = time.monotonic()
            response = await client.post("/v1/predict", files=files)
            upstreams = response.headers.get("x-upstream", "").split(", ")
            ended, status, body = time.monotonic(), response.status_code, response.json()
            outcomes.append(Outcome(started, ended, status, body, upstreams))

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=cluster.url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return outcomes, await slow[0]


def test_no_request_fails_when_replicas_die_or_drain(cluster: Cluster) -> None:
    killed, terminated, survivor = cluster.servers
    # One direct answer per replica: the reference, and each replica's first (slower) request.
    direct = [httpx.post(f"{s.url}/v1/predict", files=uploads()) for s in cluster.servers]
    assert [r.status_code for r in direct] == [200, 200, 200], direct[0].text
    reference = direct[-1].json()
    assert all(same_answer(r.json(), reference) for r in direct)

    events = Events()
    began = time.monotonic()
    outcomes, slow = asyncio.run(load(cluster, events))
    elapsed = time.monotonic() - began

    # Every request answered, and answered right, but those the killed replica had taken: nginx
    # resends a request only when no replica took it (refused), never one that was sent, so
    # that a request that kills a replica is not replayed onto every replica in turn.
    assert events.exited, f"replica 1 did not exit within {MAX_REQUESTS} requests"
    lost = [o for o in outcomes if o.status != 200]
    assert len(lost) <= CONCURRENCY, [(o.status, o.body) for o in lost]
    for o in lost:
        assert o.status == 503 and o.body["error"]["code"] == "model_not_ready", o.body
        # Taken by the killed replica, or written by nginx on its connection as it died.
        assert o.upstreams == [killed.address], (o, killed.address, events)
        assert o.started <= events.kill + DYING_S and o.ended >= events.kill, (o, events)
    wrong = [o.body for o in outcomes if o.status == 200 and not same_answer(o.body, reference)]
    assert wrong == []

    # The terminated replica served through its grace period, finished what it had accepted
    # when it closed its listener, and exited 0.
    assert terminated.wait(5) == 0
    log = terminated.log()
    closing = re.search(r"closing the listener with (\d+) request\(s\) in flight", log)
    assert closing is not None and "drain: done" in log, log[-3000:]
    in_flight = int(closing.group(1))
    finished = re.findall(r'"POST /v1/predict HTTP/1.1" (\d+)', log[closing.end() :])
    assert in_flight >= 1 and finished == ["200"] * len(finished) and len(finished) >= 1
    assert slow.status_code == 200 and same_answer(slow.json(), reference), slow.text
    served = [o for o in outcomes if o.served_by == terminated.address]
    assert any(o.started > events.term for o in served), "served during the grace period"
    # Every answer it gave reached a client (two went to direct requests): none was lost.
    assert len(re.findall(r'"POST /v1/predict HTTP/1.1" 200', log)) == len(served) + 2

    # The killed replica is gone; new connections to it were refused and went to another.
    assert killed.wait(5) == -signal.SIGKILL
    # With one replica killed and the other drained, the survivor answers everything.
    late = [o for o in outcomes if o.started >= events.exited]
    assert all(o.status == 200 for o in late)
    assert len(late) == AFTER_DRAIN
    assert {o.served_by for o in late} == {survivor.address}

    counts = {c.name: sum(o.served_by == c.address for o in outcomes) for c in cluster.servers}
    retried = sum(len(o.upstreams) > 1 for o in outcomes)
    print(
        f"\n{len(outcomes)} requests in {elapsed:.1f} s, served by {counts}; {retried} retried "
        f"by nginx (refused), {len(lost)} lost in flight on the killed replica; "
        f"{in_flight} in flight when replica-1 closed its listener, "
        f"{len(finished)} answered after"
    )
