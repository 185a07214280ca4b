"""Training features are the service's features: the same sample through the training path
(``export.dataset``, from PIL images / float waveforms / strings) and through the service
path (uploaded bytes -> ``service.features``) gives identical arrays."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
from tokenizers import Tokenizer

from export.audio_aug import augment_clip
from export.config import AUDIO_RECIPE, IMAGE_RECIPE, TEXT_RECIPE
from export.dataset import encode_texts
from export.images import load_split, render_upload
from export.speech import load_clips
from export.textforms import digit_text
from export.tokenizer import save_tokenizer
from service.features.audio import audio_features, clip_batch_features, fit_clip
from service.features.image import image_features, preprocess_image
from service.features.text import encode_text, load_tokenizer


def test_image_training_path_equals_upload_path() -> None:
    _, _, test_x, _ = load_split(0.7)
    rng = np.random.default_rng(1)
    for i in range(8):
        img = render_upload(test_x[i], rng, heavy=i % 4 == 0)
        trained = preprocess_image(img, IMAGE_RECIPE)  # what export.dataset stores
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        served = image_features(buf.getvalue(), IMAGE_RECIPE, max_pixels=10_000_000)
        assert trained.shape == (1, 32, 32)
        np.testing.assert_array_equal(trained, served)


def test_audio_training_path_equals_upload_path() -> None:
    _, samples = load_clips()
    rng = np.random.default_rng(2)
    waves = [augment_clip(samples[i * 37], rng, heavy=i == 3) for i in range(6)]
    # Training: a batch of fitted clips through the vectorised extractor.
    batch = np.stack([fit_clip(w, AUDIO_RECIPE.sample_rate, AUDIO_RECIPE) for w in waves])
    trained = clip_batch_features(batch, AUDIO_RECIPE)
    for i, w in enumerate(waves):
        buf = io.BytesIO()
        sf.write(buf, w, AUDIO_RECIPE.sample_rate, format="WAV", subtype="FLOAT")
        served = audio_features(buf.getvalue(), AUDIO_RECIPE, max_seconds=10.0)
        assert served.shape == (20, 101)
        np.testing.assert_allclose(trained[i], served, rtol=0, atol=1e-5)


def test_text_training_path_equals_service_path(tmp_path: Path, small_tokenizer: Tokenizer) -> None:
    folder = save_tokenizer(small_tokenizer, tmp_path / "tokenizer", TEXT_RECIPE.max_length)
    served_tok = load_tokenizer(folder)
    rng = np.random.default_rng(3)
    items = [digit_text(d % 10, rng, heavy=d % 5 == 0) for d in range(40)]
    items.append("the number seven " * 10)  # longer than max_length: truncated
    ids, mask = encode_texts(items, small_tokenizer)
    for i, text in enumerate(items):
        s_ids, s_mask = encode_text(text, served_tok, TEXT_RECIPE)
        n = len(s_ids)
        np.testing.assert_array_equal(ids[i, :n], s_ids)
        np.testing.assert_array_equal(mask[i, :n], s_mask)
        assert not ids[i, n:].any() and not mask[i, n:].any()
