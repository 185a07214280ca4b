"""M4A/MP4/MOV and WebM/Matroska audio (issue 11, item 5), through a real server over TCP.

Every file is encoded here with PyAV from a WAV (espeak-ng saying "seven", or a tone), so the
lossy round trip is measured against the same clip sent as WAV.
"""

from __future__ import annotations

import io
import struct

import av
import httpx
import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from service.errors import InvalidInput, PayloadTooLarge
from service.features.audio import audio_features, clip_batch_features, decode_audio, fit_clip
from service.settings import Limits
from tests.service import media
from tests.service.conftest import DirectModel

LOSSLESS = {"mkv-pcm"}
# PyAV's muxers do not record the AAC encoder's delay (1024 samples of priming, which
# FFmpeg trims where a file's edit list says so, as phones' files do): removed by hand here.
AAC_PRIMING = 1024
CASES = [(name, False) for name in media.CONTAINER_FORMATS] + [
    ("mp4-aac", True),  # a video file: its audio track is used, the video is not decoded
    ("webm-opus", True),
]


def _samples(wav: bytes) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    return samples, rate


def _predict(server: str, audio: bytes, name: str = "clip.bin") -> httpx.Response:
    return httpx.post(f"{server}/v1/predict?top_k=10", files={"audio": (name, audio)}, timeout=30)


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == "audio", error
    message: str = error["message"]
    return message


@pytest.mark.parametrize(("name", "video"), CASES, ids=[f"{n}{'+video' * v}" for n, v in CASES])
def test_recorded_formats_predict_as_the_wav_does(
    server: str, speech_seven: bytes, name: str, video: bool
) -> None:
    encoded = media.encode_container(*_samples(speech_seven), name, video=video)
    reference = _predict(server, speech_seven, "seven.wav")
    response = _predict(server, encoded, f"seven.{name.split('-')[0]}")
    assert reference.status_code == 200 and response.status_code == 200, response.text
    expected, got = reference.json()["tasks"]["digit"], response.json()["tasks"]["digit"]
    assert response.json()["modalities"] == ["audio"]
    assert got["label"] == expected["label"]
    expected_p = {item["label"]: item["probability"] for item in expected["top_k"]}
    for item in got["top_k"]:
        assert item["probability"] == pytest.approx(expected_p[item["label"]], abs=0.05)


@pytest.mark.parametrize("name", media.CONTAINER_FORMATS)
def test_features_are_the_wavs_within_the_codecs_loss(
    direct: DirectModel, speech_seven: bytes, name: str
) -> None:
    recipe = direct.manifest.modalities.audio
    assert recipe is not None
    reference = audio_features(speech_seven, recipe, max_seconds=30.0)
    samples, rate = decode_audio(
        media.encode_container(*_samples(speech_seven), name), max_seconds=30
    )
    if "aac" in name or name == "mp4-fragmented":
        samples = samples[AAC_PRIMING:]
    features = clip_batch_features(fit_clip(samples, rate, recipe)[None], recipe)[0]
    if name in LOSSLESS:  # same mixing, scaling and resampling as the WAV reader
        np.testing.assert_allclose(features, reference, atol=1e-4 * np.abs(reference).max())
    else:  # the codecs' noise moves the quiet frames' MFCCs; the shape stays
        assert np.corrcoef(features.ravel(), reference.ravel())[0, 1] > 0.9


def test_stereo_is_mixed_like_the_other_formats() -> None:
    # On the 16-bit grid, so that neither encoder's float -> int16 rounding matters.
    stereo = np.round(media.tone(channels=2) * 32767).astype(np.float32) / 32768
    mono, _ = decode_audio(media.encode_container(stereo, 16000, "mkv-pcm"), max_seconds=30)
    wav, _ = decode_audio(media.encode_audio(stereo, 16000, "WAV", "PCM_16"), max_seconds=30)
    np.testing.assert_array_equal(mono, wav)


def _live_webm(seconds: float) -> bytes:
    """What MediaRecorder sends: a WebM without length or cues."""
    return media.encode_container(media.tone(seconds, 48000), 48000, "webm-opus-live")


def _lying_webm(seconds: float) -> bytes:
    """A WebM whose header says it lasts 1 ms (Matroska's Duration, a float in ms)."""
    data = bytearray(media.encode_container(media.tone(seconds, 48000), 48000, "webm-opus"))
    duration = data.find(b"\x44\x89\x88")  # element id 0x4489, an 8-byte float follows
    assert duration > 0
    data[duration + 3 : duration + 11] = struct.pack(">d", 1.0)
    return bytes(data)


def test_length_limit_from_the_header_and_while_decoding(server: str) -> None:
    long_m4a = media.encode_container(media.tone(31), 16000, "m4a-aac")
    message = _error(_predict(server, long_m4a), 413)
    assert "31.0" in message and "the limit is 30 s (limits.max_audio_seconds)" in message
    for unknown_length in (_live_webm(31), _lying_webm(31)):
        message = _error(_predict(server, unknown_length), 413)
        assert "decoding stopped at 30.0" in message and "limits.max_audio_seconds" in message
    assert _predict(server, _live_webm(3)).status_code == 200


def test_layout_limits_apply_to_every_format(server: str) -> None:
    twelve = media.tone(channels=12)
    for audio in (
        media.encode_container(twelve, 16000, "mkv-pcm"),
        media.encode_audio(twelve, 16000, "WAV", "PCM_16"),  # the direct WAV reader
        media.encode_audio(twelve, 16000, "WAV", "PCM_24"),  # libsndfile
    ):
        message = _error(_predict(server, audio), 413)
        assert message == "audio has 12 channels; the limit is 8 (limits.max_audio_channels)"
    fast = media.encode_container(media.tone(0.5, 768000), 768000, "mkv-pcm")
    message = _error(_predict(server, fast), 413)
    assert "768000 Hz; the limit is 384000 Hz (limits.max_audio_sample_rate)" in message


