"""Image bytes -> float32 ``(channels, height, width)`` as the manifest's recipe says.

The format is recognised from the bytes (Pillow's signature checks), never from the file name
or content type. What decoding will cost is checked from the header before any pixel is
decoded, so a decompression bomb costs nothing: the pixels that will be decoded
(``limits.max_image_pixels``) and the bytes they take once decoded and expanded to the mode the
recipe converts through (``limits.max_image_decoded_bytes``: a 16-bit pixel is 2 bytes, an RGB,
RGBA, CMYK or palette-with-alpha pixel 4, as Pillow stores them). JPEGs are decoded at a
reduced scale (``draft``) first and the limits apply to what is decoded, so a 24 Mpx photo
decodes at 1/8 of its size. Only the first frame of an animated or multi-page file (GIF, WebP,
TIFF) is decoded; the others are never read.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.manifest import ImageRecipe

FIELD = "image"
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# Bytes per decoded pixel as Pillow stores each mode (multi-band modes take 4 bytes), or as the
# mode it is converted through when that is wider: a palette image becomes RGBA.
_BYTES_PER_PIXEL = {"1": 1, "L": 1, **dict.fromkeys(_SIXTEEN_BIT_MODES, 2)}
_WIDEST = 4
# 16-bit grey -> 8-bit by a table (the value scaled to 0-255, rounded half up): 64 KB once,
# and the conversion then costs one byte per pixel instead of a float64 copy (8 bytes).
_SIXTEEN_TO_EIGHT = (np.arange(65536, dtype=np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)


def open_image(
    data: bytes,
    *,
    max_pixels: int,
    max_decoded_bytes: int | None = None,
    draft: tuple[str, tuple[int, int]] | None = None,
) -> Image.Image:
    """Identify and decode an upload's first frame, rejecting non-images, bombs and truncation.

    ``draft`` (mode, size) lets a JPEG decode at a reduced scale no smaller than ``size``.
    """
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check (a warning over 89 Mpx, an error over 179 Mpx) fires in
            # open(); ``max_pixels`` below is the limit that applies, with a 413 naming it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(
            f"image has too many pixels; the limit (limits.max_image_pixels) is {max_pixels}",
            field=FIELD,
        ) from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(
            f"not a supported image; expected one of {', '.join(SUPPORTED_FORMATS)}", field=FIELD
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"corrupt image header: {exc}", field=FIELD) from exc
    if img.size[0] <= 0 or img.size[1] <= 0:
        raise InvalidInput("image has no pixels", field=FIELD)
    if draft is not None and img.format == "JPEG":
        img.draft(*draft)  # changes img.size to the scale that will be decoded
    check_decode_cost(img, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) on some oddities; a warning here is a bad file.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.seek(0)  # GIF/TIFF/WebP animations: the first frame
            img.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"corrupt or truncated {img.format} image: {exc}", field=FIELD) from exc
    return img


def decoded_bytes_per_pixel(mode: str) -> int:
    return _BYTES_PER_PIXEL.get(mode, _WIDEST)


def check_decode_cost(img: Image.Image, *, max_pixels: int, max_decoded_bytes: int | None) -> None:
    """Refuse (413) an opened, not yet decoded image whose decoding would pass a limit."""
    width, height = img.size
    pixels = width * height
    if pixels > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {pixels} pixels; the limit "
            f"(limits.max_image_pixels) is {max_pixels}",
            field=FIELD,
        )
    per_pixel = decoded_bytes_per_pixel(img.mode)
    if max_decoded_bytes is not None and pixels * per_pixel > max_decoded_bytes:
        raise PayloadTooLarge(
            f"image is {width}x{height} in mode {img.mode} ({per_pixel} bytes per pixel once "
            f"decoded) = {pixels * per_pixel} bytes; the limit "
            f"(limits.max_image_decoded_bytes) is {max_decoded_bytes}",
            field=FIELD,
        )


def _to_grey(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey -> 8-bit, scaled by the real range (Pillow's own conversion
    clips instead). No float64 copy: a table for 16 bits, float32 for the rest."""
    if img.mode in _SIXTEEN_BIT_MODES:
        return Image.fromarray(_SIXTEEN_TO_EIGHT[np.asarray(img)], "L")
    arr = np.asarray(img)
    if img.mode == "I":
        top = np.float32(65535.0 if arr.max() > 255 else 255.0)
        scaled = np.clip(arr, 0, top).astype(np.float32) * (np.float32(255.0) / top)
    else:  # "F"
        low = np.float32(arr.min())
        span = np.float32(float(arr.max() - low) or 1.0)
        scaled = (arr.astype(np.float32) - low) * (np.float32(255.0) / span)
    scaled += np.float32(0.5)
    return Image.fromarray(np.clip(scaled, 0, 255, out=scaled).astype(np.uint8), "L")


def _to_mode(img: Image.Image, recipe: ImageRecipe) -> Image.Image:
    img = ImageOps.exif_transpose(img)
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        img = _to_grey(img)
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        background = Image.new("RGBA", img.size, (recipe.background,) * 3 + (255,))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode == "CMYK":
        img = img.convert("RGB")
    return img.convert(recipe.mode)


def _fit(img: Image.Image, recipe: ImageRecipe) -> Image.Image:
    size = (recipe.width, recipe.height)
    method = _RESAMPLING[recipe.resize]
    if not recipe.keep_aspect:
        return img.resize(size, method)
    fill = recipe.background if recipe.mode == "L" else (recipe.background,) * 3
    return ImageOps.pad(img, size, method=method, color=fill)


def preprocess_image(img: Image.Image, recipe: ImageRecipe) -> np.ndarray:
    """A decoded image -> normalised float32 ``(channels, height, width)``."""
    img = _fit(_to_mode(img, recipe), recipe)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if recipe.invert:
        arr = 1.0 - arr
    if arr.ndim == 2:
        arr = arr[:, :, None]
    mean = np.asarray(recipe.mean, dtype=np.float32)
    std = np.asarray(recipe.std, dtype=np.float32)
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)


def image_features(
    data: bytes, recipe: ImageRecipe, *, max_pixels: int, max_decoded_bytes: int | None = None
) -> np.ndarray:
    """Uploaded bytes -> the graph's image input for one row."""
    # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; keep at least twice the target size
    # so the final resampling still has detail to average.
    draft = (recipe.mode, (recipe.width * 2, recipe.height * 2))
    img = open_image(data, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes, draft=draft)
    return preprocess_image(img, recipe)
