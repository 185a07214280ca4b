"""The web page at ``/`` in headless chromium, against the real service in its own process.

Every page here is opened under a path prefix (``/mmserve/``) that only the test's router
strips, and every request that is not for that prefix on the service's own loopback address is
aborted and recorded. So these tests prove the page uses relative URLs only, needs no network
(no CDN, no web fonts), and runs without a console error, while they check that what it shows
is the service's own answer, or the service's own error message.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from service.settings import REPO_ROOT
from tests.web.conftest import DEFAULT_MODEL

pytestmark = pytest.mark.slow

PREFIX = "/mmserve"
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
ARTIFACTS = REPO_ROOT / "artifacts" / "web"
TIMEOUT_MS = 60_000
LOAD_TIMEOUT_MS = 20_000
# Chromium logs every 4xx answer to fetch() as a console error; the error test expects one.
HTTP_ERROR_LOG = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


@dataclass
class WatchedPage:
    """A page under PREFIX that records what a user would never want to see."""

    page: Any  # playwright.sync_api.Page
    console_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def unexpected_console_errors(self, *allowed_statuses: int) -> list[str]:
        def expected(text: str) -> bool:
            match = HTTP_ERROR_LOG.search(text)
            return match is not None and int(match.group(1)) in allowed_statuses

        return [text for text in self.console_errors if not expected(text)]

    def submit_and_wait(self) -> None:
        self.page.click("#submit")
        self.wait_for_outcome()

    def wait_for_outcome(self) -> None:
        self.page.wait_for_function(
            "document.body.dataset.answer || document.body.dataset.error", timeout=TIMEOUT_MS
        )

    def shown_answer(self) -> dict[str, Any]:
        error = self.page.locator("#error")
        if error.is_visible():
            pytest.fail(f"the page shows an error: {error.inner_text()}")
        answer: dict[str, Any] = json.loads(self.page.text_content("#raw-json") or "null")
        return answer


def offline_router(service_url: str, blocked: list[str]) -> Callable[[Any], None]:
    service = urlsplit(service_url)

    def route(route: Any) -> None:
        url = urlsplit(route.request.url)
        same_host = (url.hostname, url.port) == (service.hostname, service.port)
        if not same_host or not (url.path == PREFIX or url.path.startswith(PREFIX + "/")):
            blocked.append(route.request.url)
            route.abort()
            return
        # What a proxy mounting the service under PREFIX does: strip it and pass the rest on.
        route.continue_(url=urlunsplit(url._replace(path=url.path[len(PREFIX) :] or "/")))

    return route


@pytest.fixture
def open_page(browser: Any, service_url: str) -> Iterator[Callable[[dict[str, int]], WatchedPage]]:
    contexts: list[Any] = []

    def open_page(viewport: dict[str, int]) -> WatchedPage:
        context = browser.new_context(viewport=viewport, permissions=["microphone"])
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        watched = WatchedPage(page)
        page.on("console", lambda m: m.type == "error" and watched.console_errors.append(m.text))
        page.on("pageerror", lambda exc: watched.console_errors.append(f"uncaught: {exc}"))
        page.route("**/*", offline_router(service_url, watched.blocked))
        page.goto(f"{service_url}{PREFIX}/")
        page.wait_for_function(
            "document.body.dataset.model || document.body.dataset.error", timeout=LOAD_TIMEOUT_MS
        )
        if page.is_visible("#error"):
            pytest.fail(f"the page did not load the models: {page.inner_text('#error')}; "
                        f"blocked requests: {watched.blocked}")  # fmt: skip
        return watched

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def digit_png() -> bytes:
    """A handwritten 7 from scikit-learn's digits, upscaled: dark ink on white, like a scan."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = digits.images[int(np.flatnonzero(digits.target == 7)[0])] / 16.0  # (8, 8) in [0, 1]
    grey = Image.fromarray((255 * (1 - ink)).astype(np.uint8), "L")
    buffer = io.BytesIO()
    grey.resize((160, 160), Image.Resampling.BICUBIC).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def seven_wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng makes the spoken test clip: apt-get install espeak-ng"
    path = tmp_path_factory.mktemp("speech") / "seven.wav"
    subprocess.run([espeak, "-w", str(path), "seven"], check=True, capture_output=True)
    return path.read_bytes()


