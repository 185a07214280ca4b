"""Audio bytes -> float32 ``(coefficients, frames)`` as the manifest's recipe says.

Decoding is libsndfile's (through soundfile): WAV (8/16/24/32-bit integer, 32/64-bit float),
FLAC, OGG/Vorbis, Opus and MP3, and only those of the formats libsndfile reads (AU, AIFF, CAF,
W64, VOC and a dozen more are refused: each is more parser for a client to reach, for no
user); a plain 16-bit PCM WAV, the commonest upload, is read directly with the same result
(``plain_pcm16_wav``).
MP4/M4A/MOV and WebM/Matroska (AAC, Opus: what phones and browsers record) are decoded with
PyAV (:mod:`service.features.audio_containers`). The format comes from the bytes. Length,
channels and sample rate are checked from the header before decoding
(:mod:`service.features.audio_limits`), so an hour-long upload is refused without being
decoded. Resampling is soxr's (what librosa uses by default), which releases the GIL. The
spectral part is :mod:`service.features.spectral`.
"""

from __future__ import annotations

import io
import re
import struct

import numpy as np
import soundfile as sf
import soxr

from service.errors import InvalidInput, UnsupportedMediaType
from service.features.audio_containers import container_format, decode_container
from service.features.audio_limits import FIELD, AudioBounds
from service.features.spectral import extractor_for
from service.manifest import AudioRecipe
from service.settings import MAX_AUDIO_CHANNELS, MAX_AUDIO_SAMPLE_RATE

# libsndfile's names for the documented formats (WAVEX: WAV with the extensible header).
_SOUNDFILE_FORMATS = frozenset({"WAV", "WAVEX", "FLAC", "OGG", "MP3"})
_SUPPORTED = (
    "WAV, FLAC, OGG/Vorbis, Opus, MP3, M4A/AAC, MP4, WebM/Opus or Matroska"  # as documented
)
# libsndfile reads a truncated WAV/AIFF without complaint, noting in its log that the data
# chunk "should be" shorter than declared. Streaming writers declare 0 or 0xFFFFFFFF (unknown).
_SHORT_DATA_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _truncated(log: str) -> bool:
    match = _SHORT_DATA_CHUNK.search(log)
    if match is None:
        return False
    declared, actual = int(match[1]), int(match[2])
    return 0 < declared < 0xFFFFFFFF and actual < declared


# WAVE_FORMAT_EXTENSIBLE's sub-format GUID for integer PCM (KSDATAFORMAT_SUBTYPE_PCM).
_PCM_GUID = bytes.fromhex("0100000000001000800000aa00389b71")
_WAVE_FORMAT_PCM, _WAVE_FORMAT_EXTENSIBLE = 1, 0xFFFE
_INT16_SCALE = np.float32(1.0 / 32768.0)  # libsndfile's int16 -> float normalisation


