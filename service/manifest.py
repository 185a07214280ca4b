"""The model manifest: the one contract between `export/` (which writes it) and `service/`.

A servable model folder is ``<repository>/<name>/<version>/`` holding:

- ``model.onnx``: one fused graph, dynamic batch axis;
- ``manifest.json``: this schema;
- side files named by the manifest (for example the tokenizer folder) and reports.

The manifest says everything the service needs to turn uploaded bytes into graph inputs and
graph outputs into answers, so that serving never guesses what training did:

- ``inputs``/``outputs``: every graph tensor with dtype and shape (a string names a dynamic
  axis, e.g. ``"batch"`` or ``"tokens"``);
- ``modalities``: one feature recipe per modality, each naming the graph input(s) it feeds;
- ``presence_input``: a float32 ``(batch, len(modality_order))`` tensor; 1.0 where the row
  carries that modality. Absent modalities are fed as zeros (text: one pad token, mask 1);
- ``tasks``: one probability output per task with its label names, and the fewest modalities
  a request must carry for the task to be answered (``min_modalities``);
- ``contribution_output`` / ``embedding_output``: the fusion weights per modality and the
  fused representation;
- ``ood`` (optional): the out-of-distribution check that marks answers "unsure";
- ``provenance`` and ``evaluation``: how it was made and how well it does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MANIFEST_FILENAME = "manifest.json"
MODEL_FILENAME = "model.onnx"
SCHEMA_VERSION: Literal[1] = 1
# A model's name and each of its versions: folder names, and path segments and query values in
# the routes (service.routes.params), which refuse what can never name a model.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

Modality = Literal["image", "audio", "text"]
TensorDtype = Literal["float32", "float16", "int64", "int32", "bool"]
FusionStrategy = Literal["concat", "mean", "gated", "cross_attention", "custom"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One graph input or output. A string dimension is a named dynamic axis."""

    name: str
    dtype: TensorDtype
    shape: list[int | str]


class ImageRecipe(_Strict):
    """Bytes of any supported image file -> float32 ``(channels, height, width)``."""

    kind: Literal["image"] = "image"
    input: str = Field(description="Graph input fed by this modality.")
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    mode: Literal["L", "RGB"] = Field(description="Colour mode after conversion.")
    resize: Literal["nearest", "bilinear", "bicubic", "lanczos", "box"] = "bilinear"
    keep_aspect: bool = Field(
        default=True,
        description="Letterbox into the target size (padding with `background`) instead of "
        "stretching.",
    )
    background: int = Field(
        default=255, ge=0, le=255, description="Grey level behind transparent pixels and padding."
    )
    invert: bool = Field(default=False, description="Invert grey levels after conversion.")
    mean: list[float]
    std: list[float]

    @model_validator(mode="after")
    def _channels_match(self) -> ImageRecipe:
        channels = 1 if self.mode == "L" else 3
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} values for mode {self.mode}")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        return self


class AudioRecipe(_Strict):
    """Bytes of any supported audio file -> float32 ``(coefficients, frames)``.

    The clip is mixed to mono, resampled to ``sample_rate``, then cut or padded to exactly
    ``clip_seconds``: longer clips are cut (``crop``), shorter ones zero-padded (``pad``).
    Features follow librosa's definitions (centred frames, Hann window, power spectrum,
    Slaney mel filterbank, ``power_to_db`` with ``top_db``, orthonormal DCT-II for MFCC).
    """

    kind: Literal["audio"] = "audio"
    input: str
    sample_rate: int = Field(gt=0)
    clip_seconds: float = Field(gt=0)
    crop: Literal["start", "center"] = "center"
    pad: Literal["end", "center"] = "center"
    feature: Literal["mfcc", "log_mel"] = "mfcc"
    n_fft: int = Field(gt=0)
    hop_length: int = Field(gt=0)
    n_mels: int = Field(gt=0)
    n_mfcc: int | None = Field(default=None, gt=0)
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float | None = 80.0
    normalize: Literal["none", "per_clip"] = Field(
        default="none", description="per_clip: zero mean and unit variance per coefficient."
    )

    @model_validator(mode="after")
    def _mfcc_needs_count(self) -> AudioRecipe:
        if self.feature == "mfcc" and self.n_mfcc is None:
            raise ValueError("feature 'mfcc' needs n_mfcc")
        return self

    @property
    def clip_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def frames(self) -> int:
        return 1 + self.clip_samples // self.hop_length

    @property
    def coefficients(self) -> int:
        return self.n_mfcc if self.feature == "mfcc" and self.n_mfcc else self.n_mels


