"""Per-modality pools of features, the fixed test split, and batch assembly.

Design: the three modalities come from unrelated sources, so the dataset is three *pools*
(image uploads, spoken clips, typed texts), each a list of (features, digit). A row of the
multimodal dataset is a digit plus one index into each pool; training draws rows freshly
every step (any image of a 7 with any recording of a 7 ...), which is how a few thousand
samples per modality give plenty of triplets. Inconsistent rows (for the ``consistent``
task) swap one present modality's index for a sample of another digit.

Features are computed by ``service.features`` (``preprocess_image``, ``fit_clip`` +
``clip_batch_features``, ``encode_text``) with the recipes of ``export.config``: the very
code the service runs, so there is no train/serve skew.

Everything is a pure function of ``DataConfig.seed``; each (split, modality) pool has its
own random stream, so the test split can be rebuilt in seconds without the train split.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from export.audio_aug import augment_clip
from export.config import AUDIO_RECIPE, IMAGE_RECIPE, MODALITIES, TEXT_RECIPE, DataConfig
from export.images import load_split, render_upload
from export.speech import load_clips
from export.textforms import digit_text
from service.features.audio import clip_batch_features, fit_clip
from service.features.image import preprocess_image
from service.features.text import encode_text

SPLITS = {"train": 0, "test": 1}
# The 7 non-empty modality subsets, as presence vectors in MODALITIES order.
# Order: image, audio, text, image+audio, image+text, audio+text, image+audio+text.
SUBSETS: list[tuple[int, ...]] = sorted(
    (p for p in itertools.product((0, 1), repeat=3) if sum(p) > 0),
    key=lambda p: (sum(p), [-x for x in p]),
)


def subset_name(presence: tuple[int, ...]) -> str:
    """(1, 0, 1) -> "image+text"."""
    return "+".join(m for m, on in zip(MODALITIES, presence, strict=True) if on)


def _rng(cfg: DataConfig, split: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, SPLITS[split], stream])


@dataclass
class Pools:
    """Features per modality for one split. Text is right-padded to max_length with id 0."""

    image: np.ndarray  # (Ni, 1, 32, 32) float32
    image_y: np.ndarray  # (Ni,) int64
    audio: np.ndarray  # (Na, 20, 101) float32
    audio_y: np.ndarray
    text_ids: np.ndarray  # (Nt, 16) int64
    text_mask: np.ndarray  # (Nt, 16) int64
    text_y: np.ndarray

    def labels(self, modality: str) -> np.ndarray:
        return {"image": self.image_y, "audio": self.audio_y, "text": self.text_y}[modality]

    def by_digit(self, modality: str) -> list[np.ndarray]:
        y = self.labels(modality)
        return [np.flatnonzero(y == d) for d in range(10)]

    def digest(self) -> str:
        """sha256 over every array: detects any drift in how the features are built."""
        h = hashlib.sha256()
        for a in (self.image, self.audio, self.text_ids, self.text_mask):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


def texts(cfg: DataConfig, split: str) -> tuple[list[str], np.ndarray]:
    """The typed texts of a split and their digits."""
    n = cfg.text_train if split == "train" else cfg.text_test
    rng = _rng(cfg, split, 2)
    digits = np.arange(n) % 10
    rng.shuffle(digits)
    heavy = rng.random(n) < cfg.text_heavy_p
    out = [digit_text(int(d), rng, bool(h)) for d, h in zip(digits, heavy, strict=True)]
    return out, digits.astype(np.int64)


def image_pool(cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Augmented uploads through ``preprocess_image``: (N, 1, 32, 32), labels."""
    train_x, train_y, test_x, test_y = load_split(cfg.image_train_fraction)
    xs, ys = (train_x, train_y) if split == "train" else (test_x, test_y)
    copies = cfg.image_copies_train if split == "train" else cfg.image_copies_test
    rng = _rng(cfg, split, 0)
    feats, labels = [], []
    for _ in range(copies):
        for x, y in zip(xs, ys, strict=True):
            img = render_upload(x, rng, heavy=bool(rng.random() < cfg.image_heavy_p))
            feats.append(preprocess_image(img, IMAGE_RECIPE))
            labels.append(int(y))
    return np.stack(feats), np.asarray(labels, dtype=np.int64)


