"""Configs (plain dataclasses) and the feature recipes of the reference models.

The recipes are the single source of truth for feature extraction: training builds its
features by calling ``service.features`` with exactly these recipes, and the exporter writes
the same recipes into ``manifest.json`` for the service to use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from service.manifest import AudioRecipe, ImageRecipe, TextRecipe

MODALITIES: tuple[str, str, str] = ("image", "audio", "text")
Fusion = Literal["concat", "mean", "gated", "cross_attention"]
FUSIONS: tuple[Fusion, ...] = ("cross_attention", "concat", "mean", "gated")
MODEL_NAMES: dict[str, str] = {
    "cross_attention": "digits-xattn",
    "concat": "digits-concat",
    "mean": "digits-mean",
    "gated": "digits-gated",
}
DIGIT_LABELS = [str(d) for d in range(10)]
CONSISTENT_LABELS = ["no", "yes"]
TOKENIZER_DIR = "tokenizer"
# The out-of-distribution check keeps this share of the test rows "sure" for two or more
# modalities, and this share of the correctly answered rows for one (export/ood.py says why).
OOD_KEEP = 0.95
OOD_KEEP_SINGLE = 0.90

IMAGE_RECIPE = ImageRecipe(
    input="image",
    height=32,
    width=32,
    mode="L",
    resize="bilinear",
    keep_aspect=True,
    background=255,
    invert=True,
    mean=[0.2],
    std=[0.3],
)
AUDIO_RECIPE = AudioRecipe(
    input="audio",
    sample_rate=16000,
    clip_seconds=1.0,
    crop="center",
    pad="center",
    feature="mfcc",
    n_fft=512,
    hop_length=160,
    n_mels=40,
    n_mfcc=20,
    normalize="per_clip",
)
TEXT_RECIPE = TextRecipe(
    input_ids="input_ids",
    attention_mask="attention_mask",
    tokenizer_dir=TOKENIZER_DIR,
    max_length=16,
)


@dataclass(frozen=True)
class DataConfig:
    """How the per-modality pools and the test split are generated (all from ``seed``)."""

    seed: int = 0
    image_train_fraction: float = 0.7  # first 70% of load_digits (by index block) -> train
    image_copies_train: int = 6  # augmented uploads per train image
    image_copies_test: int = 2
    audio_copies_train: int = 20  # augmented renditions per train clip
    audio_copies_test: int = 8
    text_train: int = 8000
    text_test: int = 1600
    # Corruption: a fraction of samples is made (nearly) illegible, the rest is moderately
    # noisy, so that no single modality is near perfect and fusion visibly matters.
    image_heavy_p: float = 0.14
    audio_heavy_p: float = 0.14
    text_heavy_p: float = 0.14
    test_rows: int = 2000
    inconsistent_p_test: float = 0.5

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the encoders, the fusion and the heads."""

    fusion: Fusion = "cross_attention"
    dim: int = 64  # D: every encoder's output width and the fused embedding width
    vocab_size: int = 512  # set from the trained tokenizer
    text_layers: int = 2
    text_heads: int = 2
    text_ffn: int = 128
    max_tokens: int = 16
    fusion_heads: int = 2
    dropout: float = 0.1

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, modality dropout and the task-loss weights."""

    seed: int = 0
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    p_all_present: float = 0.4  # else a uniformly drawn non-full, non-empty subset
    p_inconsistent: float = 0.3  # rows with >= 2 modalities: one modality shows another digit
    digit_weight: float = 1.0
    consistent_weight: float = 0.5
    threads: int = 1  # 2 OpenMP threads on 2 shared, busy cores were 8x slower than 1
    log_every: int = 100
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
