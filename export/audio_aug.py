"""Augment and corrupt a synthesised clip into a user-like recording (16 kHz float32).

Per rendition: speed/pitch change by resampling (factor 0.85..1.15), sometimes a narrow-band
channel (down to 8 kHz and back, soxr), a random lead-in/tail of silence (so the word moves
inside the 1 s window), gain (-20..+6 dB) and additive noise (white/brown mix) at a random
SNR. *Heavy* renditions get noise far louder than the speech (SNR -14..-6 dB) and a babble
of another clip, so they are nearly unintelligible. Features are then computed by
``service.features.audio.fit_clip`` + ``clip_batch_features``.
"""

from __future__ import annotations

import numpy as np
import soxr

SAMPLE_RATE = 16000


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n).astype(np.float32)
    brown = np.cumsum(rng.standard_normal(n)).astype(np.float32)
    brown -= np.convolve(brown, np.ones(401, dtype=np.float32) / 401, mode="same")
    brown /= float(np.std(brown)) or 1.0
    mix = float(rng.uniform(0, 1))
    noise = mix * white + (1 - mix) * brown
    return noise / (float(np.std(noise)) or 1.0)


def augment_clip(
    clip: np.ndarray, rng: np.random.Generator, heavy: bool, babble: np.ndarray | None = None
) -> np.ndarray:
    """One augmented rendition of ``clip`` (float32 at 16 kHz, any length)."""
    factor = float(rng.uniform(0.85, 1.15))
    x = soxr.resample(clip, SAMPLE_RATE * factor, SAMPLE_RATE, quality="LQ").astype(np.float32)
    if rng.random() < 0.3:  # telephone-like channel: resample to 8 kHz and back
        x = soxr.resample(soxr.resample(x, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)
    lead = int(rng.integers(0, int(0.3 * SAMPLE_RATE)))
    tail = int(rng.integers(0, int(0.3 * SAMPLE_RATE)))
    x = np.concatenate([np.zeros(lead, np.float32), x, np.zeros(tail, np.float32)])
    speech_rms = float(np.sqrt(np.mean(clip.astype(np.float64) ** 2))) or 1e-3
    snr_db = float(rng.uniform(-14, -6)) if heavy else float(rng.uniform(3, 25))
    noise = _noise(len(x), rng) * speech_rms * 10 ** (-snr_db / 20)
    if heavy and babble is not None and len(babble) > 0:
        reps = int(np.ceil(len(x) / len(babble)))
        noise = noise + np.tile(babble, reps)[: len(x)] * float(rng.uniform(0.5, 1.0))
    x = x + noise.astype(np.float32)
    gain = 10 ** (float(rng.uniform(-20, 6)) / 20)
    return np.clip(x * gain, -1.0, 1.0).astype(np.float32)