def audio_waveforms(cfg: DataConfig, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Augmented renditions (16 kHz float32, any length) of the split's voices, labels."""
    clips, samples = load_clips()
    chosen = [i for i, c in enumerate(clips) if c.split == split]
    copies = cfg.audio_copies_train if split == "train" else cfg.audio_copies_test
    rng = _rng(cfg, split, 1)
    waves, labels = [], []
    for _ in range(copies):
        for i in chosen:
            heavy = bool(rng.random() < cfg.audio_heavy_p)
            babble = samples[chosen[int(rng.integers(len(chosen)))]] if heavy else None
            waves.append(augment_clip(samples[i], rng, heavy, babble))
            labels.append(clips[i].digit)
    return waves, np.asarray(labels, dtype=np.int64)


def audio_pool(cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MFCC features via ``fit_clip`` + ``clip_batch_features``: (N, 20, 101), labels."""
    waves, labels = audio_waveforms(cfg, split)
    feats = []
    for start in range(0, len(waves), 512):
        chunk = np.stack(
            [
                fit_clip(w, AUDIO_RECIPE.sample_rate, AUDIO_RECIPE)
                for w in waves[start : start + 512]
            ]
        )
        feats.append(clip_batch_features(chunk, AUDIO_RECIPE))
    return np.concatenate(feats).astype(np.float32), labels


def encode_texts(items: list[str], tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """``encode_text`` per item, right-padded with id 0 / mask 0 to max_length."""
    n, width = len(items), TEXT_RECIPE.max_length
    ids = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for i, s in enumerate(items):
        row_ids, row_mask = encode_text(s, tokenizer, TEXT_RECIPE)
        ids[i, : len(row_ids)] = row_ids
        mask[i, : len(row_mask)] = row_mask
    return ids, mask


def build_pools(cfg: DataConfig, split: str, tokenizer: Tokenizer) -> Pools:
    """All three pools of one split."""
    image, image_y = image_pool(cfg, split)
    audio, audio_y = audio_pool(cfg, split)
    items, text_y = texts(cfg, split)
    ids, mask = encode_texts(items, tokenizer)
    return Pools(image, image_y, audio, audio_y, ids, mask, text_y)


def cached_pools(cfg: DataConfig, split: str, tokenizer: Tokenizer, cache_dir: Path) -> Pools:
    """``build_pools`` memoised on disk, keyed by the config and the tokenizer."""
    key = hashlib.sha256(
        (repr(cfg) + split + tokenizer.to_str() + repr((IMAGE_RECIPE, AUDIO_RECIPE))).encode()
    ).hexdigest()[:16]
    path = cache_dir / f"pools-{split}-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return Pools(**{k: z[k] for k in z.files})
    pools = build_pools(cfg, split, tokenizer)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, **pools.__dict__)
    return pools


@dataclass
class Rows:
    """Multimodal rows: per row the digit and one index into each pool."""

    digit: np.ndarray  # (N,) int64
    index: np.ndarray  # (N, 3) int64, columns in MODALITIES order
    consistent: np.ndarray  # (N,) int64, 1 if all present modalities show `digit`


def split_rows(cfg: DataConfig, pools: Pools) -> Rows:
    """The fixed, balanced, consistent test rows."""
    rng = _rng(cfg, "test", 3)
    digits = np.arange(cfg.test_rows) % 10
    rng.shuffle(digits)
    index = np.zeros((cfg.test_rows, 3), dtype=np.int64)
    for m, modality in enumerate(MODALITIES):
        groups = pools.by_digit(modality)
        for i, d in enumerate(digits):
            index[i, m] = groups[d][int(rng.integers(len(groups[d])))]
    return Rows(digits.astype(np.int64), index, np.ones(cfg.test_rows, dtype=np.int64))


def with_swaps(
    rows: Rows, pools: Pools, presence: tuple[int, ...], p: float, rng: np.random.Generator
) -> Rows:
    """Copy of ``rows`` where, with probability ``p`` per row (>= 2 modalities present), one
    present modality shows a different digit; ``consistent`` says which rows."""
    index = rows.index.copy()
    consistent = np.ones(len(rows.digit), dtype=np.int64)
    present = [m for m, on in enumerate(presence) if on]
    if len(present) < 2:
        return Rows(rows.digit.copy(), index, consistent)
    groups = {m: pools.by_digit(MODALITIES[m]) for m in present}
    for i, d in enumerate(rows.digit):
        if rng.random() >= p:
            continue
        m = present[int(rng.integers(len(present)))]
        other = (int(d) + 1 + int(rng.integers(9))) % 10
        index[i, m] = groups[m][other][int(rng.integers(len(groups[m][other])))]
        consistent[i] = 0
    return Rows(rows.digit.copy(), index, consistent)


def consistency_rows(cfg: DataConfig, pools: Pools, presence: tuple[int, ...]) -> Rows:
    """Test rows for the ``consistent`` task of one subset (half inconsistent)."""
    code = int("".join(map(str, presence)), 2)
    rng = np.random.default_rng([cfg.seed, SPLITS["test"], 4, code])
    return with_swaps(split_rows(cfg, pools), pools, presence, cfg.inconsistent_p_test, rng)


def assemble(pools: Pools, index: np.ndarray, presence: np.ndarray) -> dict[str, np.ndarray]:
    """Graph inputs for rows ``index`` (N, 3) with ``presence`` (N, 3), as the service does:
    absent modalities are zeros, absent text is one pad token with mask 1, text is trimmed to
    the longest row."""
    n = len(index)
    present = presence.astype(bool)
    image = np.where(present[:, 0, None, None, None], pools.image[index[:, 0]], 0.0)
    audio = np.where(present[:, 1, None, None], pools.audio[index[:, 1]], 0.0)
    ids = np.where(present[:, 2, None], pools.text_ids[index[:, 2]], 0)
    mask = np.where(present[:, 2, None], pools.text_mask[index[:, 2]], 0)
    mask[~present[:, 2], 0] = 1
    width = max(1, int(mask.sum(axis=1).max()))
    return {
        "image": image.astype(np.float32),
        "audio": audio.astype(np.float32),
        "input_ids": np.ascontiguousarray(ids[:, :width]),
        "attention_mask": np.ascontiguousarray(mask[:, :width]),
        "presence": presence.astype(np.float32).reshape(n, 3),
    }
