"""Synthesise the spoken-digit clip set with espeak-ng.

Design: espeak-ng reads the digit character ("7") in each voice's language, so every
language says the digit in its own words ("seven", "qī", "sieben", ...). A *voice* is a
language plus an espeak variant (``en+m3``); train and test voices are disjoint (the test
variants are never used for training), while every language is in both splits.

Each (voice, digit) pair is rendered once with a speed and pitch drawn from the seed,
resampled to 16 kHz, trimmed of silence and stored as int16. All clips are concatenated into
one FLAC file (``clips.flac``) with an index (``clips.json``) so that the committed set is a
few MB and training never needs espeak-ng. Further speed/pitch/noise variation is added at
training time by ``dataset``.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

DATA_DIR = Path(__file__).parent / "data"
CLIPS_FLAC = "clips.flac"
CLIPS_INDEX = "clips.json"
SAMPLE_RATE = 16000

LANGUAGES = ("en", "cmn", "de", "fr", "es", "it", "nl", "pt")
TRAIN_VARIANTS = ("m1", "m2", "m4", "f1", "f2", "f4")
TEST_VARIANTS = ("m3", "f5")


@dataclass(frozen=True)
class Clip:
    """One synthesised clip: where it sits in the concatenated FLAC and what it says."""

    voice: str  # "en+m3"
    language: str
    variant: str
    split: str  # "train" | "test"
    digit: int
    speed: int  # words per minute
    pitch: int  # 0..99
    offset: int  # sample offset in clips.flac
    length: int  # samples


def voices() -> list[tuple[str, str, str]]:
    """All (language, variant, split) voices, in a fixed order."""
    out = [(lang, v, "train") for lang in LANGUAGES for v in TRAIN_VARIANTS]
    out += [(lang, v, "test") for lang in LANGUAGES for v in TEST_VARIANTS]
    return out


def synthesise(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """Run espeak-ng and return float32 mono samples at ``SAMPLE_RATE``, silence trimmed."""
    import librosa

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
    wav = subprocess.run(cmd, check=True, capture_output=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    samples = librosa.resample(samples, orig_sr=rate, target_sr=SAMPLE_RATE)
    trimmed, _ = librosa.effects.trim(samples, top_db=40)
    return np.asarray(trimmed, dtype=np.float32)


def generate(out_dir: Path = DATA_DIR, seed: int = 0) -> list[Clip]:
    """Render every (voice, digit) clip and write ``clips.flac`` + ``clips.json``."""
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    clips: list[Clip] = []
    offset = 0
    for lang, variant, split in voices():
        for digit in range(10):
            speed = int(rng.integers(120, 200))
            pitch = int(rng.integers(20, 80))
            voice = f"{lang}+{variant}"
            samples = synthesise(str(digit), voice, speed, pitch)
            peak = float(np.max(np.abs(samples))) or 1.0
            pcm = np.round(samples / peak * 0.9 * 32767).astype(np.int16)
            pieces.append(pcm)
            clips.append(Clip(voice, lang, variant, split, digit, speed, pitch, offset, len(pcm)))
            offset += len(pcm)
    out_dir.mkdir(parents=True, exist_ok=True)
    sf.write(
        out_dir / CLIPS_FLAC,
        np.concatenate(pieces),
        SAMPLE_RATE,
        subtype="PCM_16",
        compression_level=1.0,
    )
    rows = ",\n".join(json.dumps(c.__dict__) for c in clips)
    text = f'{{"sample_rate": {SAMPLE_RATE}, "seed": {seed}, "clips": [\n{rows}\n]}}\n'
    (out_dir / CLIPS_INDEX).write_text(text, encoding="utf-8")
    return clips


def load_clips(data_dir: Path = DATA_DIR) -> tuple[list[Clip], list[np.ndarray]]:
    """Read the committed clip set: metadata and float32 samples (in [-1, 1]) per clip."""
    index = json.loads((data_dir / CLIPS_INDEX).read_text(encoding="utf-8"))
    audio, rate = sf.read(data_dir / CLIPS_FLAC, dtype="float32")
    if rate != SAMPLE_RATE:
        raise ValueError(f"{CLIPS_FLAC} has rate {rate}, expected {SAMPLE_RATE}")
    clips = [Clip(**c) for c in index["clips"]]
    return clips, [audio[c.offset : c.offset + c.length] for c in clips]
