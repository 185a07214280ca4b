"""A committed model gives the same answers when fed through the service's own request path
(uploaded PNG/WAV bytes and strings -> ``service.runtime`` extraction and collation) as
through the training path (``export.dataset`` features and ``assemble``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from export.audio_aug import augment_clip
from export.config import AUDIO_RECIPE, IMAGE_RECIPE
from export.dataset import SUBSETS, Pools, assemble, encode_texts
from export.evaluate import ort_runner
from export.images import load_split, render_upload
from export.speech import load_clips
from export.textforms import digit_text
from service.features.audio import clip_batch_features, fit_clip
from service.features.image import preprocess_image
from service.features.text import load_tokenizer
from service.manifest import Manifest, load_manifest
from service.runtime.extract import extract_row
from service.runtime.rows import collate
from service.settings import Limits

FOLDER = Path(__file__).resolve().parents[2] / "onnx_models" / "digits-xattn" / "1"


class _Source:
    def __init__(self, folder: Path) -> None:
        self.manifest: Manifest = load_manifest(folder)
        self.tokenizer = load_tokenizer(folder / "tokenizer")


def test_service_request_path_matches_training_path() -> None:
    source = _Source(FOLDER)
    _, _, test_x, test_y = load_split(0.7)
    clips, samples = load_clips()
    test_clips = [i for i, c in enumerate(clips) if c.split == "test"]
    rng = np.random.default_rng(7)
    n = 21
    digits = rng.integers(0, 10, size=n)
    images, waves, texts = [], [], []
    for d in digits:
        img_i = rng.choice(np.flatnonzero(test_y == d))
        images.append(render_upload(test_x[img_i], rng, heavy=False))
        clip_i = rng.choice([i for i in test_clips if clips[i].digit == d])
        waves.append(augment_clip(samples[clip_i], rng, heavy=False))
        texts.append(digit_text(int(d), rng, heavy=False))
    presence = np.asarray([SUBSETS[i % len(SUBSETS)] for i in range(n)], dtype=np.float32)

    # Training path: features as export.dataset builds them, rows as assemble() feeds them.
    ids, mask = encode_texts(texts, source.tokenizer)
    clips_2d = np.stack([fit_clip(w, AUDIO_RECIPE.sample_rate, AUDIO_RECIPE) for w in waves])
    pools = Pools(
        image=np.stack([preprocess_image(im, IMAGE_RECIPE) for im in images]),
        image_y=digits,
        audio=clip_batch_features(clips_2d, AUDIO_RECIPE),
        audio_y=digits,
        text_ids=ids,
        text_mask=mask,
        text_y=digits,
    )
    index = np.repeat(np.arange(n)[:, None], 3, axis=1)
    run = ort_runner(FOLDER / "model.onnx")
    trained = run(assemble(pools, index, presence))

    # Service path: bytes and strings through extract_row + collate.
    rows = []
    for i in range(n):
        uploads: dict[str, bytes | str] = {}
        if presence[i, 0]:
            buf = io.BytesIO()
            images[i].save(buf, format="PNG")
            uploads["image"] = buf.getvalue()
        if presence[i, 1]:
            buf = io.BytesIO()
            sf.write(buf, waves[i], AUDIO_RECIPE.sample_rate, format="WAV", subtype="FLOAT")
            uploads["audio"] = buf.getvalue()
        if presence[i, 2]:
            uploads["text"] = texts[i]
        rows.append(extract_row(source, uploads, Limits()).row)  # type: ignore[arg-type]
    served = run(collate(rows, source.manifest))

    for name in trained:
        np.testing.assert_allclose(served[name], trained[name], atol=1e-4, err_msg=name)
    assert (served["digit_probs"].argmax(1) == trained["digit_probs"].argmax(1)).all()
