"""The wheel holds ``service`` and ``export`` only: the tools, and Flask with them, stay out.

The wheel is built from a copy of the checkout's packages (so the checkout gets no ``build/``
or ``*.egg-info``), with this environment's setuptools and no index (offline).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest
from packaging.version import Version

from service.settings import REPO_ROOT

# The license as an SPDX expression (PEP 639) needs setuptools 77; the dev extras bring it.
SETUPTOOLS_NEEDED = Version("77")
TOP_LEVEL = ["service", "export", "tools", "tests"]


def _setuptools_version() -> Version | None:
    try:
        return Version(metadata.version("setuptools"))
    except metadata.PackageNotFoundError:
        return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    found = _setuptools_version()
    if found is None or found < SETUPTOOLS_NEEDED:
        pytest.skip(f"building offline needs setuptools >= {SETUPTOOLS_NEEDED}; found {found}")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in TOP_LEVEL:  # every package of the checkout, so that the include list decides
        shutil.copytree(
            REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    out = tmp_path_factory.mktemp("wheel")
    command = [
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "--wheel-dir", str(out), str(source),
    ]  # fmt: skip
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (built,) = out.glob("mmserve-*.whl")
    return zipfile.ZipFile(built)


def test_only_the_service_and_export_packages_are_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    top = {PurePosixPath(name).parts[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"service", "export"}
    assert "service/cli.py" in names and "service/static/index.html" in names
    tooling = [n for n in names if {"tools", "bench", "deploy"} & set(PurePosixPath(n).parts)]
    assert tooling == []


def test_nothing_in_the_wheel_imports_flask_or_gunicorn(wheel: zipfile.ZipFile) -> None:
    for name in wheel.namelist():
        if name.endswith(".py"):
            lines = wheel.read(name).decode().splitlines()
            imports = [line for line in lines if line.lstrip().startswith(("import ", "from "))]
            assert not [line for line in imports if "flask" in line or "gunicorn" in line], name


def _bench_help(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "service", "bench", "--help"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_the_bench_runs_from_a_checkout_and_says_so_elsewhere(tmp_path: Path) -> None:
    """``python -m`` finds ``tools`` in the current folder; an installed service has none."""
    here = _bench_help(REPO_ROOT, dict(os.environ))
    assert here.returncode == 0 and "--quick" in here.stdout, here.stderr
    installed = tmp_path / "site-packages"  # the service alone, as a wheel installs it
    installed.mkdir()
    (installed / "service").symlink_to(REPO_ROOT / "service")
    elsewhere = _bench_help(tmp_path, {**os.environ, "PYTHONPATH": str(installed)})
    assert elsewhere.returncode == 2 and elsewhere.stdout == "", elsewhere.stderr
    assert "from the root of a source checkout" in elsewhere.stderr
