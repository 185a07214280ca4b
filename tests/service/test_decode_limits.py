"""Decode limits as pure functions: what an image, a V2 header or a request's rows may cost is
refused before the work, naming the setting; HTTP behaviour is in test_hostile_decode.py."""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Callable

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from export.config import AUDIO_RECIPE, IMAGE_RECIPE
from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.features.audio import audio_features, decode_audio
from service.features.image import decoded_bytes_per_pixel, image_features, open_image
from service.runtime.budget import DecodeBudget
from service.settings import Limits
from service.v2.bounds import check_shapes
from service.v2.codec import decode_request, decompress
from service.v2.schemas import RequestInput
from tests.service import hostile_inputs as hostile
from tests.service.media import encode_container

LIMITS = Limits()


def _features(data: bytes, **limits: int) -> np.ndarray:
    return image_features(
        data,
        IMAGE_RECIPE,
        max_pixels=limits.get("max_pixels", LIMITS.max_image_pixels),
        max_decoded_bytes=limits.get("max_decoded_bytes", LIMITS.max_image_decoded_bytes),
    )


@pytest.mark.parametrize(
    ("mode", "per_pixel"),
    [("L", 1), ("1", 1), ("I;16", 2), ("P", 4), ("RGB", 4), ("RGBA", 4), ("CMYK", 4), ("I", 4)],
)
def test_bytes_per_decoded_pixel(mode: str, per_pixel: int) -> None:
    assert decoded_bytes_per_pixel(mode) == per_pixel


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: hostile.sixteen_bit_png(hostile.HUGE), "limits.max_image_pixels"),
        (lambda: hostile.webp(hostile.HUGE), "limits.max_image_pixels"),
        (lambda: hostile.gif(hostile.HUGE), "limits.max_image_pixels"),
        (lambda: hostile.rgba_png(2800), "limits.max_image_decoded_bytes"),
        (lambda: hostile.palette_png(2800), "limits.max_image_decoded_bytes"),
    ],
)
def test_images_over_a_limit_are_refused_before_decoding(
    build: Callable[[], bytes], setting: str
) -> None:
    data = build()
    start = time.perf_counter()
    with pytest.raises(PayloadTooLarge) as caught:
        _features(data)
    assert (time.perf_counter() - start) < 0.05
    assert caught.value.field == "image"
    assert setting in caught.value.message


def test_a_16_bit_png_over_the_decoded_bytes_limit_is_refused() -> None:
    data = hostile.sixteen_bit_png(2000)  # 4 Mpx x 2 bytes = 8 MB
    with pytest.raises(PayloadTooLarge, match="2 bytes per pixel"):
        _features(data, max_decoded_bytes=7_999_999)
    assert _features(data, max_decoded_bytes=8_000_000).shape == (1, 32, 32)


def test_sixteen_bit_grey_scales_as_the_float64_formula_did() -> None:
    values = np.random.default_rng(0).integers(0, 65536, (64, 64), dtype=np.uint16)
    values[0, :4] = [0, 128, 32767, 65535]
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, "PNG")
    img = open_image(buf.getvalue(), max_pixels=10_000)
    assert img.mode.startswith("I;16")
    old = np.clip(values.astype(np.float64) / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    expected = image_features(
        _encode(Image.fromarray(old, "L"), "PNG"), IMAGE_RECIPE, max_pixels=10_000
    )
    np.testing.assert_array_equal(_features(buf.getvalue()), expected)


def test_a_jpeg_counts_the_pixels_it_decodes_after_draft() -> None:
    data = hostile.jpeg(hostile.HUGE)  # 36 Mpx, decoded at 1/8: 750x750
    assert _features(data, max_pixels=1_000_000).shape == (1, 32, 32)


def test_only_the_first_frame_of_an_animation_is_decoded() -> None:
    first = Image.new("L", (64, 64), 240).convert("P")
    second = Image.new("L", (64, 64), 10).convert("P")
    buf = io.BytesIO()
    first.save(buf, "GIF", save_all=True, append_images=[second] * 50)
    np.testing.assert_array_equal(_features(buf.getvalue()), _features(_encode(first, "GIF")))


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _input(shape: list[int], datatype: str = "FP32") -> RequestInput:
    return RequestInput(name="image", shape=shape, datatype=datatype)


@pytest.mark.parametrize("shape", [[0, 2**62], [0, 10**30], [2000, 2000]])
def test_shapes_are_bounded_per_dimension_and_in_all(shape: list[int]) -> None:
    with pytest.raises(PayloadTooLarge, match="limits.max_v2_elements") as caught:
        check_shapes([_input(shape)], max_elements=1_000_000)
    assert caught.value.field == "image"


def test_the_inputs_together_are_bounded() -> None:
    check_shapes([_input([1000, 1000])], max_elements=1_000_000)
    with pytest.raises(PayloadTooLarge):
        check_shapes([_input([1000, 1000]), _input([1])], max_elements=1_000_000)


def test_a_zero_size_huge_shape_is_a_client_error_not_a_crash() -> None:
    body = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[0,4611686018427387904],"data":[]}]}'
    with pytest.raises(PayloadTooLarge):
        decode_request(body, None)


