"""Uploads generated in the tests: images in every supported format, audio in every encoding."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFont


def digit_image(digit: str = "7", size: int = 64, mode: str = "L") -> Image.Image:
    """A dark digit on a light background, like a scanned or photographed one."""
    img = Image.new("L", (size, size), 245)
    font = ImageFont.load_default(size=int(size * 0.8))
    ImageDraw.Draw(img).text((size // 2, size // 2), digit, fill=10, font=font, anchor="mm")
    return img.convert(mode)


def encode_image(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def png(img: Image.Image | None = None) -> bytes:
    return encode_image(img or digit_image(), "PNG")


def exif_rotated_jpeg() -> bytes:
    """The digit stored rotated, with EXIF orientation 6 saying how to turn it upright."""
    stored = digit_image(mode="RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 270 (i.e. 90 clockwise) to display
    return encode_image(stored, "JPEG", quality=95, exif=exif.tobytes())


def sixteen_bit_png() -> bytes:
    arr = np.asarray(digit_image(), dtype=np.uint16) * 257
    return encode_image(Image.fromarray(arr), "PNG")


def alpha_png() -> bytes:
    """A dark digit on a transparent background: the recipe's background shows through."""
    grey = np.asarray(digit_image())
    rgba = np.zeros((*grey.shape, 4), dtype=np.uint8)
    rgba[..., 3] = 255 - grey  # opaque where the digit is
    return encode_image(Image.fromarray(rgba, "RGBA"), "PNG")


IMAGE_FORMATS: dict[str, bytes] = {}