def upload(name: str, mime: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


def test_the_answer_shown_is_the_services_answer(
    open_page: Callable[[dict[str, int]], WatchedPage],
    service_url: str,
    digit_png: bytes,
    seven_wav: bytes,
) -> None:
    watched = open_page(WIDE)
    page = watched.page
    page.select_option("#model", DEFAULT_MODEL)
    for modality in ("text", "image", "audio"):
        assert page.is_enabled(f"#{modality}")
    page.fill("#text", "seven")
    page.set_input_files("#image", upload("seven.png", "image/png", digit_png))
    page.set_input_files("#audio", upload("seven.wav", "audio/wav", seven_wav))
    page.wait_for_selector("#image-preview[src]")
    watched.submit_and_wait()

    shown = watched.shown_answer()
    direct = httpx.post(
        f"{service_url}/v1/models/{DEFAULT_MODEL}/predict",
        data={"text": "seven"},
        files={"image": ("seven.png", digit_png, "image/png"),
               "audio": ("seven.wav", seven_wav, "audio/wav")},
        timeout=60,
    ).json()  # fmt: skip
    labels = {task: prediction["label"] for task, prediction in direct["tasks"].items()}
    on_screen = {task: page.text_content(f'[data-task="{task}"] .top-label') for task in labels}
    assert on_screen == labels
    assert sorted(shown["modalities"]) == ["audio", "image", "text"]
    for task, prediction in direct["tasks"].items():
        assert shown["tasks"][task]["probability"] == pytest.approx(prediction["probability"])
        bars = page.locator(f'[data-task="{task}"] .bar-row')
        assert bars.count() == len(prediction["top_k"])
    assert page.locator("#contributions .bar-row").count() in (0, 3)
    assert page.locator("#timings dt").count() >= 5
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "success.png"), full_page=True)
    page.click("#result details summary")  # the raw JSON is collapsed until asked for
    assert json.loads(page.inner_text("#raw-json")) == shown
    assert watched.blocked == []
    assert watched.unexpected_console_errors() == []


def test_an_unsupported_file_dropped_shows_the_services_message(
    open_page: Callable[[dict[str, int]], WatchedPage], service_url: str
) -> None:
    not_an_image = b"just some text, not a picture\n"
    direct = httpx.post(
        f"{service_url}/v1/models/{DEFAULT_MODEL}/predict",
        files={"image": ("notes.png", not_an_image, "image/png")},
        timeout=60,
    )
    assert direct.status_code == 415
    expected = direct.json()["error"]

    watched = open_page(WIDE)
    page = watched.page
    drop_file(page, "#image-drop", upload("notes.png", "image/png", not_an_image))
    page.wait_for_selector("#image-caption:has-text('cannot show it')")
    assert page.evaluate("document.getElementById('image').files[0].name") == "notes.png"
    watched.submit_and_wait()

    assert page.is_visible("#error")
    assert page.is_hidden("#result")
    assert page.text_content("#error-message") == expected["message"]
    assert page.text_content("#error-title") == "Unsupported format"
    assert "Field: image." in (page.text_content("#error-details") or "")
    assert "has-error" in (page.get_attribute("#image-card", "class") or "")
    assert watched.blocked == []
    assert watched.unexpected_console_errors(415) == []


def test_phone_keyboard_and_microphone(
    open_page: Callable[[dict[str, int]], WatchedPage],
) -> None:
    """On a phone-sized screen, with the keyboard only: record, convert to WAV, send."""
    watched = open_page(PHONE)
    page = watched.page
    tab_to(page, "record")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused button shows no focus ring"
    page.keyboard.press("Enter")
    page.wait_for_selector("#record[aria-pressed=true]")
    page.wait_for_timeout(1200)
    page.keyboard.press("Enter")
    page.wait_for_selector("#audio-figure:not([hidden])")

    header = page.evaluate(
        """async () => {
            const bytes = await (await fetch(document.getElementById("audio-player").src))
                .arrayBuffer();
            const view = new DataView(bytes);
            const tag = (at) => String.fromCharCode(...new Uint8Array(bytes, at, 4));
            return {riff: tag(0), wave: tag(8), format: view.getUint16(20, true),
                    channels: view.getUint16(22, true), rate: view.getUint32(24, true),
                    bits: view.getUint16(34, true), size: bytes.byteLength};
        }"""
    )
    assert header["riff"] == "RIFF" and header["wave"] == "WAVE"
    assert (header["format"], header["channels"], header["bits"]) == (1, 1, 16)
    assert header["rate"] == 16000 and header["size"] > 44 + 2 * 16000  # more than a second

    tab_to(page, "submit")
    page.keyboard.press("Enter")
    watched.wait_for_outcome()
    assert watched.shown_answer()["modalities"] == ["audio"]
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a {PHONE['width']} px screen"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "phone.png"), full_page=True)
    assert watched.blocked == []
    assert watched.unexpected_console_errors() == []


