"""The vectorised MFCC/log-mel must equal librosa's reference functions (issue 4, item 3)."""

from __future__ import annotations

import io

import librosa
import numpy as np
import pytest
import soundfile as sf

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.features.audio import (
    audio_features,
    clip_batch_features,
    decode_audio,
    fit_clip,
    plain_pcm16_wav,
)
from service.manifest import AudioRecipe

RECIPE = AudioRecipe(
    input="audio",
    sample_rate=16000,
    clip_seconds=1.0,
    n_fft=512,
    hop_length=160,
    n_mels=40,
    n_mfcc=20,
)


def _clips(count: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(RECIPE.clip_samples) / RECIPE.sample_rate
    clips = []
    for i in range(count):
        tone = np.sin(2 * np.pi * (200 + 150 * i) * t) * np.hanning(t.size)
        clips.append(0.3 * tone + 0.02 * rng.standard_normal(t.size))
    clips[0][: RECIPE.clip_samples // 2] = 0.0  # silence exercises the amin/top_db floors
    return np.asarray(clips, dtype=np.float32)


def _assert_close(ours: np.ndarray, reference: np.ndarray) -> None:
    # 1e-4 relative to the feature's scale: MFCCs cross zero, so a plain per-element relative
    # error is meaningless where the reference value is ~0.
    scale = float(np.abs(reference).max())
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("feature", ["mfcc", "log_mel"])
def test_batch_features_equal_librosa(feature: str) -> None:
    recipe = RECIPE.model_copy(update={"feature": feature})
    clips = _clips(6)
    ours = clip_batch_features(clips, recipe)
    if feature == "mfcc":
        reference = np.stack(
            [
                librosa.feature.mfcc(y=c, sr=16000, n_mfcc=20, n_fft=512, hop_length=160, n_mels=40)
                for c in clips
            ]
        )
    else:
        reference = np.stack(
            [
                librosa.power_to_db(
                    librosa.feature.melspectrogram(
                        y=c, sr=16000, n_fft=512, hop_length=160, n_mels=40
                    ),
                    top_db=80.0,
                )
                for c in clips
            ]
        )
    assert ours.shape == (6, recipe.coefficients, recipe.frames) == reference.shape
    assert ours.dtype == np.float32
    _assert_close(ours, reference)


def test_batching_does_not_change_a_clip() -> None:
    clips = _clips(5)
    batched = clip_batch_features(clips, RECIPE)
    for i, clip in enumerate(clips):
        np.testing.assert_array_equal(clip_batch_features(clip[None], RECIPE)[0], batched[i])


def test_fit_clip_cuts_centre_and_pads_both_sides() -> None:
    long = np.arange(20000, dtype=np.float32)
    cut = fit_clip(long, 16000, RECIPE)
    assert cut.shape == (16000,) and cut[0] == 2000
    short = np.ones(1000, dtype=np.float32)
    padded = fit_clip(short, 16000, RECIPE)
    assert padded.shape == (16000,) and padded[7500] == 1 and padded[0] == 0 and padded[-1] == 0


def test_resampling_matches_librosa_resample() -> None:
    clip = _clips(1)[0]
    at_44k = librosa.resample(clip, orig_sr=16000, target_sr=44100)
    fitted = fit_clip(at_44k.astype(np.float32), 44100, RECIPE)
    reference = librosa.resample(at_44k, orig_sr=44100, target_sr=16000)
    reference = fit_clip(reference.astype(np.float32), 16000, RECIPE)
    np.testing.assert_allclose(fitted, reference, atol=1e-5)


def _wav(samples: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def test_stereo_is_mixed_to_mono() -> None:
    left = _clips(1)[0]
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    mono, rate = decode_audio(_wav(stereo, 16000, "FLOAT"), max_seconds=5)
    assert rate == 16000
    np.testing.assert_allclose(mono, left / 2, atol=1e-6)


def test_limits_and_bad_bytes_are_named_errors() -> None:
    with pytest.raises(PayloadTooLarge) as too_long:
        audio_features(_wav(np.zeros(16000 * 3, np.float32), 16000), RECIPE, max_seconds=2)
    assert too_long.value.field == "audio"
    with pytest.raises(UnsupportedMediaType):
        audio_features(b"\x89PNG\r\n\x1a\n" + b"0" * 100, RECIPE, max_seconds=2)
    with pytest.raises(InvalidInput):
        audio_features(_wav(_clips(1)[0], 16000)[:30], RECIPE, max_seconds=2)


def test_numpy_window_and_dct_equal_scipys() -> None:
    import scipy.fft
    import scipy.signal

    from service.features.spectral import dct_matrix, hann_window

    window = scipy.signal.get_window("hann", 512, fftbins=True)
    np.testing.assert_allclose(hann_window(512), window, atol=1e-12)
    dct = scipy.fft.dct(np.eye(40), type=2, norm="ortho", axis=0)[:20].T
    np.testing.assert_allclose(dct_matrix(40, 20), dct, atol=1e-12)


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax"),
    [
        (16000, 512, 40, 0.0, None),  # the bundled models' recipe
        (16000, 400, 80, 20.0, 7600.0),
        (22050, 2048, 128, 0.0, None),
        (8000, 256, 20, 300.0, 4000.0),
        (44100, 1024, 64, 0.0, 16000.0),
    ],
)
def test_filterbank_is_librosas_bit_for_bit(
    sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> None:
    """The numpy port stands in for librosa in the service (and the image has no librosa)."""
    from service.features.spectral import _filterbank

    reference = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float32
    )
    np.testing.assert_array_equal(_filterbank(sr, n_fft, n_mels, fmin, fmax), reference)


def _pcm_file(channels: int, rate: int, *, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    rng = np.random.default_rng(channels * rate)
    samples = rng.uniform(-1.0, 1.0, size=(rate // 4, channels)).astype(np.float32)
    samples[0] = 1.0  # full scale: the int16 clipping and scaling are exercised
    samples[1] = -1.0
    out = io.BytesIO()
    sf.write(out, samples, rate, subtype=subtype, format=fmt)
    return out.getvalue()


def _with_chunk_before_data(wav: bytes, chunk: bytes) -> bytes:
    at = wav.index(b"data")
    body = wav[:at] + chunk + wav[at:]
    return body[:4] + (len(body) - 8).to_bytes(4, "little") + body[8:]


def _libsndfile(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples.mean(axis=1, dtype=np.float32), rate


@pytest.mark.parametrize(
    "data",
    [
        _pcm_file(1, 16000),
        _pcm_file(2, 44100),
        _pcm_file(1, 8000, fmt="WAV"),
        _pcm_file(2, 16000, fmt="WAVEX"),
        _with_chunk_before_data(_pcm_file(1, 16000), b"LIST\x03\x00\x00\x00abc\x00"),  # odd: padded
    ],
    ids=["mono-16k", "stereo-44k", "mono-8k", "wavex-stereo", "list-chunk"],
)
def test_plain_pcm16_wav_decodes_exactly_as_libsndfile(data: bytes) -> None:
    assert plain_pcm16_wav(data) is not None
    samples, rate = decode_audio(data, max_seconds=30)
    expected, expected_rate = _libsndfile(data)
    assert rate == expected_rate
    np.testing.assert_array_equal(samples, expected)


@pytest.mark.parametrize(
    "data",
    [
        _pcm_file(1, 16000, subtype="PCM_24"),
        _pcm_file(1, 16000, subtype="FLOAT"),
        _pcm_file(1, 16000, subtype="PCM_U8"),
        _pcm_file(1, 16000, subtype="PCM_16", fmt="FLAC"),
        _pcm_file(1, 16000)[:-100],  # the data chunk declares more than the file holds
        _pcm_file(1, 16000)[:-1],  # and half a frame
        b"RIFF\x00\x00\x00\x00WAVE" + b"\x00" * 40,
    ],
    ids=["pcm24", "float", "pcm-u8", "flac", "short-data", "half-frame", "no-chunks"],
)
def test_other_audio_is_left_to_libsndfile(data: bytes) -> None:
    assert plain_pcm16_wav(data) is None