def image_formats() -> dict[str, bytes]:
    """Name -> encoded bytes, every format and pixel layout the service supports."""
    if IMAGE_FORMATS:
        return IMAGE_FORMATS
    rgb = digit_image(mode="RGB")
    IMAGE_FORMATS.update(
        {
            "png-grey": png(),
            "png-rgb": png(rgb),
            "png-palette": encode_image(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
            "png-alpha": alpha_png(),
            "png-la": encode_image(digit_image(mode="LA"), "PNG"),
            "png-16bit": sixteen_bit_png(),
            "jpeg": encode_image(rgb, "JPEG", quality=90),
            "jpeg-exif-rotated": exif_rotated_jpeg(),
            "jpeg-cmyk": encode_image(rgb.convert("CMYK"), "JPEG"),
            "jpeg-large": encode_image(digit_image(size=1600, mode="RGB"), "JPEG"),
            "webp": encode_image(rgb, "WEBP", lossless=True),
            "gif": encode_image(rgb.convert("P"), "GIF"),
            "gif-animated": _animated_gif(),
            "bmp": encode_image(rgb, "BMP"),
            "tiff": encode_image(rgb, "TIFF"),
            "tiff-cmyk": encode_image(rgb.convert("CMYK"), "TIFF"),
        }
    )
    return IMAGE_FORMATS


def _animated_gif() -> bytes:
    frames = [digit_image("7").convert("P"), digit_image("1").convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A real PNG whose header claims ``width x height``: a decompression bomb's signature."""
    data = bytearray(png(Image.new("L", (1, 1))))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def tone(seconds: float = 1.0, rate: int = 16000, channels: int = 1) -> np.ndarray:
    """A voiced-sounding signal: a few harmonics under an envelope, (samples, channels)."""
    t = np.arange(round(seconds * rate)) / rate
    signal = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((220, 440, 880)))
    signal = 0.3 * signal * np.hanning(t.size)
    return np.stack([signal * (1 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def encode_audio(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def audio_formats() -> dict[str, bytes]:
    """Name -> encoded bytes: every encoding, channel count, rate and length we accept."""
    mono, stereo = tone(), tone(channels=2)
    formats = {
        "wav-u8": encode_audio(mono, 16000, "WAV", "PCM_U8"),
        "wav-16": encode_audio(mono, 16000, "WAV", "PCM_16"),
        "wav-24": encode_audio(mono, 16000, "WAV", "PCM_24"),
        "wav-32": encode_audio(mono, 16000, "WAV", "PCM_32"),
        "wav-float": encode_audio(mono, 16000, "WAV", "FLOAT"),
        "wav-double": encode_audio(mono, 16000, "WAV", "DOUBLE"),
        "wav-stereo": encode_audio(stereo, 16000, "WAV", "PCM_16"),
        "wav-8khz": encode_audio(tone(rate=8000), 8000, "WAV", "PCM_16"),
        "wav-44khz": encode_audio(tone(rate=44100), 44100, "WAV", "PCM_16"),
        "wav-short": encode_audio(tone(0.3), 16000, "WAV", "PCM_16"),
        "wav-long": encode_audio(tone(2.5), 16000, "WAV", "PCM_16"),
        "flac": encode_audio(mono, 16000, "FLAC", "PCM_16"),
        "ogg-vorbis": encode_audio(stereo, 16000, "OGG", "VORBIS"),
    }
    if "MP3" in sf.available_formats():
        formats["mp3"] = encode_audio(tone(rate=22050), 22050, "MP3", "MPEG_LAYER_III")
    return formats


def speak(text: str, folder: Path, voice: str = "en") -> bytes | None:
    """WAV bytes of espeak-ng saying ``text``, or None where espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        return None
    out = folder / f"{voice}-{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True, timeout=30)
    return out.read_bytes()


# (PyAV muxer, audio encoder, encoder rate or None for the clip's own, muxer options)
_CONTAINERS: dict[str, tuple[str, str, int | None, dict[str, str]]] = {
    "m4a-aac": ("ipod", "aac", None, {}),
    "mp4-aac": ("mp4", "aac", None, {}),
    "mov-aac": ("mov", "aac", None, {}),
    # what MediaRecorder writes: fragmented MP4 (Safari), live WebM without length or cues
    "mp4-fragmented": ("mp4", "aac", None, {"movflags": "frag_keyframe+empty_moov"}),
    "webm-opus": ("webm", "libopus", 48000, {}),
    "webm-opus-live": ("webm", "libopus", 48000, {"live": "1"}),
    "mkv-vorbis": ("matroska", "vorbis", None, {}),
    "mkv-pcm": ("matroska", "pcm_s16le", None, {}),
}
CONTAINER_FORMATS = tuple(_CONTAINERS)


def encode_container(
    samples: np.ndarray,
    rate: int,
    name: str,
    *,
    video: bool = False,
    audio: bool = True,
    layout: str | None = None,
) -> bytes:
    """``(samples, channels)`` float32 encoded with PyAV (FFmpeg) as ``name`` in CONTAINER_FORMATS.

    ``video`` adds a small moving picture (MPEG-4 Part 2 in MP4/MOV, VP8 in WebM/Matroska).
    """
    import av  # imported here: only the container tests need it

    muxer, codec, codec_rate, options = _CONTAINERS[name]
    if codec == "vorbis" and samples.shape[1] == 1:
        samples = np.repeat(samples, 2, axis=1)  # FFmpeg's Vorbis encoder writes stereo only
    channels = samples.shape[1]
    layout = layout or {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer, options=options) as out:
        # Every stream is added before the first packet: the header is written then.
        picture = None
        if video:
            picture = out.add_stream("mpeg4" if muxer in ("mp4", "ipod", "mov") else "libvpx", 10)
            picture.width = picture.height = 32
            picture.pix_fmt = "yuv420p"
        # The wheel's only Vorbis encoder is FFmpeg's own, marked experimental.
        settings = {"strict": "experimental"} if codec == "vorbis" else {}
        sound = out.add_stream(codec, codec_rate or rate, layout=layout, options=settings)
        sound = sound if audio else None
        if picture is not None:
            for i in range(max(1, round(10 * samples.shape[0] / rate))):
                pixels = np.full((32, 32, 3), (i * 25) % 256, np.uint8)
                out.mux(picture.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            out.mux(picture.encode(None))
        if sound is not None:
            # Interleaved: PyAV's from_ndarray mis-counts the planes of > 8 planar channels.
            interleaved = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(interleaved, format="flt", layout=layout)
            frame.sample_rate = rate  # PyAV resamples to the encoder's rate and format
            out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return buf.getvalue()
