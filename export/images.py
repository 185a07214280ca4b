"""Handwritten digits from scikit-learn's ``load_digits``, turned into user-like uploads.

``load_digits`` holds 1797 8x8 digits (grey levels 0..16) and no writer ids. The split is by
contiguous index blocks (first ``train_fraction`` -> train, the rest -> test), the closest
proxy for a writer-disjoint split that the data allows (the UCI set was collected writer by
writer).

Each upload is rendered like a photo or scan of dark ink on white paper: the 8x8 digit is
upscaled (bicubic), randomly rotated/scaled/sheared/translated, placed on a canvas of random
size and aspect, given random contrast, Gaussian noise, sometimes blur and an occluding
blot. *Heavy* samples get strong noise, blur and a large occlusion so they are nearly
illegible. The result is an 8-bit "L" PIL image; features come from
``service.features.image.preprocess_image`` (which inverts it back to bright-on-dark).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter
from sklearn.datasets import load_digits


def load_split(train_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, test_images, test_labels); images (N, 8, 8) in [0, 1]."""
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    cut = int(len(images) * train_fraction)
    return images[:cut], labels[:cut], images[cut:], labels[cut:]


def render_upload(digit: np.ndarray, rng: np.random.Generator, heavy: bool) -> Image.Image:
    """One (8, 8) ink image in [0, 1] -> a noisy dark-on-white "L" upload of random size."""
    side = 28
    ink = Image.fromarray(np.uint8(np.clip(digit, 0, 1) * 255), "L")
    ink = ink.resize((side, side), Image.Resampling.BICUBIC)
    # Random affine about the centre (PIL wants the inverse map output -> input).
    angle = math.radians(float(rng.uniform(-15, 15)))
    scale = float(rng.uniform(0.85, 1.15))
    shear = float(rng.uniform(-0.2, 0.2))
    tx, ty = rng.uniform(-2.5, 2.5, size=2)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    a, b, d, e = cos, -sin + shear, sin, cos
    cx = cy = side / 2
    c = cx - a * (cx + tx) - b * (cy + ty)
    f = cy - d * (cx + tx) - e * (cy + ty)
    ink = ink.transform(
        (side, side), Image.Transform.AFFINE, (a, b, c, d, e, f), Image.Resampling.BILINEAR
    )
    # Canvas of random size/aspect; the digit sits at a random place with a margin.
    width = int(rng.integers(32, 64))
    height = int(rng.integers(32, 64))
    scale_to = min(width, height) / side * float(rng.uniform(0.75, 1.0))
    size = max(8, int(side * scale_to))
    ink = ink.resize((size, size), Image.Resampling.BILINEAR)
    canvas = np.zeros((height, width), dtype=np.float32)
    x0 = int(rng.integers(0, width - size + 1))
    y0 = int(rng.integers(0, height - size + 1))
    canvas[y0 : y0 + size, x0 : x0 + size] = np.asarray(ink, dtype=np.float32) / 255.0
    contrast = float(rng.uniform(0.5, 1.0))
    paper = float(rng.uniform(0.85, 1.0))
    grey = paper - canvas * contrast * paper
    if heavy:
        noise, blur, blot = rng.uniform(0.35, 0.6), rng.uniform(1.5, 3.0), rng.uniform(0.35, 0.6)
    else:
        noise, blur, blot = rng.uniform(0.02, 0.2), rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.3)
    if blot > 0.15:  # an occluding blot (paper-coloured or ink-coloured)
        bw, bh = int(width * blot), int(height * blot)
        bx = int(rng.integers(0, width - bw + 1))
        by = int(rng.integers(0, height - bh + 1))
        grey[by : by + bh, bx : bx + bw] = paper if rng.random() < 0.5 else paper * 0.2
    grey = grey + rng.normal(0.0, noise, size=grey.shape).astype(np.float32)
    img = Image.fromarray(np.uint8(np.clip(grey, 0, 1) * 255 + 0.5), "L")
    if blur > 0.5:
        img = img.filter(ImageFilter.GaussianBlur(radius=blur))
    return img
