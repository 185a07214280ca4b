"""Vectorised MFCC and log-mel spectrograms, equal to librosa's reference functions.

librosa computes one clip at a time and, on first use, JIT-compiles helpers with numba (tens
of seconds cold). Serving needs neither: with the clip length fixed by the recipe, the frame
count is fixed too, so a whole batch of clips becomes one ``(B, frames, n_fft)`` array, one
real FFT, one matrix product with the mel filterbank and one with the DCT matrix.

The filterbank is ``librosa.filters.mel``'s formula written out in numpy (a test holds it
bit-for-bit to librosa's): importing librosa costs ~3 s and pulls in numba, llvmlite and
scikit-learn, which the container image would otherwise carry (about 300 MB) for one matrix
computed once per recipe. The FFT is ``scipy.fft`` (0.2 s to import, and 4-6x faster than
``numpy.fft`` on a batch of short frames); the Hann window and the orthonormal DCT-II are two
numpy formulas (tests hold them to scipy's).
Definitions follow ``librosa.feature.mfcc`` defaults: centred frames with zero padding,
periodic Hann window, power spectrum, Slaney mel filters, ``power_to_db(ref=1, amin=1e-10,
top_db)`` per clip, orthonormal DCT-II.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import fft as scipy_fft

from service.manifest import AudioRecipe

_AMIN = 1e-10
# Slaney's mel scale, as librosa.hz_to_mel(htk=False) defines it.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = float(np.log(6.4) / 27.0)


def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann, as ``scipy.signal.get_window("hann", n_fft, fftbins=True)``."""
    n = np.arange(n_fft)
    window: np.ndarray = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)
    return window


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II as a ``(n_in, n_out)`` matrix: ``x @ M == scipy.fft.dct(x)[:n_out]``."""
    k = np.arange(n_out)[:, None]
    m = np.arange(n_in)[None, :]
    basis = np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * m + 1) / (2 * n_in))
    basis[0] /= np.sqrt(2.0)
    transposed: np.ndarray = basis.T
    return transposed


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    mel = hz / _F_SP
    log = hz >= _MIN_LOG_HZ
    mel[log] = _MIN_LOG_MEL + np.log(hz[log] / _MIN_LOG_HZ) / _LOGSTEP
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = mel * _F_SP
    log = mel >= _MIN_LOG_MEL
    hz[log] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel[log] - _MIN_LOG_MEL))
    return hz


@lru_cache(maxsize=16)
def _filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    # librosa.filters.mel step by step (norm="slaney"), in float64 and stored into float32 as
    # librosa stores it, so the result is bit-for-bit librosa's.
    top = float(sr) / 2 if fmax is None else fmax
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sr)  # (n_fft // 2 + 1,)
    edges = np.linspace(
        _hz_to_mel(np.array([fmin], float))[0], _hz_to_mel(np.array([top]))[0], n_mels + 2
    )
    mel_hz = _mel_to_hz(edges)  # (n_mels + 2,) band edges and centres
    fdiff = np.diff(mel_hz)
    ramps = np.subtract.outer(mel_hz, fft_hz)  # (n_mels + 2, n_fft // 2 + 1)
    weights = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_hz[2 : n_mels + 2] - mel_hz[:n_mels]))[:, np.newaxis]
    weights.flags.writeable = False  # shared by every extractor of the recipe
    return weights


def mel_filterbank(recipe: AudioRecipe) -> np.ndarray:
    """``librosa.filters.mel`` for the recipe, float32 ``(n_mels, n_fft // 2 + 1)``."""
    return _filterbank(recipe.sample_rate, recipe.n_fft, recipe.n_mels, recipe.fmin, recipe.fmax)


class SpectralExtractor:
    """Precomputed window, filterbank and DCT for one recipe; call with ``(B, samples)``."""

    def __init__(self, recipe: AudioRecipe) -> None:
        self.recipe = recipe
        # float32 throughout, as librosa itself computes for float32 audio: half the memory
        # traffic of float64 and well inside the 1e-4 relative tolerance against librosa.
        self.window = hann_window(recipe.n_fft).astype(np.float32)
        self.mel_t = np.ascontiguousarray(mel_filterbank(recipe).T)  # (n_fft // 2 + 1, n_mels)
        self.dct_t: np.ndarray | None = None
        if recipe.feature == "mfcc":
            assert recipe.n_mfcc is not None
            dct = dct_matrix(recipe.n_mels, recipe.n_mfcc)  # (n_mels, n_mfcc)
            self.dct_t = np.ascontiguousarray(dct, dtype=np.float32)

    def frames(self, clips: np.ndarray) -> np.ndarray:
        """``(B, samples)`` -> windowed ``(B, frames, n_fft)`` (centred, zero-padded)."""
        n_fft, hop = self.recipe.n_fft, self.recipe.hop_length
        # Zeros and one copy: np.pad's general machinery cost more than the copy itself.
        half = n_fft // 2
        padded = np.zeros((clips.shape[0], clips.shape[1] + 2 * half), dtype=np.float32)
        padded[:, half : half + clips.shape[1]] = clips
        count = 1 + (padded.shape[1] - n_fft) // hop
        view = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]
        windowed: np.ndarray = view[:, :count] * self.window
        return windowed

    def log_mel(self, clips: np.ndarray) -> np.ndarray:
        """``(B, samples)`` -> ``(B, frames, n_mels)`` in dB, float32."""
        # scipy's pocketfft vectorises across the frames: 4-6x faster than numpy.fft here
        # (0.08-0.14 ms against 0.4-0.6 ms for a 1 s clip's 101 frames of 512), float32 kept.
        spectrum = scipy_fft.rfft(self.frames(clips), axis=-1, workers=1)
        power = spectrum.real**2 + spectrum.imag**2
        db = np.float32(10.0) * np.log10(np.maximum(power @ self.mel_t, np.float32(_AMIN)))
        if self.recipe.top_db is not None:
            floor = db.max(axis=(1, 2), keepdims=True) - np.float32(self.recipe.top_db)
            db = np.maximum(db, floor)
        log_mel: np.ndarray = db
        return log_mel

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """``(B, samples)`` -> float32 ``(B, coefficients, frames)``."""
        if clips.ndim != 2:
            raise ValueError(f"expected (batch, samples), got shape {clips.shape}")
        feats = self.log_mel(clips)
        if self.dct_t is not None:
            feats = feats @ self.dct_t
        if self.recipe.normalize == "per_clip":
            mean = feats.mean(axis=1, keepdims=True)
            std = feats.std(axis=1, keepdims=True)
            feats = (feats - mean) / np.maximum(std, 1e-5)
        return np.ascontiguousarray(feats.transpose(0, 2, 1), dtype=np.float32)


@lru_cache(maxsize=16)
def extractor_for(recipe: AudioRecipe) -> SpectralExtractor:
    return SpectralExtractor(recipe)
