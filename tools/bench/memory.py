"""Resident memory of a process tree, read from ``/proc`` (Linux only; no psutil needed).

A server is its master process and every descendant (uvicorn or gunicorn workers). RSS is
summed over them, so pages they share (the Python runtime, libraries mapped by all) count
once per process: it overstates the physical memory used but is stable to compare over time.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


def _children_by_parent() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process exited while we looked
            continue
        # The command name (field 2) may hold spaces and parentheses; fields follow the last ")".
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def parent_of(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    tree = _children_by_parent()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def _rss_kib(pid: int) -> int:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0  # exited, or a kernel thread without VmRSS


def tree_rss_mb(pid: int) -> float:
    return sum(_rss_kib(p) for p in process_tree(pid)) / 1024.0


def supported() -> bool:
    return os.path.exists(_PROC / "self" / "status")


def growth_pct(samples: list[tuple[float, float]]) -> float:
    """Growth of RSS over the second half of a run: last sample vs the one at half time."""
    if len(samples) < 2:
        return 0.0
    half = samples[-1][0] / 2.0
    reference = next(mb for t, mb in samples if t >= half)
    return (samples[-1][1] - reference) / reference * 100.0 if reference > 0 else 0.0
