"""Choose the thresholds of the out-of-distribution check (the manifest's ``ood`` section).

For each of the 7 modality subsets, through the model's own graph (any runner):

1. **centroids**: the unit-length mean direction of the fused embeddings of each digit, over
   ``TRAIN_ROWS`` consistent rows drawn from the *train* split;
2. **threshold**, on the *test* split, of the score ``service.ood.ood_scores``:
   - two or three modalities: the ``keep`` (0.95) quantile over every test row, so that 95 %
     of the in-distribution rows stay "sure";
   - one modality: the ``keep_single`` (0.90) quantile over the rows the model answers
     *correctly*, so that 90 % of its right answers stay sure;
3. **measured**: the share of all test rows kept sure, the accuracy over all test rows and over
   the sure ones, the share of out-of-distribution rows caught (made of inputs that show no
   digit: words and sentences, noise, blank pages, letters and scribbles, non-digit words
   spoken by espeak-ng, noise and tones; every present modality is one of them), and the
   verdicts on a few named probes ("hello world", a drawn 7, espeak "seven", ...).

Why one modality has its own rule: the test split is deliberately corrupted (14 % of texts are
random letters, 14 % of clips are buried in babble, 14 % of images illegible) and labelled with
a digit all the same, so one modality alone is right only 74-84 % of the time. The tokenizer
splits "hello world" into the very letter pieces of those random-letter rows, and a threshold
that keeps 95 % of *all* single-modality test rows sure cannot flag it (measured: 0.89 for the
default model's text, against a score of 0.46 for "hello world"). Flagging the illegible rows
as well is what "unsure" should mean: the model is mostly wrong on them (``accuracy_sure``
against ``accuracy_all``).

``python -m export ood --model-dir DIR`` writes the section into an existing folder's manifest
(and its report) without touching ``model.onnx``; ``python -m export build`` writes it for new
models.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tokenizers import Tokenizer

from export.config import (
    AUDIO_RECIPE,
    IMAGE_RECIPE,
    MODALITIES,
    OOD_KEEP,
    OOD_KEEP_SINGLE,
    DataConfig,
)
from export.dataset import (
    SUBSETS,
    Pools,
    Rows,
    assemble,
    encode_texts,
    split_rows,
    subset_name,
)
from export.evaluate import Runner, predict
from service.features.audio import clip_batch_features, fit_clip
from service.features.image import preprocess_image
from service.manifest import Modality, OodSpec, OodSubset
from service.ood import ood_scores, unit_rows

TASK = "digit"
TRAIN_ROWS = 3000
OOD_ROWS = 400
SEED = 7
RULE = (
    "score = (1 - max cosine of the embedding to the digit centroids of the train split) + "
    "(1 - max digit probability); threshold per modality subset = the {keep:.0%} quantile of "
    "the score over the test rows for two or three modalities, the {keep_single:.0%} quantile "
    "over the correctly answered test rows for one"
)

# Words and sentences that are not digits in any of the languages of export/textforms.py.
WORDS = (
    "hello world banana apple house car tree water music computer phone window table chair "
    "happy yellow green blue red dog cat bird fish river mountain city coffee bread cheese "
    "summer winter morning evening friend family school teacher doctor garden flower ocean "
    "island street train airplane bicycle keyboard mouse screen paper pencil book letter "
    "question answer weather today tomorrow yesterday kitchen bedroom garage bonjour merci "
    "hola gracias danke bitte ciao grazie nihao xiexie"
).split()
SENTENCES = [
    "hello world",
    "the weather is nice today",
    "what time is it",
    "please send the report",
    "i like coffee",
    "where is the station",
    "good morning everyone",
    "this is a test",
    "lorem ipsum dolor sit amet",
    "the quick brown fox jumps over the lazy dog",
]
SPOKEN = [
    "hello", "banana", "computer", "water", "yes", "stop", "go", "left", "right", "house",
    "music", "good morning", "thank you", "weather", "table", "apple",
]  # fmt: skip
VOICES = ("en+m3", "en+f5", "de+m3", "fr+f5")  # the test split's espeak variants
LETTERS = "ABCDEFHKMNPRTWXYZaefhkmnrtwxy#@%&?"


@dataclass
class OodSet:
    """Out-of-distribution features per modality, shaped like ``Pools`` (labels unused), and
    the named probes: a pool of a few inputs and, per probe, its (image, audio, text) indices
    into it and its presence."""

    pools: Pools
    counts: dict[str, int]
    probes: tuple[Pools, dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]]]


def ood_texts(rng: np.random.Generator) -> list[str]:
    texts = [*WORDS, *SENTENCES]
    for _ in range(60):
        texts.append(" ".join(rng.choice(WORDS, size=int(rng.integers(1, 4)))))
    return texts


def ood_images(rng: np.random.Generator) -> list[Image.Image]:
    images = [Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)) for _ in range(40)]
    images += [
        Image.fromarray(np.clip(rng.normal(128, 60, (64, 64)), 0, 255).astype(np.uint8))
        for _ in range(20)
    ]
    images += [Image.new("L", (64, 64), v) for v in (255, 245, 230, 200, 128, 0)]
    font = ImageFont.load_default(size=40)
    for ch in LETTERS:
        image = Image.new("L", (64, 64), 245)
        ImageDraw.Draw(image).text((32, 32), ch, fill=10, font=font, anchor="mm")
        images.append(image)
    for _ in range(40):  # scribbles
        image = Image.new("L", (64, 64), 245)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 8))):
            x0, y0, x1, y1 = rng.integers(0, 64, 4).tolist()
            draw.line(
                (x0, y0, x1, y1), fill=int(rng.integers(0, 80)), width=int(rng.integers(1, 5))
            )
        images.append(image)
    return images


def ood_waves(rng: np.random.Generator) -> tuple[list[np.ndarray], int]:
    """Non-digit speech (when espeak-ng is installed), noise, tones, silence; 16 kHz."""
    from export.speech import SAMPLE_RATE, synthesise

    waves: list[np.ndarray] = []
    if shutil.which("espeak-ng") is not None:
        for word in SPOKEN:
            for voice in VOICES:
                speed, pitch = int(rng.integers(120, 200)), int(rng.integers(20, 80))
                waves.append(synthesise(word, voice, speed, pitch))
    spoken = len(waves)
    waves += [rng.normal(0, 0.1, SAMPLE_RATE).astype(np.float32) for _ in range(20)]
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    waves += [(0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (220, 440, 880, 3000)]
    waves.append(np.zeros(SAMPLE_RATE, np.float32))
    return waves, spoken


def _drawn(ch: str) -> Image.Image:
    """A dark character on a light background, like a scanned or photographed digit."""
    image = Image.new("L", (64, 64), 245)
    font = ImageFont.load_default(size=51)
    ImageDraw.Draw(image).text((32, 32), ch, fill=10, font=font, anchor="mm")
    return image


def probe_pools(tokenizer: Tokenizer, rng: np.random.Generator) -> tuple[Pools, dict[str, Any]]:
    """The named probes: what a user would try first, in and out of distribution."""
    from export.speech import SAMPLE_RATE, synthesise

    images = [_drawn("7"), Image.new("L", (64, 64), 255)]
    images.append(Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)))
    waves = [np.zeros(SAMPLE_RATE, np.float32)] * 2
    spoken = shutil.which("espeak-ng") is not None
    if spoken:  # espeak-ng's default English voice, as `espeak-ng -w seven.wav seven`
        waves = [synthesise(w, "en", 175, 50) for w in ("seven", "hello")]
    clips = np.stack([fit_clip(w, AUDIO_RECIPE.sample_rate, AUDIO_RECIPE) for w in waves])
    ids, mask = encode_texts(["seven", "hello world"], tokenizer)
    zeros = np.zeros(3, np.int64)
    pools = Pools(
        np.stack([preprocess_image(im, IMAGE_RECIPE) for im in images]), zeros,
        clip_batch_features(clips, AUDIO_RECIPE).astype(np.float32), zeros[:2],
        ids, mask, zeros[:2],
    )  # fmt: skip
    probes = {
        'text "seven"': ((0, 0, 0), (0, 0, 1)),
        'text "hello world"': ((0, 0, 1), (0, 0, 1)),
        "a drawn 7": ((0, 0, 0), (1, 0, 0)),
        "a blank image": ((1, 0, 0), (1, 0, 0)),
        "a noise image": ((2, 0, 0), (1, 0, 0)),
        'a drawn 7 + text "seven"': ((0, 0, 0), (1, 0, 1)),
    }
    if spoken:
        probes |= {
            'espeak "seven"': ((0, 0, 0), (0, 1, 0)),
            'espeak "hello"': ((0, 1, 0), (0, 1, 0)),
            'a drawn 7 + espeak "seven" + text "seven"': ((0, 0, 0), (1, 1, 1)),
        }
    return pools, probes


def probe_verdicts(
    run: Runner,
    probes: tuple[Pools, dict[str, Any]],
    spec: OodSpec,
    embedding: str,
    probabilities: str,
) -> dict[str, dict[str, Any]]:
    """Per probe: the digit, its probability, the score, the threshold, unsure or not."""
    pools, named = probes
    out: dict[str, dict[str, Any]] = {}
    for name, (index, presence) in named.items():
        inputs = assemble(pools, np.asarray([index]), np.asarray([presence], np.float32))
        result = run(inputs)
        modalities = [m for m, on in zip(MODALITIES, presence, strict=True) if on]
        subset = spec.subset(modalities)  # type: ignore[arg-type]
        assert subset is not None
        centroids = unit_rows(subset.centroids)
        score = float(ood_scores(result[embedding], result[probabilities], centroids)[0])
        out[name] = {
            "digit": int(result[probabilities][0].argmax()),
            "probability": round(float(result[probabilities][0].max()), 4),
            "score": round(score, 4),
            "threshold": subset.threshold,
            "unsure": score > subset.threshold,
        }
    return out


def ood_set(tokenizer: Tokenizer, seed: int = SEED) -> OodSet:
    """Features of the out-of-distribution inputs, through the service's feature code."""
    rng = np.random.default_rng(seed)
    texts = ood_texts(rng)
    ids, mask = encode_texts(texts, tokenizer)
    images = np.stack([preprocess_image(im, IMAGE_RECIPE) for im in ood_images(rng)])
    waves, spoken = ood_waves(rng)
    clips = np.stack([fit_clip(w, AUDIO_RECIPE.sample_rate, AUDIO_RECIPE) for w in waves])
    audio = clip_batch_features(clips, AUDIO_RECIPE).astype(np.float32)
    zeros = np.zeros
    pools = Pools(
        images, zeros(len(images), np.int64), audio, zeros(len(audio), np.int64),
        ids, mask, zeros(len(ids), np.int64),
    )  # fmt: skip
    counts = {
        "texts": len(texts),
        "images": len(images),
        "clips": len(audio),
        "spoken_words": spoken,
    }
    return OodSet(pools, counts, probe_pools(tokenizer, rng))