def plain_pcm16_wav(data: bytes) -> tuple[np.ndarray, int] | None:
    """``(int16 (frames, channels), sample rate)`` for a plain 16-bit PCM WAV, else None.

    The commonest upload, read without libsndfile: opening it through soundfile's virtual
    I/O cost about 0.15-0.2 ms a clip, most of a request's decoding. Only a well-formed file
    is read here (fmt before a complete data chunk, whole frames); anything else — other
    sample formats, truncation, streaming sizes — returns None and goes to libsndfile, which
    also words the errors.
    """
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    position, layout = 12, None
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], struct.unpack_from("<I", data, position + 4)[0]
        start = position + 8
        if chunk == b"fmt ":
            if size < 16 or start + size > len(data):
                return None
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", data, start)
            extensible = tag == _WAVE_FORMAT_EXTENSIBLE and size >= 40
            if not (
                tag == _WAVE_FORMAT_PCM
                or (extensible and data[start + 24 : start + 40] == _PCM_GUID)
            ):
                return None
            if bits != 16 or channels < 1 or block_align != 2 * channels or rate <= 0:
                return None
            layout = (channels, rate)
        elif chunk == b"data":
            if layout is None or size == 0 or start + size > len(data) or size % (2 * layout[0]):
                return None
            samples = np.frombuffer(data, dtype="<i2", count=size // 2, offset=start)
            return samples.reshape(-1, layout[0]), layout[1]
        position = start + size + (size & 1)  # chunks are padded to an even length
    return None


def decode_audio(
    data: bytes,
    *,
    max_seconds: float,
    max_channels: int = MAX_AUDIO_CHANNELS,
    max_sample_rate: int = MAX_AUDIO_SAMPLE_RATE,
    max_samples: int | None = None,
) -> tuple[np.ndarray, int]:
    """Decode an upload to mono float32 at its own sample rate."""
    bounds = AudioBounds(max_seconds, max_channels, max_sample_rate, max_samples)
    if (plain := plain_pcm16_wav(data)) is not None:
        pcm, sample_rate = plain
        bounds.check_layout(pcm.shape[1], sample_rate)
        bounds.check_length(pcm.shape[0], sample_rate, pcm.shape[1])
        return _mono(pcm.astype(np.float32) * _INT16_SCALE, sample_rate, bounds)
    if (container := container_format(data)) is not None:
        return _checked(*decode_container(data, container, bounds), bounds)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.format not in _SOUNDFILE_FORMATS:
                raise UnsupportedMediaType(
                    f"{f.format} audio is not supported; send {_SUPPORTED}", field=FIELD
                )
            sample_rate, frames = f.samplerate, f.frames
            bounds.check_layout(f.channels, sample_rate)
            if _truncated(f.extra_info):
                raise InvalidInput("audio is truncated: the file ends inside its data", field=FIELD)
            if 0 < frames:
                bounds.check_length(frames, sample_rate, f.channels)
                samples = f.read(dtype="float32", always_2d=True)
            else:  # some streams (MP3, OGG) report no frame count
                samples = _read_bounded(f, bounds)
    except sf.LibsndfileError as exc:
        if "unknown format" in str(exc).lower() or "format not recognised" in str(exc).lower():
            raise UnsupportedMediaType(
                f"not a supported audio file ({_SUPPORTED})", field=FIELD
            ) from exc
        raise InvalidInput(f"unreadable audio: {exc.error_string}", field=FIELD) from exc
    except (RuntimeError, ValueError, TypeError, EOFError) as exc:
        raise InvalidInput(f"corrupt or truncated audio: {exc}", field=FIELD) from exc
    return _mono(samples, sample_rate, bounds)


def _read_bounded(f: sf.SoundFile, bounds: AudioBounds) -> np.ndarray:
    """A stream of unknown length, a second at a time, stopping once it passes a limit."""
    blocks: list[np.ndarray] = []
    total = 0
    for block in f.blocks(blocksize=f.samplerate, dtype="float32", always_2d=True):
        total += block.shape[0]
        bounds.check_decoding(total, f.samplerate, f.channels)
        blocks.append(block)
    if not blocks:
        return np.zeros((0, f.channels), np.float32)
    return np.concatenate(blocks)


def _mono(samples: np.ndarray, sample_rate: int, bounds: AudioBounds) -> tuple[np.ndarray, int]:
    """``(frames, channels)`` float32 -> checked mono float32."""
    return _checked(samples.mean(axis=1, dtype=np.float32), sample_rate, bounds)


def _checked(mono: np.ndarray, sample_rate: int, bounds: AudioBounds) -> tuple[np.ndarray, int]:
    """Mono float32 -> itself, once it is known to be non-empty, within the length, finite."""
    if mono.shape[0] == 0:
        raise InvalidInput("audio contains no samples", field=FIELD)
    bounds.check_length(mono.shape[0], sample_rate)
    if not np.all(np.isfinite(mono)):
        raise InvalidInput("audio contains NaN or infinite samples", field=FIELD)
    return mono, sample_rate


def fit_clip(samples: np.ndarray, sample_rate: int, recipe: AudioRecipe) -> np.ndarray:
    """Mono samples at any rate -> float32 of exactly ``recipe.clip_samples``."""
    if sample_rate != recipe.sample_rate:
        samples = soxr.resample(samples, sample_rate, recipe.sample_rate, quality="HQ")
    target = recipe.clip_samples
    n = samples.shape[0]
    if n > target:
        start = (n - target) // 2 if recipe.crop == "center" else 0
        samples = samples[start : start + target]
    elif n < target:
        before = (target - n) // 2 if recipe.pad == "center" else 0
        samples = np.pad(samples, (before, target - n - before))
    return np.ascontiguousarray(samples, dtype=np.float32)


def clip_batch_features(clips: np.ndarray, recipe: AudioRecipe) -> np.ndarray:
    """``(B, clip_samples)`` -> float32 ``(B, coefficients, frames)``, one FFT for the batch."""
    return extractor_for(recipe)(clips)


def audio_features(
    data: bytes,
    recipe: AudioRecipe,
    *,
    max_seconds: float,
    max_channels: int = MAX_AUDIO_CHANNELS,
    max_sample_rate: int = MAX_AUDIO_SAMPLE_RATE,
    max_samples: int | None = None,
) -> np.ndarray:
    """Uploaded bytes -> the graph's audio input for one row."""
    samples, sample_rate = decode_audio(
        data,
        max_seconds=max_seconds,
        max_channels=max_channels,
        max_sample_rate=max_sample_rate,
        max_samples=max_samples,
    )
    clip = fit_clip(samples, sample_rate, recipe)
    features: np.ndarray = clip_batch_features(clip[None, :], recipe)[0]
    return features
