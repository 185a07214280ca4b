"""``python -m service serve``: flags become settings, and a real server answers over TCP."""

from __future__ import annotations

import httpx
import pytest

from service.cli import build_parser, export_flags
from service.settings import Settings
from tests.service import media
from tests.service.conftest import DEFAULT_MODEL


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {
        "MMSERVE_PORT": "9000",
        "MMSERVE_HOST": "0.0.0.0",
        "MMSERVE_AUTH__ALLOW_ANONYMOUS": "true",  # a non-loopback bind needs keys or this
        "OPENBLAS_NUM_THREADS": "4",
    }
    args = build_parser().parse_args(
        ["serve", "--port", "8011", "--providers", "CPUExecutionProvider", "--workers", "3"]
    )
    export_flags(args, environ)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.port, settings.host, settings.workers) == (8011, "0.0.0.0", 3)
    assert settings.runtime.providers == ["CPUExecutionProvider"]
    assert environ["OMP_NUM_THREADS"] == "1"
    assert environ["OPENBLAS_NUM_THREADS"] == "4"  # the user's choice stands


def test_served_over_tcp(server: str) -> None:
    files = {"image": ("digit.png", media.png()), "text": (None, b"seven")}
    response = httpx.post(f"{server}/v1/predict", files=files, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == DEFAULT_MODEL
    assert httpx.get(f"{server}/openapi.json", timeout=10).json()["openapi"].startswith("3.")


def test_bench_slot_exists() -> None:
    args, rest = build_parser().parse_known_args(["bench", "--json"])
    assert args.command == "bench" and rest == ["--json"]
