"""The container image, built once per session for the tests marked ``container``."""

from __future__ import annotations

import time

import pytest

from tests.deploy import podman


@pytest.fixture(scope="session")
def image() -> str:
    """The app image, built by scripts/containers.sh (cached: rebuilt when its inputs change)."""
    reason = podman.why_not()
    if reason is not None:
        pytest.skip(reason)
    start = time.monotonic()
    done = podman.script("image", timeout=1200)
    assert done.returncode == 0, f"the image did not build:\n{done.stderr[-4000:]}"
    print(f"image {podman.IMAGE} ready in {time.monotonic() - start:.1f} s")
    return podman.IMAGE
