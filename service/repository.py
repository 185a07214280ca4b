"""The model repository: ``model_dir/<name>/<version>/`` folders -> ready, warmed models.

Each folder's manifest is validated, its tokenizer and ONNX Runtime session opened, every batch
shape warmed up, and a :class:`~service.runtime.batching.Batcher` started with the manifest's
batching overridden by the settings. A folder that fails to load is kept as a
:class:`LoadFailure` with its reason; the others still serve.

``name`` resolves to its latest version (numeric-aware order: ``10`` after ``9``, ``1.10``
after ``1.9``); ``name`` plus ``version`` addresses any loaded version.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image
from tokenizers import Tokenizer

from service.errors import ModelNotFound, ModelNotReady
from service.features.text import load_tokenizer
from service.manifest import (
    MANIFEST_FILENAME,
    AudioRecipe,
    BatchingSpec,
    ImageRecipe,
    Manifest,
    Modality,
    TextRecipe,
    load_manifest,
)
from service.metrics import Metrics
from service.ood import OodCheck, ood_check
from service.runtime.batching import Batcher
from service.runtime.extract import extract_row
from service.runtime.session import ModelSession, resolve_providers
from service.runtime.threads import CpuRunner
from service.runtime.warmup import warm_up
from service.settings import Limits, Settings

log = logging.getLogger(__name__)
PREFERRED_DEFAULT = "digits-xattn"


@dataclass
class LoadedModel:
    """One servable model version. Satisfies ``extract.FeatureSource``."""

    manifest: Manifest
    path: Path
    tokenizer: Tokenizer | None
    session: ModelSession
    batching: BatchingSpec
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


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Numeric-aware sort key: digit runs compare as numbers, and before letters."""
    parts = re.findall(r"\d+|[^\d]+", version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def _effective_batching(manifest: Manifest, settings: Settings) -> BatchingSpec:
    override = settings.batching
    return BatchingSpec(
        max_batch_size=override.max_batch_size or manifest.batching.max_batch_size,
        max_wait_ms=(
            manifest.batching.max_wait_ms if override.max_wait_ms is None else override.max_wait_ms
        ),
    )


def _open_model(path: Path, settings: Settings) -> tuple[Manifest, Tokenizer | None, ModelSession]:
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
    runtime = settings.runtime
    session = ModelSession(
        path / manifest.model_file,
        providers=resolve_providers(runtime.providers),
        intra_op_threads=runtime.intra_op_threads,
        inter_op_threads=runtime.inter_op_threads,
    )
    return manifest, tokenizer, session


def _synthetic_uploads(manifest: Manifest) -> dict[Modality, bytes | str]:
    """One small upload per modality, encoded as clients send them."""
    uploads: dict[Modality, bytes | str] = {}
    for modality in manifest.modality_order:
        recipe = manifest.recipe(modality)
        if isinstance(recipe, ImageRecipe):
            buf = io.BytesIO()
            Image.new("RGB", (recipe.width * 2, recipe.height * 2), "white").save(buf, "PNG")
            uploads[modality] = buf.getvalue()
        elif isinstance(recipe, AudioRecipe):
            buf = io.BytesIO()
            rate = 44_100 if recipe.sample_rate != 44_100 else 48_000  # exercise resampling
            sf.write(buf, np.zeros(rate // 2, dtype=np.float32), rate, format="WAV")
            uploads[modality] = buf.getvalue()
        else:
            uploads[modality] = "warm up"
    return uploads


def warm_features(model: LoadedModel, limits: Limits) -> float:
    """Decode and featurise one synthetic upload per modality; returns the seconds it took.

    The first feature extraction in a process pays one-off costs (librosa's import for the
    mel filterbank, Pillow's codec plug-ins, soxr's and numpy's FFT plans: up to a second),
    which would otherwise land on the first client.
    """
    start = time.perf_counter()
    extract_row(model, _synthetic_uploads(model.manifest), limits)
    return time.perf_counter() - start


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + "..."


def scan(model_dir: Path) -> list[Path]:
    """Every ``<name>/<version>`` folder, hidden ones skipped."""
    if not model_dir.is_dir():
        return []
    return sorted(
        version
        for name in model_dir.iterdir()
        if name.is_dir() and not name.name.startswith(".")
        for version in name.iterdir()
        if version.is_dir() and not version.name.startswith(".")
    )


class ModelRepository:
    def __init__(self, settings: Settings, cpu: CpuRunner, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self._cpu = cpu
        self._metrics = metrics
        self._models: dict[str, dict[str, LoadedModel]] = {}
        self.failures: list[LoadFailure] = []
        self.loaded = False
        self.closing = False

    async def load(self) -> None:
        """Load every model folder, concurrently; failures are recorded, never raised."""
        paths = scan(self.settings.model_dir)
        # The CPU runner's limiter bounds how many load at once (sessions, warm-up).
        results = await asyncio.gather(
            *(self._load_one(path) for path in paths), return_exceptions=True
        )
        for path, result in zip(paths, results, strict=True):
            if isinstance(result, LoadedModel):
                self._models.setdefault(result.name, {})[result.version] = result
                log.info(
                    "model %s/%s ready on %s (warm-up %.2f s)",
                    result.name,
                    result.version,
                    ",".join(result.session.providers_in_use),
                    result.warmup_s,
                )
            elif isinstance(result, Exception):
                failure = LoadFailure(path.parent.name, path.name, path, _reason(result))
                log.error(
                    "model %s/%s failed to load: %s",
                    failure.name,
                    failure.version,
                    failure.reason,
                    exc_info=result,
                )
                self.failures.append(failure)
            else:  # CancelledError or another BaseException: not a model's fault
                raise result
        if not self._models and not self.failures:
            log.warning("no model folders under %s", self.settings.model_dir)
        self.loaded = True

    async def _load_one(self, path: Path) -> LoadedModel:
        if not (path / MANIFEST_FILENAME).is_file():
            raise FileNotFoundError(f"no {MANIFEST_FILENAME} in {path}")
        manifest, tokenizer, session = await self._cpu.run(_open_model, path, self.settings)
        batching = _effective_batching(manifest, self.settings)
        warmup_s = await self._cpu.run(warm_up, session, manifest, batching.max_batch_size)
        batcher = Batcher(
            session,
            manifest,
            max_batch_size=batching.max_batch_size,
            max_wait_ms=batching.max_wait_ms,
            max_queue=self.settings.batching.max_queue,
            threads=self.settings.runtime.feature_threads,
            observer=None if self._metrics is None else self._metrics.observer(manifest.name),
        )
        model = LoadedModel(
            manifest, path, tokenizer, session, batching, batcher, warmup_s, ood_check(manifest)
        )
        model.warmup_s += await self._cpu.run(warm_features, model, self.settings.limits)
        await batcher.start()
        return model

    async def close(self) -> None:
        """Stop taking requests and drain every batcher."""
        self.closing = True
        for model in self.all_models():
            await model.batcher.close(self.settings.drain_timeout_s)

    def all_models(self) -> list[LoadedModel]:
        return [m for versions in self._models.values() for m in versions.values()]

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[str]:
        return sorted(self._models.get(name, {}), key=version_key)

    @property
    def default_name(self) -> str | None:
        if self.settings.default_model:
            return self.settings.default_model
        if PREFERRED_DEFAULT in self._models:
            return PREFERRED_DEFAULT
        names = self.names()
        return names[0] if names else None

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
        return status

    @property
    def ready(self) -> bool:
        statuses = self.readiness()
        return (
            self.loaded
            and not self.closing
            and bool(self._models)
            and all(s == "ready" for s in statuses.values())
        )