def test_never_more_planes_than_pyav_converts_safely() -> None:
    # PyAV 18.1's AudioFrame.to_ndarray reads planes past the 8th out of bounds: 12-channel
    # Opus (planar floats) crashed the process. The ceiling holds whatever the caller asks.
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("libopus", 48000, layout="12c", options={"mapping_family": "255"})
        frame = av.AudioFrame.from_ndarray(media.tone(0.2, 48000, 12).reshape(1, -1), "flt", "12c")
        frame.sample_rate = 48000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(PayloadTooLarge, match="12 channels; the limit is 8"):
        decode_audio(buf.getvalue(), max_seconds=30, max_channels=16)
    with pytest.raises(ValidationError, match="max_audio_channels"):
        Limits(max_audio_channels=9)


def _corrupted(data: bytes) -> bytes:
    """Every 7th byte of the payload after the first 100 replaced: a damaged recording."""
    out = bytearray(data)
    start = out.find(b"mdat") + 100
    noise = np.random.default_rng(1).integers(0, 256, len(out), dtype=np.uint8)
    out[start:-2000:7] = noise[start:-2000:7].tobytes()
    return bytes(out)


def test_broken_files_are_4xx_naming_audio_and_the_service_stays_healthy(server: str) -> None:
    m4a = media.encode_container(media.tone(3), 16000, "m4a-aac")
    webm = media.encode_container(media.tone(3, 48000), 48000, "webm-opus")
    fragmented = media.encode_container(media.tone(3), 16000, "mp4-fragmented")
    video_only = media.encode_container(media.tone(), 16000, "mp4-aac", video=True, audio=False)
    cases = {
        "video only": (video_only, 422, "has video but no audio track"),
        "truncated m4a": (m4a[: len(m4a) // 2], 422, "corrupt or truncated MP4/M4A/MOV"),
        "truncated webm": (webm[: len(webm) // 2], 422, "audio is truncated"),
        "truncated fragmented mp4": (fragmented[: len(fragmented) // 2], 422, "truncated"),
        "damaged aac": (_corrupted(m4a), 422, "corrupt or truncated"),
        "ftyp then garbage": (m4a[:32] + bytes(range(256)) * 40, 422, "corrupt or truncated"),
        "EBML header only": (b"\x1a\x45\xdf\xa3" + bytes(64), 422, "WebM/Matroska"),
    }
    for case, (audio, status, words) in cases.items():
        assert words in _error(_predict(server, audio), status), case
    assert httpx.get(f"{server}/readyz").status_code == 200
    assert _predict(server, m4a).status_code == 200


def test_mutated_recordings_are_never_a_5xx() -> None:
    """Byte flips (also in the headers), cuts and splices: only the service's own 4xx errors.

    Found this way: a stream whose codec FFmpeg has no decoder for (no codec context), and
    tags that are not UTF-8 (PyAV decodes them strictly by default).
    """
    seeds = [
        media.encode_container(media.tone(0.5, 48000, 2), 48000, name)
        for name in media.CONTAINER_FORMATS
    ]
    seeds.append(media.encode_container(media.tone(0.5, 16000), 16000, "mp4-aac", video=True))
    rng = np.random.default_rng(0)
    outcomes = set()
    for i in range(800):
        data = bytearray(seeds[i % len(seeds)])
        kind = rng.integers(4)
        if kind == 0:  # a few bytes anywhere
            for at in rng.integers(0, len(data), size=int(rng.integers(1, 20))):
                data[at] = int(rng.integers(256))
        elif kind == 1:  # in the headers
            for at in rng.integers(0, min(600, len(data)), size=int(rng.integers(1, 8))):
                data[at] = int(rng.integers(256))
        elif kind == 2:  # cut
            data = data[: int(rng.integers(4, len(data)))]
        else:  # a chunk of the file repeated elsewhere
            at, start = rng.integers(0, len(data), size=2)
            data[at:at] = data[start : start + int(rng.integers(1, 500))]
        try:
            decode_audio(bytes(data), max_seconds=30)
            outcomes.add(200)
        except (InvalidInput, PayloadTooLarge) as exc:  # UnsupportedMediaType is an InvalidInput
            assert exc.status_code < 500 and exc.field == "audio"
            outcomes.add(exc.status_code)
    assert outcomes >= {200, 415, 422}


def test_a_codec_off_the_list_is_415(server: str) -> None:
    mp2 = io.BytesIO()
    with av.open(mp2, "w", format="matroska") as out:
        stream = out.add_stream("mp2", 16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(media.tone().T, format="flt", layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    message = _error(_predict(server, mp2.getvalue()), 415)
    assert "mp2 is not supported" in message


def test_packets_are_bounded_per_second_of_the_limit() -> None:
    # 1500 packets of 4 samples: 0.375 s of audio, but more packets than 1 s may hold.
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", 16000, layout="mono")
        for i in range(1500):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 4), np.int16), "s16", "mono")
            frame.sample_rate, frame.pts = 16000, 4 * i
            out.mux(stream.encode(frame))
    with pytest.raises(PayloadTooLarge, match="more than 1000 packets"):
        decode_audio(buf.getvalue(), max_seconds=1.0)
    assert decode_audio(buf.getvalue(), max_seconds=2.0)[0].shape == (6000,)


def test_ffmpeg_writes_nothing_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    damaged = _corrupted(media.encode_container(media.tone(3), 16000, "m4a-aac"))
    capfd.readouterr()
    with pytest.raises(InvalidInput):
        decode_audio(damaged, max_seconds=30)
    assert capfd.readouterr().err == ""
