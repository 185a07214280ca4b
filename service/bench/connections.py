"""Which worker process holds the clients' connections, read from ``/proc`` (Linux only).

Workers that share one listening socket accept connections as they wake up, so a burst of
keep-alive connections can land mostly on one worker and stay there for the whole run, leaving
the other cores idle. The benchmark samples this once per run: a skewed split explains a low
throughput that the profile of a single worker would not.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from service.bench.memory import parent_of, process_tree

_ESTABLISHED = "01"
_LISTEN = "0A"


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def _tcp_sockets(port: int) -> dict[int, str]:
    """Socket inode -> TCP state for sockets whose local port is ``port``."""
    sockets: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rpartition(":")[2], 16) == port:
                    sockets[int(fields[9])] = fields[3]
    return sockets


def connections_by_worker(root_pid: int, port: int) -> dict[int, int]:
    """Worker pid -> established connections it holds on ``port``.

    Workers are the processes of the tree that listen on ``port``; a supervisor that listens but
    leaves accepting to its workers (uvicorn's and gunicorn's masters) is left out.
    """
    sockets = _tcp_sockets(port)
    counts: dict[int, int] = {}
    for pid in process_tree(root_pid):
        states = [sockets[i] for i in _socket_inodes(pid) if i in sockets]
        if _LISTEN in states:
            counts[pid] = states.count(_ESTABLISHED)
    for parent in {parent_of(pid) for pid in counts}:
        if parent is not None:
            counts.pop(parent, None)
    return counts


def connections_per_worker(root_pid: int, port: int) -> list[int]:
    """Established connections per worker, largest first."""
    return sorted(connections_by_worker(root_pid, port).values(), reverse=True)
