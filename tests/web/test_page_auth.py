"""The web page against a server that wants an API key, in headless chromium.

The page itself loads without a key; its first API call is refused (401), so it asks for a key,
keeps it for the tab (sessionStorage, never localStorage), and from then on sends it with every
request: the models load and a prediction is shown. A wrong key is asked for again.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import REPO_ROOT
from tests.logcheck import secret
from tests.web.conftest import DEFAULT_MODEL, free_port, wait_until_ready

pytestmark = pytest.mark.slow

KEY = secret("web-page-key-2f6b9d1e7a3c5e08")
WRONG_KEY = secret("web-page-wrong-key-00000000")
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def protected_url(web_model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("web-protected") / "service.log"
    command = [
        sys.executable, "-m", "service", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--model-dir", str(web_model_root), "--feature-threads", "1",
    ]  # fmt: skip
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "MMSERVE_API_KEYS": KEY}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, log_path)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_page_asks_for_the_key_then_predicts(browser: Any, protected_url: str) -> None:
    assert httpx.get(f"{protected_url}/v1/models").status_code == 401
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        sent: list[tuple[str, str | None]] = []
        page.on("request", lambda r: sent.append((r.url, r.headers.get("x-api-key"))))
        page.goto(f"{protected_url}/")

        page.wait_for_selector("#key-dialog[open]")
        page.fill("#api-key", WRONG_KEY)
        page.click("#key-submit")
        page.wait_for_function(
            "document.querySelector('#key-message').textContent.includes('did not accept')"
        )
        assert page.is_visible("#key-dialog")
        page.fill("#api-key", KEY)
        page.click("#key-submit")

        page.wait_for_function("document.body.dataset.model", timeout=TIMEOUT_MS)
        assert not page.is_visible("#key-dialog")
        page.select_option("#model", DEFAULT_MODEL)
        page.fill("#text", "seven")
        page.click("#submit")
        page.wait_for_function(
            "document.body.dataset.answer || document.body.dataset.error", timeout=TIMEOUT_MS
        )
        assert not page.is_visible("#error"), page.inner_text("#error")
        assert page.text_content('[data-task="digit"] .top-label')

        assert page.evaluate("sessionStorage.getItem('mmserve.apiKey')") == KEY
        assert page.evaluate("localStorage.length") == 0
        api_calls = [(url, key) for url, key in sent if "/v1/" in url]
        assert api_calls[-1][1] == KEY and "/predict" in api_calls[-1][0]
        # The page's own files were fetched without a key: they are public.
        assert all(key is None for url, key in sent if url.endswith((".js", ".css", "/")))
    finally:
        context.close()


def test_cancelling_shows_the_refusal(browser: Any, protected_url: str) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{protected_url}/")
        page.wait_for_selector("#key-dialog[open]")
        page.click("#key-cancel")
        page.wait_for_selector("#error:not([hidden])")
        assert "API key" in page.inner_text("#error")
    finally:
        context.close()
