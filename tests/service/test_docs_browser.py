"""A person on ``/docs``: picks an image and an audio file, types text, presses Execute."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.service import media

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser_page():  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_upload_from_the_docs_page(browser_page, server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    image, audio = tmp_path / "digit.png", tmp_path / "seven.wav"
    image.write_bytes(media.png(media.digit_image("7")))
    audio.write_bytes(media.encode_audio(media.tone(), 16000, "WAV", "PCM_16"))
    page = browser_page
    page.goto(f"{server}/docs")
    operation = page.locator("#operations-inference-predict_default_v1_predict_post")
    operation.locator(".opblock-summary").click()
    pickers = operation.locator("input[type=file]")
    pickers.nth(1).wait_for(timeout=15_000)  # Swagger UI renders the form after the click
    assert pickers.count() == 2  # image and audio
    pickers.nth(0).set_input_files(str(image))
    pickers.nth(1).set_input_files(str(audio))
    operation.locator("input[placeholder=text]").fill("seven")
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table td.response-col_status:not(.col_header)")
    status.wait_for(timeout=15_000)
    assert status.inner_text().strip() == "200"
    body = json.loads(operation.locator(".live-responses-table .microlight").first.inner_text())
    assert body["modalities"] == ["image", "audio", "text"]
    assert set(body["tasks"]) >= {"digit"}


def test_an_image_only_try_sends_only_the_image(browser_page, server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # The text field used to be pre-filled with its example ("seven") and sent along.
    image = tmp_path / "digit.png"
    image.write_bytes(media.png(media.digit_image("7")))
    page = browser_page
    page.goto(f"{server}/docs")
    operation = page.locator("#operations-inference-predict_default_v1_predict_post")
    operation.locator(".opblock-summary").click()
    text = operation.locator("input[placeholder=text]")
    text.wait_for(timeout=15_000)
    assert text.input_value() == ""
    operation.locator("input[type=file]").nth(0).set_input_files(str(image))
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table td.response-col_status:not(.col_header)")
    status.wait_for(timeout=15_000)
    assert status.inner_text().strip() == "200"
    body = json.loads(operation.locator(".live-responses-table .microlight").first.inner_text())
    assert body["modalities"] == ["image"]
