"""Every ``--help`` reads as plain text: no reStructuredText quoting, whole sentences."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from service.helptext import plain
from service.settings import REPO_ROOT

EXPORT_COMMANDS = ["dataset", "train", "export", "build", "build-all", "evaluate", "docs", "byom"]
COMMANDS = [
    ["service"],
    ["service", "serve"],
    ["service", "bench"],
    ["tools.bench"],
    ["tools.bench.profile"],
    ["service.healthcheck"],
    ["tools.replicas"],
    ["export"],
    *(["export", command] for command in EXPORT_COMMANDS),
]


def _help(command: list[str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *command, "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_no_rst_quoting(command: list[str]) -> None:
    text = _help(command)
    assert text.startswith("usage:")
    assert "``" not in text
    assert not re.search(r":[a-z]+:`", text)  # :mod:`...`, :class:`...`


def test_serve_help_says_what_the_batching_flags_override() -> None:
    text = " ".join(_help(["service", "serve"]).split())  # argparse wraps lines
    assert "override every manifest's" not in text
    assert "overriding the max_batch_size in each manifest" in text
    assert "--allow-empty" in text and "--model-dir" in text


def test_plain_removes_literals_and_roles() -> None:
    doc = "``serve`` uses :mod:`service.cli` and :class:`~service.settings.Settings`."
    assert plain(doc) == "serve uses service.cli and Settings."
