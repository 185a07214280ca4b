"""MP4/M4A/MOV and WebM/Matroska audio -> mono float32, decoded with PyAV (FFmpeg).

What phones (M4A/AAC, 3GP/AMR) and browsers' MediaRecorder (WebM/Opus, MP4/AAC) record,
which libsndfile does not read. PyAV's wheel carries FFmpeg's own decoders, so nothing is
needed from the system. The container is recognised from its bytes (an ``ftyp`` box; the
EBML magic) and FFmpeg is told which demuxer to use, so it never probes for another one (its
playlist and concat demuxers would follow references to other files). The bytes are read
from memory; MOV external data references stay off and no other file or URL may be opened.

Bounded before and while decoding, whatever the header says:

- layout (channels, sample rate) and length from the header, then on every decoded frame;
  decoding stops as soon as the decoded samples pass ``max_audio_seconds``;
- the first audio stream only: other streams' packets (video) are discarded by the demuxer,
  never decoded, and FFmpeg's stream probe is told to skip every frame; a file without audio
  is a 422;
- at most ``_PACKETS_PER_SECOND`` audio packets per second of the limit, so a stream of
  empty packets cannot spin the decoder for long;
- codecs from a short list (the formats people record), not all of FFmpeg's;
- any FFmpeg error (corrupt, truncated) is a 422 naming ``audio``; FFmpeg's log stays off.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from typing import Final

import av
import av.logging
import numpy as np
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame
from av.audio.plane import AudioPlane
from av.audio.stream import AudioStream
from av.container import InputContainer

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.features.audio_limits import FIELD, AudioBounds
from service.settings import MAX_AUDIO_CHANNELS

# PyAV's default, set here because the service depends on it: FFmpeg logs a line per bad
# frame, which would let any client flood the server's stderr. Errors still raise.
av.logging.set_level(None)

_EBML_MAGIC: Final = b"\x1a\x45\xdf\xa3"
# (FFmpeg demuxer, the name in messages)
_MP4: Final = ("mov", "MP4/M4A/MOV")
_MATROSKA: Final = ("matroska", "WebM/Matroska")
# FFmpeg decoder names. AAC (M4A, MP4), Opus and Vorbis (WebM), AMR (3GP voice memos), and
# the codecs people put in MP4/MKV besides; PCM by prefix.
_CODECS: Final = frozenset(
    {"aac", "aac_latm", "opus", "vorbis", "mp3", "mp3float", "alac", "flac", "amrnb", "amrwb"}
)
# The shortest packets in use are Opus's 2.5 ms frames (400 a second); Vorbis short blocks
# and AAC's 1024 samples are longer. 1000 a second leaves room and bounds a stream of empty
# packets.
_PACKETS_PER_SECOND: Final = 1000
# A file whose decoded length falls short of its declared length by more than this is cut.
_TRUNCATION_SLACK: Final = 0.05
# Opening a file runs FFmpeg's stream probe, which decodes a few frames of every stream to
# learn their parameters: for a 1080p H.264 video that was ~110 ms of video decoding per
# request. skip_frame=all keeps the probe to the headers (~2 ms); one decoder thread each.
_PROBE_OPTIONS: Final = {"skip_frame": "all", "threads": "1"}
# FFmpeg's defaults already, made explicit: a MOV's data references to other files are not
# followed, and no nested open (file, http, ...) is allowed whatever a demuxer asks.
_NO_OTHER_FILES: Final = {"enable_drefs": "0", "protocol_whitelist": "none"}
_INT_SCALES: Final = {
    np.dtype(np.uint8): 128.0,
    np.dtype(np.int16): 32768.0,
    np.dtype(np.int32): 2.0**31,
}
# The sample formats converted to numpy (not s64, which 64-bit PCM decodes to), and their dtypes.
_SAMPLE_DTYPES: Final[dict[str, np.dtype[np.generic]]] = {
    "u8": np.dtype(np.uint8),
    "s16": np.dtype("<i2"),
    "s32": np.dtype("<i4"),
    "flt": np.dtype("<f4"),
    "dbl": np.dtype("<f8"),
}
_SAMPLE_FORMATS: Final = frozenset(_SAMPLE_DTYPES)


def container_format(data: bytes) -> tuple[str, str] | None:
    """``(demuxer, name)`` when the bytes start like an MP4-family or Matroska file."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return _MP4
    if data[:4] == _EBML_MAGIC:
        return _MATROSKA
    return None


