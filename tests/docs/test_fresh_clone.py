"""The README's two commands in a fresh clone, with Debian's own Python first on PATH.

``make serve`` must make its own virtual environment from ``/usr/bin/python3`` (PEP 668: no
installing into the system's Python) and answer a predict; ``make test`` must get as far as
its first passing test. Both run on a ``git clone`` of this checkout's HEAD, so commit first.

``make test`` installs torch and the dev extras (minutes the first time), so its virtual
environment is kept between runs: ``$MMSERVE_FRESH_CLONE_VENV``, by default
``~/.cache/mmserve/fresh-clone-venv`` (delete it to test the install from nothing). The first
run creates it through ``scripts/setup.sh`` from ``/usr/bin/python3`` too. Its clone is made
afresh each time at one path next to it, so the project's editable install there stays valid
and ``setup.sh`` skips pip while pyproject.toml is unchanged; mypy's cache is kept for the same
reason.
"""

from __future__ import annotations

import fcntl
import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import REPO_ROOT
from tools.ports import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no /usr/bin/python3"),
    pytest.mark.skipif(shutil.which("make") is None, reason="no make"),
]

SYSTEM_PYTHON = Path("/usr/bin/python3")
CACHE = Path.home() / ".cache" / "mmserve"
# What the calling environment must not pass on: a fresh shell has no active virtual
# environment, no outer make's variables and no outer pytest's options.
NOT_INHERITED = ("VIRTUAL_ENV", "VENV", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "PYTHONPATH", "PORT")


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    target = tmp_path / "mmserve"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(target)], check=True)
    return target


def _fresh_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a new shell whose ``python3`` is Debian's own."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(SYSTEM_PYTHON)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in NOT_INHERITED and not k.startswith(("MMSERVE_", "PYTEST_"))
    }
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _stop(process: subprocess.Popen[str]) -> None:
    """End the make run and everything it started (its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _lines(process: subprocess.Popen[str], deadline: float) -> Iterator[str]:
    """The run's output lines as they come, until it exits or the deadline passes."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if not selector.select(timeout=1):
            continue
        line = process.stdout.readline()
        if not line:
            return
        yield line


@pytest.mark.timeout(900)
def test_make_serve_from_debian_python_answers_a_predict(clone: Path, tmp_path: Path) -> None:
    port = free_port()
    env = _fresh_env(tmp_path)
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        ["make", "serve", f"PORT={port}"],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(1)
        output = (tmp_path / "serve.log").read_text()
        assert process.poll() is None, f"make serve exited {process.returncode}:\n{output}"
        answer = httpx.post(f"{url}/v1/predict", data={"text": "seven"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["tasks"]["digit"]["label"] == "7"
    finally:
        _stop(process)
        log.close()
    venv_python = clone / ".venv" / "bin" / "python"
    probe = subprocess.run(
        [
            str(venv_python),
            "-c",
            "import importlib.util as u, sys; "
            "print(sys.base_prefix, u.find_spec('torch') is not None)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # The project's own environment, made from Debian's Python, without torch.
    assert probe.stdout.split() == ["/usr", "False"]


@pytest.fixture
def kept_clone() -> Iterator[Path]:
    """A fresh clone at a fixed path, one test run at a time."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "fresh-clone.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        target = CACHE / "fresh-clone-checkout"
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(target)], check=True)
        yield target


@pytest.mark.timeout(1200)  # the first run installs torch and the dev extras
def test_make_test_from_debian_python_reaches_the_first_test(
    kept_clone: Path, tmp_path: Path
) -> None:
    clone = kept_clone
    venv = Path(os.environ.get("MMSERVE_FRESH_CLONE_VENV", CACHE / "fresh-clone-venv"))
    env = _fresh_env(tmp_path)
    env["MYPY_CACHE_DIR"] = str(CACHE / "fresh-clone-mypy")
    # -v: one line per test, so the first result shows as soon as that test ends.
    env["PYTEST_ADDOPTS"] = "-v -p no:cacheprovider"
    process = subprocess.Popen(
        ["make", "test", f"VENV={venv}"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    first = re.compile(r"^tests/\S+::\S+ (PASSED|FAILED|ERROR|SKIPPED)")
    result = None
    try:
        for line in _lines(process, time.monotonic() + 900):
            seen.append(line)
            match = first.match(line)
            if match:
                result = match.group(1)
                break
    finally:
        _stop(process)
        assert process.stdout is not None
        process.stdout.close()
    output = "".join(seen)
    assert result == "PASSED", f"make test did not pass a first test:\n{output[-6000:]}"
    assert "All checks passed!" in output  # ruff
    assert "Success: no issues found" in output  # mypy
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    if "MMSERVE_FRESH_CLONE_VENV" not in os.environ:
        assert probe.stdout.strip() == "/usr"  # made by setup.sh from Debian's Python
