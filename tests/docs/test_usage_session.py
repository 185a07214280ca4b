"""docs/usage-session.md is what its commands print today.

The test re-records the session with ``scripts/usage-session.sh`` (a live two-worker server,
every command of the document run again) into a temporary file and compares it with the
committed document after blanking only what changes from run to run: request ids, timings,
warm-up times, process ids, the recording date, file owners and times, and the order in which
two workers' log lines interleave. Probabilities and other decimals match within 0.05;
everything else — fields, labels, status codes, error messages, ports, sizes, batching
settings, the OpenAPI listing — must be equal. After a change to what the service answers,
re-record the document with ``make usage-session`` and review its diff.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import REPO_ROOT
from tests.docs.console import mismatch
from tools.ports import free_port

pytestmark = pytest.mark.slow

DOC = REPO_ROOT / "docs" / "usage-session.md"
SCRIPT = REPO_ROOT / "scripts" / "usage-session.sh"
# The script's default port, which the committed document shows; the test serves on a free one.
DOC_PORT = re.search(r"PORT=\$\{PORT:-(\d+)\}", SCRIPT.read_text()).group(1)  # type: ignore[union-attr]
TOLERANCE = 0.05
LOG_COMMANDS = ("$ python -m service serve", "$ kill ")

VARIABLE = [
    (re.compile(r"\b[0-9a-f]{32}\b"), "<request id>"),
    (re.compile(r"(process) \[\d+\]"), r"\1 [<pid>]"),
    (re.compile(r"recorded on \d{4}-\d\d-\d\d"), "recorded on <date>"),
    (re.compile(r"\(warm-up [\d.]+ s\)"), "(warm-up <s> s)"),
    (re.compile(r"drain: done in [\d.]+ s"), "drain: done in <s> s"),
    (
        re.compile(r'("(?:decode_features|queue|inference|total)"): -?[\d.]+(?:e-?\d+)?'),
        r"\1: <ms>",
    ),
    # ls -l: links, owner, group, size, time -> only the size is kept
    (
        re.compile(r"^([-dlrwx]{10}) +\d+ +\S+ +\S+ +(\d+) +\w{3} +\d+ +[\d:]{4,5} ", re.M),
        r"\1 <links> <owner> <group> \2 <mtime> ",
    ),
]


def normalise(text: str) -> str:
    for pattern, replacement in VARIABLE:
        text = pattern.sub(replacement, text)
    # Two workers start and stop concurrently: their log lines interleave in any order.
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if (
            lines[i] == "```console"
            and i + 1 < len(lines)
            and lines[i + 1].startswith(LOG_COMMANDS)
        ):
            end = lines.index("```", i + 1)
            out += [lines[i + 1], *sorted(lines[i + 2 : end])]
            i = end
            continue
        i += 1
    return "\n".join(out) + "\n"


def test_usage_session_matches_a_fresh_recording(tmp_path: Path) -> None:
    port = free_port()
    recorded = tmp_path / "usage-session.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSERVE_")}
    env |= {
        "PORT": str(port),
        "OUT": str(recorded),
        # The interpreter running the tests stands in for the project's .venv.
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    }
    env.pop("MODEL_DIR", None)
    run = subprocess.run(
        [str(SCRIPT)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    fresh = re.sub(rf"(?<!\d){port}(?!\d)", DOC_PORT, recorded.read_text())
    want, got = normalise(DOC.read_text()), normalise(fresh)
    why = mismatch(want, got, TOLERANCE)
    if why is not None:
        diff = difflib.unified_diff(
            want.splitlines(), got.splitlines(), "committed", "recorded now", lineterm="", n=1
        )
        pytest.fail(
            f"docs/usage-session.md no longer matches what its commands print ({why}).\n"
            "Re-record it with `make usage-session` (scripts/usage-session.sh) and review the "
            "diff.\n" + "\n".join(list(diff)[:120])
        )