class TextRecipe(_Strict):
    """Unicode text -> int64 ``input_ids`` and ``attention_mask`` of shape ``(tokens,)``."""

    kind: Literal["text"] = "text"
    input_ids: str
    attention_mask: str
    tokenizer_dir: str = Field(description="Folder, relative to the model folder.")
    max_length: int = Field(gt=1)


class ModalityRecipes(_Strict):
    image: ImageRecipe | None = None
    audio: AudioRecipe | None = None
    text: TextRecipe | None = None


class TaskSpec(_Strict):
    name: str
    output: str = Field(description="Graph output holding this task's probabilities.")
    labels: list[str] = Field(min_length=2)
    description: str = ""
    min_modalities: int = Field(
        default=1,
        ge=1,
        description="The task is answered only for requests carrying at least this many "
        "modalities (2 for a question about agreement between modalities, which one modality "
        "cannot answer).",
    )


class OodSubset(_Strict):
    """The check's reference points and threshold for one combination of modalities."""

    modalities: list[Modality] = Field(min_length=1, description="In ``modality_order``.")
    centroids: list[list[float]] = Field(
        min_length=1,
        description="Unit-length mean direction of the training embeddings of each label of "
        "the task, one row per label.",
    )
    threshold: float = Field(gt=0, description="Scores above this are unsure.")


class OodSpec(_Strict):
    """Out-of-distribution check: answers whose inputs look unlike the training data are
    marked unsure (the labels stay what the model says).

    ``score = (1 - max_c cos(embedding, centroids[c])) + (1 - max probability of task)``:
    the embedding's cosine distance to the nearest label centroid plus the task's
    probability left to the other labels. Both are small for clear in-distribution inputs; a
    request whose combination of modalities has no entry in ``subsets`` gets no signal.
    """

    method: Literal["centroid_cosine+1-max_prob"] = "centroid_cosine+1-max_prob"
    task: str = Field(description="The task whose probabilities enter the score.")
    subsets: list[OodSubset] = Field(min_length=1)
    rule: str = Field(default="", description="How the thresholds were chosen, for people.")

    def subset(self, modalities: list[Modality]) -> OodSubset | None:
        wanted = set(modalities)
        return next((s for s in self.subsets if set(s.modalities) == wanted), None)


class BatchingSpec(_Strict):
    max_batch_size: int = Field(default=32, gt=0)
    max_wait_ms: float = Field(default=2.0, ge=0)


class Provenance(_Strict):
    model_config = ConfigDict(extra="allow", frozen=True)

    created_by: str = "mmserve export"
    created_at: str | None = None
    opset: int
    libraries: dict[str, str] = Field(default_factory=dict)
    parity_max_abs_diff: float | None = None
    parity_cases: int | None = None
    seed: int | None = None
    source: str | None = None


