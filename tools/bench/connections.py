"""Which worker process holds the clients' connections, read from ``/proc`` (Linux only).

Workers that share one listening socket accept connections as they wake up, so a burst of
keep-alive connections can land mostly on one worker and stay there for the whole run, leaving
the other cores idle. The benchmark samples this once per run: a skewed split explains a low
throughput that the profile of a single worker would not.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from tools.bench.memory import parent_of, process_tree

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


def listening_workers(root_pid: int, port: int) -> list[int]:
    """The processes of the tree that accept connections on ``port``.

    Those that listen, less a supervisor that listens but leaves accepting to its workers
    (uvicorn's and gunicorn's masters).
    """
    sockets = _tcp_sockets(port)
    listening = [
        pid
        for pid in process_tree(root_pid)
        if any(sockets.get(inode) == _LISTEN for inode in _socket_inodes(pid))
    ]
    parents = {parent_of(pid) for pid in listening}
    return [pid for pid in listening if pid not in parents]


def _established_by(workers: list[int], port: int) -> dict[int, int]:
    # Connections of a server that closes each one after its answer (gunicorn's sync workers)
    # live a few milliseconds: the table is read on both sides of the workers' file
    # descriptors, so one opened or closed in between is still matched. (Reading the table,
    # then walking /proc for the process tree, missed every one of them: 0/0.)
    before = _tcp_sockets(port)
    held = {pid: _socket_inodes(pid) for pid in workers}
    after = _tcp_sockets(port)
    established = {
        inode
        for table in (before, after)
        for inode, state in table.items()
        if state == _ESTABLISHED
    }
    return {pid: len(inodes & established) for pid, inodes in held.items()}


def connections_by_worker(
    root_pid: int, port: int, *, samples: int = 1, interval_s: float = 0.02
) -> dict[int, int]:
    """Worker pid -> established connections it holds on ``port``, the most seen in ``samples``.

    One sample is enough for keep-alive clients, whose connections stay put; several show
    which workers take part when each connection lasts only one request.
    """
    workers = listening_workers(root_pid, port)
    most = dict.fromkeys(workers, 0)
    for sample in range(samples):
        if sample:
            time.sleep(interval_s)
        for pid, count in _established_by(workers, port).items():
            most[pid] = max(most[pid], count)
    return most


def connections_per_worker(root_pid: int, port: int, *, samples: int = 1) -> list[int]:
    """Established connections per worker, largest first."""
    counts = connections_by_worker(root_pid, port, samples=samples)
    return sorted(counts.values(), reverse=True)
