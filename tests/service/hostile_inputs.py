"""Small requests that decode huge, generated in the tests (none is committed).

Each builder returns what goes on the wire: a few KB of PNG, WebP, GIF or TIFF declaring
thousands of pixels a side, or a gzip V2 body that inflates to tens of megabytes.
"""

from __future__ import annotations

import gzip
import io
import json
import struct

import numpy as np
import soundfile as sf
from PIL import Image

HUGE = 6000  # pixels a side: 36 Mpx, within the old 40 Mpx limit
BIG = 2000  # 4 Mpx: within the new limits in every mode, the most a request may decode


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _flat(mode: str, side: int) -> Image.Image:
    """One colour (compresses to almost nothing) with a dark square, so it is not blank."""
    img = Image.new(mode, (side, side), _light(mode))
    img.paste(_dark(mode), (side // 4, side // 4, 3 * side // 4, 3 * side // 4))
    return img


def _light(mode: str) -> int | tuple[int, ...]:
    return {"RGBA": (255, 255, 255, 0), "RGB": (240, 240, 240), "I;16": 60000}.get(mode, 240)


def _dark(mode: str) -> int | tuple[int, ...]:
    return {"RGBA": (0, 0, 0, 255), "RGB": (10, 10, 10), "I;16": 1000}.get(mode, 10)


def sixteen_bit_png(side: int) -> bytes:
    return _encode(_flat("I;16", side), "PNG", compress_level=9)


def rgba_png(side: int) -> bytes:
    return _encode(_flat("RGBA", side), "PNG", compress_level=9)


def palette_png(side: int) -> bytes:
    return _encode(_flat("RGB", side).convert("P", palette=Image.Palette.ADAPTIVE), "PNG")


def webp(side: int) -> bytes:
    return _encode(_flat("RGB", side), "WEBP", lossless=True)


def gif(side: int) -> bytes:
    return _encode(_flat("L", side).convert("P"), "GIF")


def tiff(side: int) -> bytes:
    return _encode(_flat("RGB", side), "TIFF", compression="tiff_adobe_deflate")


def jpeg(side: int) -> bytes:
    return _encode(_flat("RGB", side), "JPEG", quality=50)


def animated_gif(side: int, frames: int) -> bytes:
    """Many full-size frames; only the first may be decoded."""
    images = [_flat("L", side).convert("P") for _ in range(2)]
    buf = io.BytesIO()
    images[0].save(
        buf, "GIF", save_all=True, append_images=images[1:] * (frames // 2), duration=10, loop=0
    )
    return buf.getvalue()


def multipage_tiff(side: int, pages: int) -> bytes:
    first = _flat("L", side)
    buf = io.BytesIO()
    first.save(
        buf, "TIFF", save_all=True, append_images=[first] * (pages - 1), compression="tiff_lzw"
    )
    return buf.getvalue()


def v2_json(inputs: list[dict[str, object]]) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


def gzip_json_zeros(count: int) -> bytes:
    """A JSON V2 request of ``count`` zeros in ``data``, gzipped (12 M zeros: ~24 KB)."""
    head = b'{"inputs":[{"name":"image","datatype":"FP32","shape":[%d],"data":[' % count
    return gzip.compress(head + b"0," * (count - 1) + b"0]}]}", compresslevel=9)


def gzip_json_empty_strings(count: int) -> bytes:
    head = b'{"inputs":[{"name":"text","datatype":"BYTES","shape":[%d],"data":[' % count
    return gzip.compress(head + b'"",' * (count - 1) + b'""]}]}', compresslevel=9)


def gzip_binary_empty_bytes(count: int) -> tuple[bytes, int]:
    """A binary V2 request: ``count`` empty BYTES elements (4 zero bytes each), gzipped; and
    the JSON header's length (Inference-Header-Content-Length)."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "datatype": "BYTES",
                    "shape": [count],
                    "parameters": {"binary_data_size": 4 * count},
                }
            ]
        }
    ).encode()
    return gzip.compress(header + bytes(4 * count), compresslevel=9), len(header)


def v2_raw_images(images: list[bytes]) -> tuple[bytes, int]:
    """A binary V2 request carrying ``images`` as the raw BYTES input ``image``."""
    data = b"".join(struct.pack("<I", len(i)) + i for i in images)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [len(images)],
                    "parameters": {"binary_data_size": len(data)},
                }
            ]
        }
    ).encode()
    return header + data, len(header)


def urlencoded_flood(size: int) -> bytes:
    return b"a=&" * (size // 3)


def zeros_feature_request(rows: int) -> bytes:
    """A legitimate JSON feature request: ``rows`` blank 32x32 images."""
    data = np.zeros((rows, 1, 32, 32), dtype=np.float32)
    return v2_json(
        [
            {
                "name": "image",
                "datatype": "FP32",
                "shape": list(data.shape),
                "data": data.ravel().tolist(),
            }
        ]
    )


def png_digit() -> bytes:
    return _encode(_flat("L", 64), "PNG")


def silent_flac(channels: int, rate: int, seconds: int) -> bytes:
    """Silence compresses to almost nothing: 8 channels at 384 kHz for 30 s is ~100 KB."""
    buf = io.BytesIO()
    second = np.zeros((rate, channels), dtype=np.int16)
    with sf.SoundFile(buf, "w", rate, channels, format="FLAC", subtype="PCM_16") as out:
        for _ in range(seconds):
            out.write(second)
    return buf.getvalue()