class Manifest(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    model_file: str = MODEL_FILENAME
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    modality_order: list[Modality] = Field(min_length=1)
    presence_input: str
    modalities: ModalityRecipes
    tasks: list[TaskSpec] = Field(default_factory=list)
    contribution_output: str | None = None
    embedding_output: str | None = None
    fusion: FusionStrategy
    batching: BatchingSpec = BatchingSpec()
    provenance: Provenance
    evaluation: dict[str, Any] = Field(default_factory=dict)
    ood: OodSpec | None = Field(
        default=None, description="Optional out-of-distribution check; absent: no signal."
    )

    @model_validator(mode="after")
    def _names_resolve(self) -> Manifest:
        inputs = {t.name for t in self.inputs}
        outputs = {t.name for t in self.outputs}
        wanted_inputs = {self.presence_input}
        for modality in self.modality_order:
            recipe = getattr(self.modalities, modality)
            if recipe is None:
                raise ValueError(f"modality_order names {modality!r} but it has no recipe")
            if isinstance(recipe, TextRecipe):
                wanted_inputs |= {recipe.input_ids, recipe.attention_mask}
            else:
                wanted_inputs.add(recipe.input)
        if missing := wanted_inputs - inputs:
            raise ValueError(
                f"manifest names graph inputs that are not declared: {sorted(missing)}"
            )
        wanted_outputs = {t.output for t in self.tasks}
        wanted_outputs |= {o for o in (self.contribution_output, self.embedding_output) if o}
        if missing := wanted_outputs - outputs:
            raise ValueError(
                f"manifest names graph outputs that are not declared: {sorted(missing)}"
            )
        if len(set(self.modality_order)) != len(self.modality_order):
            raise ValueError("modality_order repeats a modality")
        for task in self.tasks:
            if task.min_modalities > len(self.modality_order):
                raise ValueError(
                    f"task {task.name!r} needs {task.min_modalities} modalities but the model "
                    f"takes {len(self.modality_order)}"
                )
        if self.ood is not None:
            self._check_ood(self.ood)
        return self

    def _check_ood(self, ood: OodSpec) -> None:
        task = next((t for t in self.tasks if t.name == ood.task), None)
        if task is None:
            raise ValueError(f"ood.task {ood.task!r} is not one of the tasks")
        embedding = next((t for t in self.outputs if t.name == self.embedding_output), None)
        if embedding is None:
            raise ValueError("ood needs embedding_output")
        dim = embedding.shape[-1]
        seen: list[set[Modality]] = []
        for subset in ood.subsets:
            if unknown := set(subset.modalities) - set(self.modality_order):
                raise ValueError(f"ood subset names modalities the model lacks: {sorted(unknown)}")
            if set(subset.modalities) in seen:
                raise ValueError(f"ood lists the subset {subset.modalities} twice")
            seen.append(set(subset.modalities))
            if len(subset.centroids) != len(task.labels):
                raise ValueError(
                    f"ood subset {subset.modalities} has {len(subset.centroids)} centroids; "
                    f"task {task.name!r} has {len(task.labels)} labels"
                )
            if isinstance(dim, int) and any(len(c) != dim for c in subset.centroids):
                raise ValueError(f"ood centroids must have {dim} values, like {embedding.name}")

    def recipe(self, modality: Modality) -> ImageRecipe | AudioRecipe | TextRecipe:
        recipe = getattr(self.modalities, modality)
        if recipe is None:
            raise KeyError(modality)
        return recipe  # type: ignore[no-any-return]

    def input_spec(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)


def load_manifest(model_dir: Path) -> Manifest:
    """Read and validate ``model_dir/manifest.json`` (raises ValueError/OSError)."""
    raw = json.loads((model_dir / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    return Manifest.model_validate(raw)


# A list of numbers only (no strings, no nested lists), as pydantic's indented JSON writes it.
_NUMBER_LIST = re.compile(r"\[\s*(-?[\d.eE+-]+(?:\s*,\s*-?[\d.eE+-]+)*)\s*\]")


def write_manifest(manifest: Manifest, model_dir: Path) -> Path:
    path = model_dir / MANIFEST_FILENAME
    text = manifest.model_dump_json(indent=2)
    # One line per list of numbers: the ood centroids alone would take thousands of lines.
    text = _NUMBER_LIST.sub(lambda m: "[" + re.sub(r"\s*,\s*", ", ", m.group(1)) + "]", text)
    path.write_text(text + "\n", encoding="utf-8")
    return path
