"""The README's console blocks, run against a live server: what they show is what they print.

Every ```console block of README.md (except those marked ``<!-- not run -->``) is run line by
line in an empty folder, as a reader would from a second terminal, against
``python -m service serve`` on a free port standing in for the README's 127.0.0.1:8000. The
interpreter running the tests stands in for the project's ``.venv``. Outputs are compared as
``tests/docs/console.py`` says (``…`` elides, decimals within 0.05, the rest exact). When an
answer changes on purpose, paste the command's new output into the README.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import REPO_ROOT
from tests.docs.console import console_blocks, mismatch
from tools.ports import free_port

pytestmark = pytest.mark.slow

README = REPO_ROOT / "README.md"
README_ADDRESS = "127.0.0.1:8000"
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSERVE_")}
    command = [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server was not ready within 120 s"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=60)


def _reader_folder(tmp_path: Path) -> Path:
    """An empty folder whose ``.venv/bin/activate`` puts the tests' interpreter first."""
    activate = tmp_path / ".venv" / "bin" / "activate"
    activate.parent.mkdir(parents=True)
    activate.write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    return tmp_path


def test_quick_start_commands_are_the_ones_tested() -> None:
    """The README's two commands are what CI and the fresh-clone tests run, on its address."""
    quick_start = README.read_text().split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", quick_start, re.DOTALL)
    assert block is not None
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make serve", "make test"]  # tests/docs/test_fresh_clone.py runs these
    assert (REPO_ROOT / ".ci" / "run").read_text().rstrip().endswith("\nmake test")
    makefile = (REPO_ROOT / "Makefile").read_text()
    defaults = dict(re.findall(r"^(HOST|PORT) \?= (\S+)$", makefile, re.M))
    assert f"{defaults['HOST']}:{defaults['PORT']}" == README_ADDRESS
    assert f"serves the bundled models on http://{README_ADDRESS}" in block.group(1)


def test_readme_has_runnable_blocks() -> None:
    blocks = console_blocks(README.read_text())
    commands = [c.line for b in blocks for c in b.commands]
    assert any("digit.png" in c and "save" in c for c in commands), "the quick start draws it"
    assert any(c.startswith("curl") and "/v1/predict" in c for c in commands)


def test_readme_console_blocks_print_what_they_show(address: str, tmp_path: Path) -> None:
    folder = _reader_folder(tmp_path)
    sourced: list[str] = []  # `. file` lines: they set up the shell for the lines after them
    for block in console_blocks(README.read_text()):
        for command in block.commands:
            line = command.line.replace(README_ADDRESS, address)
            if line.startswith((". ", "source ")):
                sourced.append(line)
                script = sourced
            else:
                script = [*sourced, line]
            run = subprocess.run(
                ["bash", "-c", "set -e\n" + "\n".join(script)],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=120,
            )
            output = run.stdout + run.stderr
            where = f"README.md line {block.start_line}: $ {command.line}"
            assert run.returncode == 0, f"{where}\nexited {run.returncode}:\n{output}"
            why = mismatch(command.expected, output, TOLERANCE)
            assert why is None, f"{where}\nprints something else ({why}):\n{output}"
