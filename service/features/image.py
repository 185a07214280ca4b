"""Image bytes -> float32 ``(channels, height, width)`` as the manifest's recipe says.

The format is recognised from the bytes (Pillow's signature checks), never from the file name
or content type. Pixel count is checked from the header before any pixel is decoded, so a
decompression bomb costs nothing; large JPEGs are decoded at a reduced scale (``draft``).
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


def open_image(
    data: bytes, *, max_pixels: int, draft: tuple[str, tuple[int, int]] | None = None
) -> Image.Image:
    """Identify and fully decode an upload, rejecting non-images, bombs and truncation.

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
            f"image has too many pixels; the limit is {max_pixels}", field=FIELD
        ) from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(
            f"not a supported image; expected one of {', '.join(SUPPORTED_FORMATS)}", field=FIELD
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"corrupt image header: {exc}", field=FIELD) from exc
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InvalidInput("image has no pixels", field=FIELD)
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
            field=FIELD,
        )
    if draft is not None and img.format == "JPEG":
        img.draft(*draft)
    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) on some oddities; a warning here is a bad file.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.seek(0)  # GIF/TIFF/WebP animations: the first frame
            img.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"corrupt or truncated {img.format} image: {exc}", field=FIELD) from exc
    return img


def _to_mode(img: Image.Image, recipe: ImageRecipe) -> Image.Image:
    img = ImageOps.exif_transpose(img)
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "I":
        # Pillow's I;16 -> L conversion clips instead of scaling; scale by the real range.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode in _SIXTEEN_BIT_MODES or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        span = float(arr.max() - arr.min()) or 1.0
        img = Image.fromarray(((arr - arr.min()) / span * 255.0 + 0.5).astype(np.uint8), "L")
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


def image_features(data: bytes, recipe: ImageRecipe, *, max_pixels: int) -> np.ndarray:
    """Uploaded bytes -> the graph's image input for one row."""
    # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; keep at least twice the target size
    # so the final resampling still has detail to average.
    draft = (recipe.mode, (recipe.width * 2, recipe.height * 2))
    img = open_image(data, max_pixels=max_pixels, draft=draft)
    return preprocess_image(img, recipe)