def decode_container(
    data: bytes, container: tuple[str, str], bounds: AudioBounds
) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate from the first audio stream of ``data``."""
    demuxer, name = container
    # Never more planes than PyAV converts safely (see MAX_AUDIO_CHANNELS), whoever calls.
    bounds = replace(bounds, max_channels=min(bounds.max_channels, MAX_AUDIO_CHANNELS))
    try:
        with av.open(
            io.BytesIO(data),
            format=demuxer,
            options=_PROBE_OPTIONS,
            container_options=_NO_OTHER_FILES,
            metadata_errors="replace",  # tags are not used; bad UTF-8 in them is no error
        ) as opened:
            assert isinstance(opened, InputContainer)  # mode "r"
            return _decode(opened, name, bounds)
    except av.FFmpegError as exc:
        raise InvalidInput(
            f"corrupt or truncated {name} audio: {exc.strerror}", field=FIELD
        ) from exc


def _decode(container: InputContainer, name: str, bounds: AudioBounds) -> tuple[np.ndarray, int]:
    stream = _audio_stream(container, name)
    context = stream.codec_context
    bounds.check_layout(context.channels, context.sample_rate)
    declared = _declared_seconds(container, stream)
    if declared is not None:
        bounds.check_declared(declared, context.sample_rate, context.channels)
    context.thread_count = 1  # audio decoders barely thread; one per request is enough
    # The decoder's rate, not the header's: HE-AAC decodes at twice the rate M4A headers say.
    chunks, total, sample_rate = [], 0, 0
    for frame in _frames(container, stream, bounds):
        bounds.check_layout(frame.layout.nb_channels, frame.sample_rate)  # before to_ndarray
        if frame.format.packed.name not in _SAMPLE_FORMATS:
            raise UnsupportedMediaType(
                f"{name} audio decodes to {frame.format.name} samples, which are not supported",
                field=FIELD,
            )
        if sample_rate and frame.sample_rate != sample_rate:
            raise InvalidInput(f"{name} audio changes sample rate within the stream", field=FIELD)
        sample_rate = frame.sample_rate
        total += frame.samples
        bounds.check_decoding(total, sample_rate, frame.layout.nb_channels)  # before it is kept
        chunks.append(_mono(frame))
    if not chunks:
        return np.zeros(0, np.float32), context.sample_rate
    if declared is not None and total / sample_rate < declared * (1 - _TRUNCATION_SLACK) - 0.1:
        raise InvalidInput(
            f"{name} audio is truncated: {total / sample_rate:.2f} s of a declared "
            f"{declared:.2f} s",
            field=FIELD,
        )
    return np.concatenate(chunks), sample_rate


def _audio_stream(container: InputContainer, name: str) -> AudioStream:
    if not container.streams.audio:
        what = "video but no audio" if container.streams.video else "no audio"
        raise InvalidInput(f"the {name} file has {what} track", field=FIELD)
    stream = container.streams.audio[0]
    # No codec context: FFmpeg has no decoder for the stream's codec id.
    context: AudioCodecContext | None = stream.codec_context
    codec = "an unknown codec" if context is None else context.name
    if context is None or (codec not in _CODECS and not codec.startswith("pcm_")):
        raise UnsupportedMediaType(
            f"{name} audio in {codec} is not supported; send AAC, Opus, Vorbis, MP3, ALAC, "
            "FLAC, AMR or PCM",
            field=FIELD,
        )
    return stream


def _declared_seconds(container: InputContainer, stream: AudioStream) -> float | None:
    """The audio's length from the header, where it says so for the audio itself.

    MP4 gives each track's length; Matroska gives only the whole file's, which is the audio's
    when the file has nothing else (a recording without video). Streamed recordings
    (MediaRecorder's WebM) give none: their length is checked while decoding.
    """
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and len(container.streams) == 1:
        return float(Fraction(container.duration, av.time_base))
    return None


def _frames(
    container: InputContainer, stream: AudioStream, bounds: AudioBounds
) -> Iterator[AudioFrame]:
    max_packets = math.ceil(bounds.max_seconds * _PACKETS_PER_SECOND)
    for count, packet in enumerate(container.demux(stream), start=1):
        if count > max_packets + 1:  # + 1: the empty packet that flushes the decoder
            raise PayloadTooLarge(
                f"audio has more than {max_packets} packets, more than "
                f"{bounds.max_seconds:g} s of audio can hold (limits.max_audio_seconds)",
                field=FIELD,
            )
        yield from packet.decode()


def _samples(frame: AudioFrame) -> np.ndarray:
    """``frame.to_ndarray()`` without ``frame.planes``: PyAV 18.1 counts planes up to the first
    null pointer, and an 8-channel planar frame (7.1 Opus or AAC) has none after its 8, so it
    reads past ``AVFrame.data`` and converts what follows as a 9th plane: a segfault from a
    small upload. Only the frame's own planes are read (tested at 8 channels)."""
    dtype = _SAMPLE_DTYPES[frame.format.packed.name]
    channels = frame.layout.nb_channels
    planes, count = (channels, frame.samples) if frame.format.is_planar else (1, 0)
    count = count or frame.samples * channels
    return np.vstack(
        [np.frombuffer(memoryview(AudioPlane(frame, i)), dtype, count) for i in range(planes)]
    )


def _mono(frame: AudioFrame) -> np.ndarray:
    """One frame as float32 mono, scaled and mixed as the WAV readers do."""
    array = _samples(frame)  # planar: (channels, samples); interleaved: (1, samples x ch)
    channel_axis = 0
    if not frame.format.is_planar:
        array, channel_axis = array.reshape(-1, frame.layout.nb_channels), 1
    scale = _INT_SCALES.get(array.dtype)
    if scale is not None:  # as libsndfile normalises integer samples
        offset = 128.0 if array.dtype == np.uint8 else 0.0
        array = (array.astype(np.float32) - offset) / np.float32(scale)
    mono: np.ndarray = array.mean(axis=channel_axis, dtype=np.float32)
    return mono
