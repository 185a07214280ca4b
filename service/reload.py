"""New, replaced and removed model folders while serving, and the V2 load/unload requests.

Every ``repository.poll_interval_s`` each worker process takes a fingerprint of every
``<name>/<version>/`` folder (each file's path, size, mtime and inode, and the folder's own
inode: a ``stat`` per file, no reading) and compares it with what it serves:

- a folder that is new or whose fingerprint changed is loaded once it is *settled*: its
  fingerprint the same in two polls in a row and its manifest and model file present. A
  folder still being copied changes between polls and is left alone; publishing by ``mv`` of
  a finished folder (a rename: atomic) is what the README recommends;
- a version folder that is gone, in two polls in a row, is removed (its requests in flight
  finish first); one poll is not enough, so replacing a folder by ``mv old away; mv new in``
  does not take the version away between the two renames;
- loads run one at a time per worker (:meth:`ModelRepository.load_folder`), on a thread of
  their own, swapped in when warm.

The V2 repository extension's ``load`` and ``unload`` (:mod:`service.routes.v2_repository`)
write to the replica's :class:`~service.control.Control`, apply it in their own worker at once
and answer; the other workers follow on their next poll. ``load`` syncs a name with its
folders at once, settled or not, and retries folders that failed; ``unload`` stops serving
every version of a name until it is loaded again. With polling off (0), folders are only
read at start-up and on ``load``, as Triton's explicit model control; the workers of a
replica still poll the control file every :data:`CONTROL_POLL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from service.control import Control, ControlState
from service.errors import InvalidInput, ModelNotFound
from service.manifest import MANIFEST_FILENAME, MODEL_FILENAME
from service.model_dir import scan
from service.repository import Key, ModelRepository
from service.runtime.threads import CpuRunner

log = logging.getLogger(__name__)
CONTROL_POLL_S = 2.0  # with folder polling off, how often workers read the control file
_FILES_PER_FOLDER = 1000  # a model folder has a handful; beyond this it is not one

FileStat = tuple[str, int, int, int]  # relative path, size, mtime (ns), inode


@dataclass(frozen=True)
class Folder:
    path: Path
    fingerprint: tuple[FileStat, ...]

    @property
    def key(self) -> Key:
        return self.path.parent.name, self.path.name

    def complete(self) -> bool:
        """The manifest and the model file it names are present (reads the manifest)."""
        model_file = _model_file(self.path)
        return model_file is not None and (self.path / model_file).is_file()


def _model_file(path: Path) -> str | None:
    """The model file the manifest names, or ``None`` while there is no readable manifest."""
    try:
        raw = json.loads((path / MANIFEST_FILENAME).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    name = raw.get("model_file", MODEL_FILENAME) if isinstance(raw, dict) else None
    return name if isinstance(name, str) else None


def fingerprint(path: Path) -> Folder:
    """One folder's fingerprint (blocking: ``stat`` calls)."""
    stats: list[FileStat] = []
    own = path.stat()
    stats.append((".", 0, 0, own.st_ino))
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            file = Path(root, name)
            with contextlib.suppress(FileNotFoundError):  # deleted while we looked
                st = file.stat()
                stats.append((str(file.relative_to(path)), st.st_size, st.st_mtime_ns, st.st_ino))
        if len(stats) > _FILES_PER_FOLDER:  # not a model folder; enough to see it change
            break
    return Folder(path, tuple(stats))


def snapshot(model_dir: Path) -> dict[Key, Folder]:
    """Every version folder's fingerprint (blocking)."""
    folders: dict[Key, Folder] = {}
    for path in scan(model_dir):
        with contextlib.suppress(FileNotFoundError):  # removed while we looked
            folder = fingerprint(path)
            folders[folder.key] = folder
    return folders


@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    state: str
    reason: str