def drop_file(page: Any, selector: str, file: dict[str, Any]) -> None:
    """What a drag and drop from the desktop delivers: a DataTransfer holding the file."""
    page.evaluate(
        """([selector, name, type, bytes]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, { type }));
            const zone = document.querySelector(selector);
            for (const event of ["dragenter", "dragover", "drop"]) {
                const init = { bubbles: true, cancelable: true, dataTransfer: transfer };
                zone.dispatchEvent(new DragEvent(event, init));
            }
        }""",
        [selector, file["name"], file["mimeType"], list(file["buffer"])],
    )


def tab_to(page: Any, element_id: str, max_presses: int = 40) -> None:
    for _ in range(max_presses):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            return
    pytest.fail(f"#{element_id} is not reachable with the Tab key")


def test_an_overloaded_service_says_when_to_retry(
    open_page: Callable[[dict[str, int]], WatchedPage],
) -> None:
    """A full queue cannot be produced on demand, so this one answer is the service's shape
    played back by the browser: the 429 of ``service/errors.py`` with its Retry-After header."""
    watched = open_page(WIDE)
    page = watched.page
    body = {
        "error": {
            "code": "overloaded",
            "message": "the queue of model 'digits-xattn' is full",
            "field": None,
            "request_id": "0123456789abcdef",
        }
    }
    page.route(
        "**/predict*",
        lambda route: route.fulfill(
            status=429, json=body, headers={"Retry-After": "7", "X-Request-ID": "0123"}
        ),
    )
    page.fill("#text", "seven")
    watched.submit_and_wait()

    assert page.text_content("#error-title") == "The service is busy"
    assert page.text_content("#error-message") == body["error"]["message"]
    details = page.text_content("#error-details") or ""
    assert "Retry after 7 s." in details and "0123456789abcdef" in details
    assert watched.unexpected_console_errors(429) == []


def _answer_on_screen(watched: WatchedPage, digit_png: bytes) -> None:
    page = watched.page
    page.fill("#text", "seven")
    page.set_input_files("#image", upload("seven.png", "image/png", digit_png))
    watched.submit_and_wait()
    assert watched.shown_answer()["modalities"]
    assert page.is_visible("#result")


def _no_answer_on_screen(page: Any) -> None:
    assert page.is_hidden("#result")
    assert page.text_content("#raw-json") == ""
    assert page.locator("#tasks > *").count() == 0
    assert page.evaluate("document.body.dataset.answer") is None


def test_an_error_replaces_the_previous_answer(
    open_page: Callable[[dict[str, int]], WatchedPage], digit_png: bytes
) -> None:
    watched = open_page(WIDE)
    page = watched.page
    _answer_on_screen(watched, digit_png)
    page.fill("#text", "")
    drop_file(page, "#image-drop", upload("notes.png", "image/png", b"plain text, no picture\n"))
    page.click("#submit")
    page.wait_for_function("document.body.dataset.error", timeout=TIMEOUT_MS)
    assert page.is_visible("#error")
    _no_answer_on_screen(page)
    assert watched.unexpected_console_errors(415) == []


def test_clear_inputs_clears_the_answer_too(
    open_page: Callable[[dict[str, int]], WatchedPage], digit_png: bytes
) -> None:
    watched = open_page(WIDE)
    page = watched.page
    _answer_on_screen(watched, digit_png)
    page.click("#clear-inputs")
    _no_answer_on_screen(page)
    assert page.input_value("#text") == "" and page.is_hidden("#error")
    assert watched.unexpected_console_errors() == []


def test_an_unsure_answer_is_marked_and_a_sure_one_is_not(
    open_page: Callable[[dict[str, int]], WatchedPage],
) -> None:
    watched = open_page(WIDE)
    page = watched.page
    page.select_option("#model", DEFAULT_MODEL)
    page.fill("#text", "hello world")
    watched.submit_and_wait()
    first = watched.shown_answer()
    assert first["ood"]["unsure"] is True
    assert page.locator('[data-task="digit"] .unsure').count() == 1
    page.fill("#text", "seven")
    page.click("#submit")
    # The previous answer stays marked on <body> until the new one replaces it.
    page.wait_for_function(
        f"document.body.dataset.answer && document.body.dataset.answer !== '{first['request_id']}'",
        timeout=TIMEOUT_MS,
    )
    assert watched.shown_answer()["ood"]["unsure"] is False
    assert page.locator(".unsure").count() == 0
    assert watched.unexpected_console_errors() == []
