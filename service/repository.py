"""The model repository: ``model_dir/<name>/<version>/`` folders -> ready, warmed models.

Each folder's manifest is validated, its tokenizer and ONNX Runtime session opened, every batch
shape warmed up, and a :class:`~service.runtime.batching.Batcher` started with the manifest's
batching overridden by the settings. A folder that fails to load is kept as a
:class:`LoadFailure` with its reason; the others still serve.

``name`` resolves to its latest version (numeric-aware order: ``10`` after ``9``, ``1.10``
after ``1.9``); ``name`` plus ``version`` addresses any loaded version.

While serving, :mod:`service.reload` decides what changes and calls :meth:`load_folder` and
:meth:`remove`. A version is loaded and warmed on a thread of its own and then swapped in with
one dict assignment on the event loop, so a request resolves either the old model or the new
one, never a half-loaded one. The replaced or removed version is retired: no longer resolved,
its batcher finishes what it was given and closes once quiet (see ``Batcher.retire``), and its
ONNX Runtime session is released with the last reference. A replacement that fails to load is
recorded as a :class:`LoadFailure` and the old version keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from service.errors import ModelNotFound, ModelNotReady
from service.features.text import load_tokenizer
from service.manifest import MANIFEST_FILENAME, Manifest, TextRecipe, load_manifest
from service.metrics import Metrics
from service.model_dir import scan
from service.ood import OodCheck, ood_check
from service.runtime.batching import Batcher
from service.runtime.session import ModelSession
from service.runtime.threads import CpuRunner
from service.runtime.warmup import warm_up
from service.settings import ModelBatching, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenedModel:
    """What opening a version folder gives, before warm-up. Satisfies ``warmup.Warmable``."""

    manifest: Manifest
    tokenizer: Tokenizer | None
    session: ModelSession


@dataclass
class LoadedModel:
    """One servable model version. Satisfies ``extract.FeatureSource``."""

    manifest: Manifest
    path: Path
    tokenizer: Tokenizer | None
    session: ModelSession
    batching: ModelBatching
    batcher: Batcher
    warmup_s: float
    ood: OodCheck | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version


@dataclass(frozen=True)
class LoadFailure:
    name: str
    version: str
    path: Path
    reason: str
    # A folder that fails at start-up makes the replica unready (an image that cannot serve
    # its models should not take traffic); one added while serving must not take every
    # replica that shares the folder out of rotation, so it is only reported.
    at_startup: bool = True


Key = tuple[str, str]  # (name, version)


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Numeric-aware sort key: digit runs compare as numbers, and before letters."""
    parts = re.findall(r"\d+|[^\d]+", version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def _open_model(path: Path, settings: Settings) -> OpenedModel:
    """The blocking part of loading one folder (runs in a worker thread)."""
    manifest = load_manifest(path)
    if (manifest.name, manifest.version) != (path.parent.name, path.name):
        raise ValueError(
            f"manifest says {manifest.name}/{manifest.version} but the folder is "
            f"{path.parent.name}/{path.name}"
        )
    tokenizer = None
    text = manifest.modalities.text
    if isinstance(text, TextRecipe):
        tokenizer = load_tokenizer(path / text.tokenizer_dir, text.max_length)
    session = ModelSession.open(path / manifest.model_file, settings.runtime)
    return OpenedModel(manifest, tokenizer, session)


def _log_ready(model: LoadedModel, *, replaced: bool = False) -> None:
    log.info(
        "model %s/%s %s on %s (warm-up %.2f s)",
        model.name,
        model.version,
        "replaced; the new one is ready" if replaced else "ready",
        ",".join(model.session.providers_in_use),
        model.warmup_s,
    )


# An absolute POSIX path: a slash not preceded by a name character, then path segments.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~/-])/(?:[\w.@+~-]+/)*[\w.@+~-]+/?")


def public_reason(exc: BaseException, model_dir: Path) -> str:
    """Why a folder failed, fit for answers: paths relative to ``model_dir``, no other path.

    Answers (``/readyz``, ``/v1/models``, 503s) must not show where the server keeps its files:
    ``/srv/models/m/1/model.onnx`` becomes ``m/1/model.onnx`` and a path outside the model
    folder (a library's, a temporary file's) is reduced to its last part. The log keeps the
    whole message.
    """
    text = str(exc).strip() or type(exc).__name__
    for root in {str(model_dir.resolve()), str(model_dir.absolute())}:
        text = text.replace(root.rstrip("/") + "/", "")
    text = _ABSOLUTE_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], text)
    return text if len(text) <= 2000 else text[:2000] + "..."


