"""The page's files as served, without a browser: routes, cache headers, relative URLs only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.routes.web import STATIC_DIR
from service.settings import Settings

PAGE_FILES = ["index.html", "app.js", "wav.js", "style.css", "favicon.svg"]


@pytest.fixture(scope="module")
def client(web_model_root: Path) -> Iterator[TestClient]:
    settings = Settings(model_dir=web_model_root, workers=1, allowed_hosts=["testserver"])
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_the_page_is_served_at_the_root(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert client.head("/").status_code == 200
    assert "/" not in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("name", PAGE_FILES)
def test_every_file_of_the_page_is_served(client: TestClient, name: str) -> None:
    answer = client.get(f"/static/{name}")
    assert answer.status_code == 200
    assert answer.content == (STATIC_DIR / name).read_bytes()
    assert answer.headers["cache-control"] == "no-cache"


def test_unknown_static_files_are_404(client: TestClient) -> None:
    assert client.get("/static/nope.js").status_code == 404


def test_the_page_uses_relative_urls_only() -> None:
    """Absolute paths break under a path prefix; other hosts break offline."""
    html = (STATIC_DIR / "index.html").read_text()
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert not url.startswith("/") and "://" not in url, url
    for name in ("app.js", "wav.js", "style.css"):
        source = (STATIC_DIR / name).read_text()
        assert not re.search(r"""["'`]/(?:v1|static)""", source), name
        assert not re.search(r"https?://", source), name
        assert "@import" not in source and "url(" not in source, name
