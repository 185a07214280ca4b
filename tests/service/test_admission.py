"""One admission rule for every upload: refused at once when the model's queue is full, before
the body is read, and every refusal counted in ``mmserve_rejected_requests``.

The app runs with its lifespan in the test's event loop and is reached over ASGI, so a request
can send its head and then hold its body back. The model's queue is filled the way other
clients fill it: rows submitted to the model's real batcher, the first holding the batch thread
until the test lets it go.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.app import create_app
from service.repository import ModelRepository
from service.runtime.extract import ExtractedRow
from service.runtime.warmup import synthetic_row
from tests.service.conftest import DEFAULT_MODEL, make_settings

REJECTED = re.compile(
    rf'^mmserve_rejected_requests_total\{{model="{DEFAULT_MODEL}",reason="overloaded"\}} (\S+)$',
    re.MULTILINE,
)
BOUNDARY = "admissionboundary"


class HeldBody:
    """A request body that is never sent: the request's head arrives, then nothing."""

    def __init__(self) -> None:
        self.read = False
        self.release = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.read = True
        await self.release.wait()
        yield b""


async def _rejected(client: httpx.AsyncClient) -> float:
    found = REJECTED.search((await client.get("/metrics")).text)
    return 0.0 if found is None else float(found.group(1))


Scenario = Callable[[FastAPI, httpx.AsyncClient], Awaitable[None]]


def _with_full_queue(model_root: Path, max_queue: int, queued: int, scenario: Scenario) -> None:
    """Runs ``scenario`` while ``queued`` rows wait in the default model's queue."""
    settings = make_settings(
        model_root,
        batching={"max_queue": max_queue, "max_batch_size": 2},
        runtime={"feature_threads": 1, "providers": ["CPUExecutionProvider"]},
    )
    app = create_app(settings)
    gate = threading.Event()

    async def run() -> None:
        async with app.router.lifespan_context(app):
            repository: ModelRepository = app.state.repository
            batcher = repository.get(DEFAULT_MODEL).batcher
            row = synthetic_row(batcher.manifest)

            def held() -> ExtractedRow:
                gate.wait(30)  # the batch thread is busy with another client's batch
                return ExtractedRow(row)

            running = asyncio.create_task(batcher.submit_job(held, timeout_s=30))
            while batcher.pending or not batcher.busy:  # taken onto the batch thread
                await asyncio.sleep(0.01)
            waiting = [
                asyncio.create_task(batcher.submit(row, timeout_s=30)) for _ in range(queued)
            ]
            await asyncio.sleep(0)
            assert batcher.pending == queued
            transport = httpx.ASGITransport(app=app)
            try:
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://testserver"
                ) as c:
                    await scenario(app, c)
            finally:
                gate.set()
                await asyncio.gather(running, *waiting)

    asyncio.run(run())


@pytest.mark.parametrize(
    "path",
    [
        "/v1/predict",
        f"/v1/models/{DEFAULT_MODEL}/predict",
        f"/v1/models/{DEFAULT_MODEL}/embed",
        # A percent-encoded query is left to FastAPI's routes: the same rule applies there.
        "/v1/predict?top_k=%33",
        f"/v1/models/{DEFAULT_MODEL}/embed?version=%31",
    ],
)
def test_a_full_queue_refuses_an_upload_before_its_body_is_read(
    model_root: Path, path: str
) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        before = await _rejected(client)
        body = HeldBody()
        headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
        response = await asyncio.wait_for(client.post(path, content=body, headers=headers), 5)
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "overloaded"
        assert response.headers["retry-after"].isdigit()
        assert not body.read, "the body was read before the request was refused"
        assert await _rejected(client) == before + 1

    _with_full_queue(model_root, max_queue=1, queued=1, scenario=scenario)


def _v2_text(rows: int) -> bytes:
    entry = {"name": "text", "datatype": "BYTES", "shape": [rows], "data": ["seven"] * rows}
    return json.dumps({"inputs": [entry]}).encode()


def test_v2_is_refused_before_its_body_is_read_and_counted(model_root: Path) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        before = await _rejected(client)
        body = HeldBody()
        request = client.post(f"/v2/models/{DEFAULT_MODEL}/infer", content=body)
        response = await asyncio.wait_for(request, 5)
        assert response.status_code == 503, response.text  # the protocol's status for a full queue
        assert "retry shortly" in response.json()["error"]
        assert not body.read, "the body was read before the request was refused"
        assert await _rejected(client) == before + 1

    _with_full_queue(model_root, max_queue=1, queued=1, scenario=scenario)


def test_v2_is_admitted_as_its_number_of_rows(model_root: Path) -> None:
    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        before = await _rejected(client)
        path = f"/v2/models/{DEFAULT_MODEL}/infer"
        # One place of two is taken: a request of two rows does not fit, and is counted.
        response = await asyncio.wait_for(client.post(path, content=_v2_text(2)), 5)
        assert response.status_code == 503, response.text
        assert "this request's 2 rows would pass batching.max_queue" in response.json()["error"]
        assert await _rejected(client) == before + 1

    _with_full_queue(model_root, max_queue=2, queued=1, scenario=scenario)


def test_a_full_queue_is_explained(model_root: Path) -> None:
    """The /v1 answer to a full queue names the model, the queue and its limit."""

    async def scenario(app: FastAPI, client: httpx.AsyncClient) -> None:
        data: dict[str, Any] = {"text": "seven"}
        response = await client.post("/v1/predict", data=data)
        assert response.status_code == 429
        message = response.json()["error"]["message"]
        assert message == (
            f"model '{DEFAULT_MODEL}' has 1 requests queued (limit 1); retry shortly"
        )

    _with_full_queue(model_root, max_queue=1, queued=1, scenario=scenario)