class ModelRepository:
    def __init__(self, settings: Settings, cpu: CpuRunner, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self._cpu = cpu
        self._metrics = metrics
        self._models: dict[str, dict[str, LoadedModel]] = {}
        self.failures: list[LoadFailure] = []
        self.loaded = False
        self.closing = False
        self.unloaded: frozenset[str] = frozenset()  # by the V2 repository's unload
        self._loading: set[Key] = set()
        self._retiring: dict[Key, LoadedModel] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self._loader: CpuRunner | None = None

    async def load(self, skip: frozenset[str] = frozenset()) -> None:
        """Load every model folder (but the names in ``skip``), concurrently; failures are
        recorded, never raised."""
        paths = [p for p in scan(self.settings.model_dir) if p.parent.name not in skip]
        self.unloaded = skip
        # The CPU runner's threads bound how many load at once (sessions, warm-up).
        results = await asyncio.gather(
            *(self._load_one(path, self._cpu) for path in paths), return_exceptions=True
        )
        for path, result in zip(paths, results, strict=True):
            if isinstance(result, LoadedModel):
                self._models.setdefault(result.name, {})[result.version] = result
                _log_ready(result)
            elif isinstance(result, Exception):
                self._record_failure(path, result, at_startup=True)
            else:  # CancelledError or another BaseException: not a model's fault
                raise result
        if not self._models and not self.failures:
            log.warning("no model folders under %s", self.settings.model_dir)
        self.loaded = True

    def _record_failure(self, path: Path, exc: Exception, *, at_startup: bool) -> LoadFailure:
        reason = public_reason(exc, self.settings.model_dir)
        failure = LoadFailure(path.parent.name, path.name, path, reason, at_startup)
        # The log keeps the whole message (paths included); answers get the public reason.
        log.error(
            "model %s/%s failed to load: %s",
            failure.name,
            failure.version,
            exc,
            exc_info=exc,
        )
        self.forget_failure(failure.name, failure.version)
        self.failures.append(failure)
        return failure

    async def _load_one(self, path: Path, runner: CpuRunner) -> LoadedModel:
        if not (path / MANIFEST_FILENAME).is_file():
            raise FileNotFoundError(f"no {MANIFEST_FILENAME} in {path}")
        opened = await runner.run(_open_model, path, self.settings)
        manifest, session = opened.manifest, opened.session
        batching = self.settings.batching.for_model(manifest.batching, on_gpu=session.on_gpu)
        limits = self.settings.limits
        warmup_s = await runner.run(warm_up, opened, batching.max_batch_size, limits)
        batcher = Batcher(
            session,
            manifest,
            max_batch_size=batching.max_batch_size,
            max_wait_ms=batching.max_wait_ms,
            max_queue=batching.max_queue,
            max_request_rows_per_batch=batching.max_request_rows_per_batch,
            threads=self.settings.runtime.feature_threads,
            observer=None if self._metrics is None else self._metrics.observer(manifest.name),
        )
        model = LoadedModel(
            manifest, path, opened.tokenizer, session, batching, batcher, warmup_s,
            ood_check(manifest),
        )  # fmt: skip
        await batcher.start()
        return model

    async def load_folder(self, path: Path) -> LoadedModel | LoadFailure:
        """Load, warm and swap in one version folder while serving; the caller loads one at a
        time. On failure the version already serving (if any) stays."""
        key = (path.parent.name, path.name)
        if self._loader is None:
            # Not the app's runner: a load takes seconds and would hold up the V2 decoding
            # that runs there. One thread: at most one load at a time per worker.
            self._loader = CpuRunner(1, name="loader")
        self._loading.add(key)
        try:
            model = await self._load_one(path, self._loader)
        except Exception as exc:
            return self._record_failure(path, exc, at_startup=False)
        finally:
            self._loading.discard(key)
        if self.closing:
            await model.batcher.close(0)
            return model
        old = self._models.setdefault(model.name, {}).get(model.version)
        self._models[model.name][model.version] = model  # the swap: one assignment
        self.forget_failure(model.name, model.version)
        _log_ready(model, replaced=old is not None)
        if old is not None:
            self._retire(old)
        return model

    def remove(self, name: str, version: str) -> None:
        """Stop serving a version; in-flight requests finish on it (see :meth:`_retire`)."""
        versions = self._models.get(name, {})
        model = versions.pop(version, None)
        if not versions:
            self._models.pop(name, None)
        if model is not None:
            log.info("model %s/%s removed; draining", name, version)
            self._retire(model)

    def _retire(self, model: LoadedModel) -> None:
        key = (model.name, model.version)
        self._retiring[key] = model
        task = asyncio.create_task(self._drain(model), name=f"retire-{model.name}")
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain(self, model: LoadedModel) -> None:
        key = (model.name, model.version)
        try:
            await model.batcher.retire(self.settings.drain_timeout_s)
        finally:
            if self._retiring.get(key) is model:
                del self._retiring[key]
        log.info("model %s/%s (%s) drained and closed", model.name, model.version, model.path)

    def forget_failure(self, name: str, version: str) -> None:
        self.failures = [f for f in self.failures if (f.name, f.version) != (name, version)]

    def is_loaded(self, name: str, version: str) -> bool:
        return version in self._models.get(name, {})

    def state(self, name: str, version: str) -> tuple[str, str]:
        """The V2 repository index's ``state`` and ``reason`` for one version folder."""
        if self.is_loaded(name, version):
            return "READY", ""
        if (name, version) in self._loading:
            return "LOADING", ""
        if (name, version) in self._retiring:
            return "UNLOADING", "draining its requests in flight"
        if name in self.unloaded:
            return "UNAVAILABLE", "unloaded"
        if (failure := self.failure_for(name, version)) is not None:
            return "UNAVAILABLE", f"failed to load: {failure.reason}"
        return "UNAVAILABLE", "not loaded: new or changed since the last poll, or not settled yet"

    async def close(self) -> None:
        """Stop taking requests and drain every batcher, retiring ones included."""
        self.closing = True
        for model in self.all_models():
            await model.batcher.close(self.settings.drain_timeout_s)
        if self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)
        if self._loader is not None:
            self._loader.close()

    def all_models(self) -> list[LoadedModel]:
        return [m for versions in self._models.values() for m in versions.values()]

    def names(self) -> list[str]:
        return sorted(self._models)

    def knows(self, name: str) -> bool:
        """Whether ``name`` is a model folder this replica loaded or tried to load."""
        return name in self._models or any(f.name == name for f in self.failures)

    def versions(self, name: str) -> list[str]:
        return sorted(self._models.get(name, {}), key=version_key)

    @property
    def default_name(self) -> str | None:
        return self.settings.default_model_among(self.names())

    def failure_for(self, name: str, version: str | None = None) -> LoadFailure | None:
        matches = [f for f in self.failures if f.name == name]
        if version is not None:
            matches = [f for f in matches if f.version == version]
        return max(matches, key=lambda f: version_key(f.version), default=None)

    def get(self, name: str, version: str | None = None) -> LoadedModel:
        """The model serving ``name`` (its latest version unless ``version`` is given)."""
        if self.closing:
            raise ModelNotReady("the service is shutting down")
        versions = self._models.get(name, {})
        wanted = version or (self.versions(name)[-1] if versions else None)
        if wanted is not None and wanted in versions:
            return versions[wanted]
        if name in self.unloaded:
            raise ModelNotFound(
                f"model {name!r} is unloaded; POST /v2/repository/models/{name}/load loads it",
                field="model",
            )
        if any(n == name and version in (None, v) for n, v in self._loading):
            raise ModelNotReady(f"model {name!r} is loading; retry shortly")
        if (failure := self.failure_for(name, version)) is not None:
            raise ModelNotReady(
                f"model {name!r} version {failure.version!r} failed to load: {failure.reason}"
            )
        if not self.loaded:
            raise ModelNotReady("models are still loading")
        if versions:
            have = ", ".join(self.versions(name))
            raise ModelNotFound(
                f"model {name!r} has no version {version!r}; it has {have}", field="version"
            )
        known = ", ".join(self.names()) or "none"
        raise ModelNotFound(f"no model named {name!r}; the models are: {known}", field="model")

    def get_default(self, version: str | None = None) -> LoadedModel:
        name = self.default_name
        if name is None:
            raise ModelNotReady("no model is loaded")
        return self.get(name, version)

    def readiness(self) -> dict[str, str]:
        """Per model name: ``ready`` or why not (the body of ``/readyz``)."""
        status = {name: "ready" for name in self.names()}
        for failure in self.failures:
            status[f"{failure.name}/{failure.version}"] = f"failed: {failure.reason}"
        if (default := self.default_name) is not None and default not in self._models:
            status.setdefault(default, "failed: the default model is not loaded")
        for name, version in self._loading:
            status.setdefault(f"{name}/{version}", "loading")
        for name in self.unloaded:
            status.setdefault(name, "unloaded")
        return status

    @property
    def ready(self) -> bool:
        """Every folder present at start-up loaded (the folders added or replaced later are
        reported in :meth:`readiness` but do not make the replica unready)."""
        default = self.default_name
        return (
            self.loaded
            and not self.closing
            and bool(self._models)
            and not any(f.at_startup for f in self.failures)
            and (default is None or default in self._models)
        )
