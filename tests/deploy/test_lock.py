"""deploy/requirements.lock, which the image installs with --require-hashes, is current.

It must pin every dependency of ``[project.dependencies]`` at a version the project allows,
with hashes, and nothing of the export or dev extras. When this fails, refresh it with the
command in the README (Deployment and scaling, Containers).
"""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from service.settings import REPO_ROOT

LOCK = REPO_ROOT / "deploy" / "requirements.lock"


def _pins() -> dict[str, tuple[Version, int]]:
    """Name -> (pinned version, number of hashes)."""
    pins: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=\S)", LOCK.read_text()):
        head = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if head:
            hashes = len(re.findall(r"--hash=sha256:[0-9a-f]{64}", block))
            pins[canonicalize_name(head[1])] = (Version(head[2]), hashes)
    return pins


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())[
        "project"
    ]
    return project


def test_every_dependency_is_pinned_within_its_range_with_hashes() -> None:
    pins = _pins()
    assert pins and all(count >= 1 for _, count in pins.values())
    dependencies = _project()["dependencies"]
    assert isinstance(dependencies, list)
    for line in dependencies:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in {LOCK.name}: refresh it (README)"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), name


def test_no_training_or_dev_package_is_locked() -> None:
    pins = _pins()
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    for line in extras["export"]:
        assert canonicalize_name(Requirement(line).name) not in pins, line
    for name in ("torch", "librosa", "numba", "llvmlite", "scikit-learn", "pytest"):
        assert name not in pins, name