def _train_rows(pools: Pools, n: int, seed: int) -> Rows:
    rng = np.random.default_rng(seed)
    digits = np.arange(n) % 10
    index = np.zeros((n, 3), dtype=np.int64)
    for m, modality in enumerate(MODALITIES):
        groups = pools.by_digit(modality)
        for i, d in enumerate(digits):
            index[i, m] = groups[d][int(rng.integers(len(groups[d])))]
    return Rows(digits.astype(np.int64), index, np.ones(n, dtype=np.int64))


def _ood_rows(ood: OodSet, n: int, seed: int) -> Rows:
    rng = np.random.default_rng(seed)
    sizes = (len(ood.pools.image), len(ood.pools.audio), len(ood.pools.text_ids))
    index = np.stack([rng.integers(size, size=n) for size in sizes], axis=1)
    return Rows(np.zeros(n, dtype=np.int64), index, np.ones(n, dtype=np.int64))


def unit_centroids(embeddings: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """(classes, D): per class, the unit-length mean of the unit-length embeddings."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    means = np.stack([unit[labels == c].mean(axis=0) for c in range(classes)])
    unit_means = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return np.asarray(unit_means, dtype=np.float64)


def _round_up(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits, rounded up so that no kept row is lost."""
    value = max(value, 1e-4)  # the schema wants a positive threshold
    scale = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return round(math.ceil(value / scale - 1e-9) * scale, 10)


def fit_subset(
    modalities: list[Modality],
    fit: tuple[np.ndarray, np.ndarray],
    check: tuple[np.ndarray, np.ndarray],
    *,
    keep: float,
    correct: np.ndarray | None = None,
) -> OodSubset:
    """One ``ood.subsets`` entry from a model's own outputs, for any model (BYO included).

    ``fit``: embeddings (N, D) and integer labels (N,) of training rows, every label present;
    ``check``: embeddings and the task's probabilities (M, labels) of held-out rows of the
    same modalities; the threshold is the ``keep`` quantile of their scores (only over the
    rows marked ``correct`` when given).
    """
    embeddings, labels = fit
    centroids = np.round(unit_centroids(embeddings, labels, check[1].shape[1]), 5)
    scores = ood_scores(check[0], check[1], unit_rows(centroids))
    basis = scores if correct is None else scores[correct]
    threshold = _round_up(float(np.quantile(basis, keep, method="higher")))
    return OodSubset(modalities=modalities, centroids=centroids.tolist(), threshold=threshold)


def calibrate(
    run: Runner,
    cfg: DataConfig,
    train: Pools,
    test: Pools,
    ood: OodSet,
    *,
    keep: float = OOD_KEEP,
    keep_single: float = OOD_KEEP_SINGLE,
    embedding: str = "embedding",
    probabilities: str = "digit_probs",
) -> tuple[OodSpec, dict[str, Any]]:
    """The manifest section and the measurements for ``evaluation.ood``."""
    train_rows = _train_rows(train, TRAIN_ROWS, SEED)
    test_rows = split_rows(cfg, test)
    ood_rows = _ood_rows(ood, OOD_ROWS, SEED)
    subsets: list[OodSubset] = []
    measured: dict[str, dict[str, float]] = {}
    for presence in SUBSETS:
        modalities: list[Modality] = [m for m, on in zip(MODALITIES, presence, strict=True) if on]  # type: ignore[misc]
        fit = predict(run, train, train_rows, presence)
        seen = predict(run, test, test_rows, presence)
        correct = seen[probabilities].argmax(axis=1) == test_rows.digit
        single = sum(presence) == 1
        subset = fit_subset(
            modalities,
            (fit[embedding], train_rows.digit),
            (seen[embedding], seen[probabilities]),
            keep=keep_single if single else keep,
            correct=correct if single else None,
        )
        subsets.append(subset)
        centroids, threshold = unit_rows(subset.centroids), subset.threshold
        sure = ood_scores(seen[embedding], seen[probabilities], centroids) <= threshold
        away = predict(run, ood.pools, ood_rows, presence)
        caught = ood_scores(away[embedding], away[probabilities], centroids) > threshold
        measured[subset_name(presence)] = {
            "threshold": threshold,
            "keep_correct": round(float(sure[correct].mean()), 4),
            "keep_all": round(float(sure.mean()), 4),
            "accuracy_all": round(float(correct.mean()), 4),
            "accuracy_sure": round(float(correct[sure].mean()), 4),
            "ood_caught": round(float(caught.mean()), 4),
        }
    rule = RULE.format(keep=keep, keep_single=keep_single)
    spec = OodSpec(task=TASK, subsets=subsets, rule=rule)
    report = {
        "rule": rule,
        "keep": keep,
        "keep_single": keep_single,
        "train_rows": TRAIN_ROWS,
        "test_rows": len(test_rows.digit),
        "ood_rows": OOD_ROWS,
        "ood_inputs": ood.counts,
        "per_subset": measured,
        "probes": probe_verdicts(run, ood.probes, spec, embedding, probabilities),
        "reproduce": "python -m export ood --model-dir <this folder>",
    }
    return spec, report