class Reloader:
    """Keeps one worker's repository in step with the folders and the control state."""

    def __init__(self, repository: ModelRepository, control: Control, cpu: CpuRunner) -> None:
        self.repository = repository
        self.control = control
        self._cpu = cpu
        self._model_dir = repository.settings.model_dir
        self._interval = repository.settings.repository.poll_interval_s
        self._applied: dict[Key, tuple[FileStat, ...]] = {}  # what is loaded (or failed)
        self._previous: dict[Key, Folder] = {}  # the last poll
        self._loads_seen: dict[str, int] = {}
        self._lock = asyncio.Lock()  # one pass at a time: polls and load/unload requests
        self._task: asyncio.Task[None] | None = None

    @property
    def watching(self) -> bool:
        return self._interval > 0

    async def start_up(self) -> None:
        """Load the repository as at start-up; remember what was loaded, start polling."""
        state, folders = await self._cpu.run(self._read)
        self._applied = {k: f.fingerprint for k, f in folders.items()}
        self._previous = folders
        self._loads_seen = dict(state.loads)
        await self.repository.load(skip=state.unloaded)
        interval = self._interval or (CONTROL_POLL_S if self.control.directory else 0)
        if interval > 0:
            self._task = asyncio.create_task(self._poll_forever(interval), name="reloader")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll()
            except Exception:  # a bad pass must not end the polling; the next one retries
                log.exception("polling %s failed", self._model_dir)

    def _read(self) -> tuple[ControlState, dict[Key, Folder]]:
        return self.control.read(), snapshot(self._model_dir)

    async def poll(self, forced: frozenset[str] = frozenset()) -> None:
        """One pass: apply the control state, then the folders' changes. ``forced`` names are
        synced with their folders now, settled or not, failures retried."""
        async with self._lock:
            state, folders = await self._cpu.run(self._read)
            # Load requests received by other workers: sync those names here too.
            requested = {n for n, c in state.loads.items() if c > self._loads_seen.get(n, 0)}
            self._loads_seen = dict(state.loads)
            await self._apply(state, folders, set(forced) | requested)

    async def _apply(
        self, state: ControlState, folders: dict[Key, Folder], forced: set[str]
    ) -> None:
        repository = self.repository
        repository.unloaded = state.unloaded
        for model in repository.all_models():
            key = (model.name, model.version)
            gone = key not in folders and (
                model.name in forced or (self.watching and key not in self._previous)
            )
            if model.name in state.unloaded or gone:
                repository.remove(*key)
                self._applied.pop(key, None)
        for failure in list(repository.failures):
            key = (failure.name, failure.version)
            if key not in folders or failure.name in state.unloaded:
                repository.forget_failure(*key)
                self._applied.pop(key, None)
        for key, folder in sorted(folders.items()):
            if self._should_load(key, folder, state, forced):
                self._applied[key] = folder.fingerprint
                await repository.load_folder(folder.path)
        self._previous = folders

    def _should_load(self, key: Key, folder: Folder, state: ControlState, forced: set[str]) -> bool:
        name = key[0]
        if name in state.unloaded:
            return False
        changed = self._applied.get(key) != folder.fingerprint
        if name in forced:
            return changed or not self.repository.is_loaded(*key)
        previous = self._previous.get(key)
        settled = previous is not None and previous.fingerprint == folder.fingerprint
        # Last: it reads the manifest, which only a changed and settled folder needs.
        return self.watching and changed and settled and folder.complete()

    async def load(self, name: str) -> None:
        """The V2 ``load``: every worker syncs ``name`` with its folders; this one now.

        Raises :class:`ModelNotFound` when there is no folder for ``name`` and
        :class:`InvalidInput` (400 on ``/v2``, as Triton) when no version of it loaded.
        """
        if not await self._cpu.run(self._has_folder, name):
            raise ModelNotFound(
                f"no model folder {name!r} under the model directory", field="model"
            )
        state = await self._cpu.run(self.control.request_load, name)
        self._loads_seen[name] = state.loads[name]
        await self.poll(frozenset({name}))
        if not self.repository.versions(name):
            failure = self.repository.failure_for(name)
            reason = failure.reason if failure is not None else "no version folder loaded"
            raise InvalidInput(f"model {name!r} failed to load: {reason}", field="model")

    async def unload(self, name: str) -> None:
        """The V2 ``unload``: every worker stops serving ``name``; this one now."""
        if not self.repository.versions(name) and not await self._cpu.run(self._has_folder, name):
            raise ModelNotFound(f"no model named {name!r}", field="model")
        await self._cpu.run(self.control.request_unload, name)
        await self.poll()

    def _has_folder(self, name: str) -> bool:
        return any(path.parent.name == name for path in scan(self._model_dir))

    async def index(self) -> list[IndexEntry]:
        """Every version folder, and every version still served whose folder is gone."""
        folders = await self._cpu.run(snapshot, self._model_dir)
        keys = set(folders) | {(m.name, m.version) for m in self.repository.all_models()}
        return [IndexEntry(n, v, *self.repository.state(n, v)) for n, v in sorted(keys)]