def test_json_numbers_are_counted_before_parsing() -> None:
    body = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[3],"data":[' + b"0," * 5000
    with pytest.raises(PayloadTooLarge, match="limits.max_v2_elements"):
        decode_request(body + b"0]}]}", None, max_elements=100)  # not even valid JSON here


def test_gzip_is_refused_as_soon_as_its_json_passes_the_budget() -> None:
    body = hostile.gzip_json_zeros(12_000_000)
    start = time.perf_counter()
    with pytest.raises(PayloadTooLarge, match="limits.max_v2_elements"):
        decompress(body, "gzip", 25_000_000, max_elements=1_000_000)
    assert time.perf_counter() - start < 0.05


def test_a_gzip_header_is_checked_before_its_binary_data_is_inflated() -> None:
    body, header_length = hostile.gzip_binary_empty_bytes(500_000)  # within max_v2_elements
    seen: list[list[int]] = []

    def check(inputs: object) -> None:
        seen.extend(list(i.shape) for i in inputs)  # type: ignore[attr-defined]
        raise InvalidInput("too many rows")

    with pytest.raises(InvalidInput, match="too many rows"):
        decompress(body, "gzip", 25_000_000, json_length=header_length, check_inputs=check)
    assert seen == [[500_000]]


def test_gzip_past_the_body_limit_is_refused() -> None:
    with pytest.raises(PayloadTooLarge, match="limits.max_body_bytes"):
        decompress(gzip.compress(bytes(5_000_000)), "gzip", 3_000_000)


def test_the_urlencoded_limit_follows_the_text_limit() -> None:
    assert Limits().urlencoded_limit == 2_000 * 12 + 64
    assert Limits(max_text_chars=10).urlencoded_limit == 184
    assert Limits(max_urlencoded_bytes=500).urlencoded_limit == 500


def test_a_decode_budget_refuses_the_rows_after_it_is_spent() -> None:
    budget = DecodeBudget(limit_ms=20)

    def busy() -> int:
        end = time.thread_time() + 0.03
        while time.thread_time() < end:
            pass
        return 1

    assert budget.run(busy) == 1  # starts within the budget, so it runs
    with pytest.raises(PayloadTooLarge, match="limits.max_request_decode_ms"):
        budget.run(busy)
    assert budget.rows == 1 and budget.spent_ms >= 30


def test_audio_is_bounded_by_channels_x_rate_x_seconds() -> None:
    data = hostile.silent_flac(8, 384_000, 3)  # 9.2 M samples, each limit alone fine
    start = time.perf_counter()
    with pytest.raises(PayloadTooLarge, match="limits.max_audio_samples") as caught:
        audio_features(data, AUDIO_RECIPE, max_seconds=30, max_samples=6_000_000)
    assert time.perf_counter() - start < 0.05
    assert caught.value.field == "audio"
    stereo = hostile.silent_flac(2, 48_000, 30)  # 2.9 M samples
    features = audio_features(stereo, AUDIO_RECIPE, max_seconds=30, max_samples=6_000_000)
    assert features.shape == (20, 101)


def test_container_audio_is_bounded_by_its_samples_while_decoding() -> None:
    samples = np.zeros((48_000 * 16, 8), dtype=np.float32)  # 8 channels x 48 kHz x 16 s
    data = encode_container(samples, 48_000, "webm-opus-live", layout="7.1")
    with pytest.raises(PayloadTooLarge, match="limits.max_audio_samples"):
        audio_features(data, AUDIO_RECIPE, max_seconds=30, max_samples=6_000_000)


@pytest.mark.parametrize("name", ["webm-opus-live", "m4a-aac"])
def test_eight_channel_audio_decodes_without_reading_past_its_planes(name: str) -> None:
    """PyAV 18.1's own conversion reads a 9th plane of an 8-channel planar frame (a crash)."""
    tone = np.sin(np.arange(48_000 * 2) * (2 * np.pi * 440 / 48_000)).astype(np.float32)
    samples = np.repeat(tone[:, None] * 0.5, 8, axis=1)
    mono, rate = decode_audio(encode_container(samples, 48_000, name, layout="7.1"), max_seconds=30)
    assert rate == 48_000 and np.isfinite(mono).all()
    assert 0.2 < float(np.abs(mono).max()) < 0.8  # the tone, mixed: not garbage, not silence


@pytest.mark.parametrize("fmt", ["AU", "AIFF", "CAF", "W64", "VOC", "IRCAM", "NIST", "SVX"])
def test_only_the_documented_audio_formats_are_decoded(fmt: str) -> None:
    buf = io.BytesIO()
    sf.write(buf, np.zeros((16_000, 1), np.float32), 16_000, format=fmt, subtype="PCM_16")
    with pytest.raises(UnsupportedMediaType, match=f"{fmt} audio is not supported") as caught:
        decode_audio(buf.getvalue(), max_seconds=30)
    assert caught.value.field == "audio"


def test_a_stream_of_unknown_length_is_read_a_second_at_a_time_within_the_limits() -> None:
    """The path for MP3/OGG streams that report no frame count (a WAV stands in for one)."""
    from service.features.audio import _read_bounded
    from service.features.audio_limits import AudioBounds

    wave = np.random.default_rng(0).standard_normal((16_000 * 3, 2)).astype(np.float32) * 0.1
    buf = io.BytesIO()
    sf.write(buf, wave, 16_000, format="WAV", subtype="FLOAT")
    with sf.SoundFile(io.BytesIO(buf.getvalue())) as f:
        np.testing.assert_array_equal(_read_bounded(f, AudioBounds(30)), wave)
    with sf.SoundFile(io.BytesIO(buf.getvalue())) as f, pytest.raises(PayloadTooLarge):
        _read_bounded(f, AudioBounds(30, max_samples=50_000))  # 2 s of stereo passes it
