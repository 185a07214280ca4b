"""Load and unload requests, shared by the worker processes of one replica.

A replica runs several worker processes and a ``POST /v2/repository/models/{m}/unload``
reaches only one of them. The request is therefore written down where every worker reads it:
``repository.json`` in ``repository.control_dir``, a folder ``serve --workers N`` creates per
replica (as it does for the Prometheus files) and removes on exit. Each worker's
:class:`~service.reload.Reloader` reads it on every poll and follows within one interval.
Without a folder (one process, the tests' apps) the state lives in this object only.

The state is small: the names unloaded, and per name a counter of load requests, so that a
``load`` that only retries a failed folder (nothing else changed) still reaches every worker.
It does not outlive the replica: after a restart the model folders alone decide what is served.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
STATE_FILE = "repository.json"
LOCK_FILE = "repository.lock"


@dataclass(frozen=True)
class ControlState:
    unloaded: frozenset[str] = frozenset()
    loads: dict[str, int] = field(default_factory=dict)  # name -> load requests so far

    def to_json(self) -> str:
        return json.dumps({"unloaded": sorted(self.unloaded), "loads": self.loads})

    @classmethod
    def from_json(cls, text: str) -> ControlState:
        raw = json.loads(text)
        return cls(
            frozenset(str(n) for n in raw.get("unloaded", [])),
            {str(n): int(c) for n, c in raw.get("loads", {}).items()},
        )


class Control:
    """The shared state; every method blocks (file I/O), so callers run them off the loop."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._state = ControlState()

    def read(self) -> ControlState:
        if self.directory is None:
            return self._state
        try:
            return ControlState.from_json((self.directory / STATE_FILE).read_text("utf-8"))
        except FileNotFoundError:
            return ControlState()
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # Only this module writes the file, atomically; a bad one is someone else's edit.
            log.warning("ignoring %s: %s", self.directory / STATE_FILE, exc)
            return ControlState()

    def request_load(self, name: str) -> ControlState:
        with self._locked() as state:
            loads = state.loads | {name: state.loads.get(name, 0) + 1}
            return self._write(ControlState(state.unloaded - {name}, loads))

    def request_unload(self, name: str) -> ControlState:
        with self._locked() as state:
            return self._write(ControlState(state.unloaded | {name}, state.loads))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[ControlState]:
        """The current state, with the other workers' writes held off until the block ends."""
        if self.directory is None:
            yield self._state
            return
        with open(self.directory / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self.read()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, state: ControlState) -> ControlState:
        if self.directory is None:
            self._state = state
            return state
        # Written aside and renamed: a worker reading meanwhile sees the old or the new file.
        temporary = self.directory / f".{STATE_FILE}.{os.getpid()}"
        temporary.write_text(state.to_json(), "utf-8")
        temporary.replace(self.directory / STATE_FILE)
        return state
