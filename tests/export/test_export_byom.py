"""Bring-your-own-model: a tiny random-weight Hugging Face CLIP becomes a servable folder."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

from export.byom import ParityError, export_model, export_spec
from export.evaluate import ort_runner
from export.examples.tiny_clip import tiny_clip
from service.features.image import image_features
from service.features.text import encode_text, load_tokenizer
from service.manifest import ImageRecipe, TextRecipe, load_manifest


def test_tiny_clip_exports_to_a_servable_folder(tmp_path: Path) -> None:
    spec = tiny_clip(tokenizer_dir=tmp_path / "tok")
    out = tmp_path / "tiny-clip" / "1"
    manifest = export_spec(spec, out)
    loaded = load_manifest(out)
    assert loaded == manifest
    assert loaded.fusion == "custom"
    assert loaded.provenance.parity_max_abs_diff is not None
    assert loaded.provenance.parity_max_abs_diff <= 1e-4
    assert {t.name: t.shape for t in loaded.inputs}["input_ids"] == ["batch", "tokens"]
    # Serve one row the way the service would: bytes -> recipes -> graph.
    image_recipe = loaded.recipe("image")
    text_recipe = loaded.recipe("text")
    assert isinstance(image_recipe, ImageRecipe) and isinstance(text_recipe, TextRecipe)
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, format="PNG")
    image = image_features(buf.getvalue(), image_recipe, max_pixels=1_000_000)
    tok = load_tokenizer(out / text_recipe.tokenizer_dir)
    ids, mask = encode_text("a photo of the number seven", tok, text_recipe)
    run = ort_runner(out / loaded.model_file)
    both = run(
        {
            "image": image[None],
            "input_ids": ids[None],
            "attention_mask": mask[None],
            "presence": np.ones((1, 2), dtype=np.float32),
        }
    )
    assert both["match_probs"].shape == (1, 2)
    np.testing.assert_allclose(both["match_probs"].sum(), 1.0, atol=1e-5)
    # Text absent (fed as one pad token): the answer is "yes" and ignores the text input.
    absent = run(
        {
            "image": image[None],
            "input_ids": np.zeros((1, 1), dtype=np.int64),
            "attention_mask": np.ones((1, 1), dtype=np.int64),
            "presence": np.asarray([[1.0, 0.0]], dtype=np.float32),
        }
    )
    np.testing.assert_allclose(absent["match_probs"], [[0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(absent["contributions"], [[1.0, 0.0]])


class _Drifting(nn.Module):
    """Disagrees with its own export: a Python-side counter changes the traced constant."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):  # type: ignore[no-untyped-def]
        self.calls += 1
        return x * float(self.calls)


def test_parity_failure_is_reported(tmp_path: Path) -> None:
    fields = {
        "name": "bad",
        "version": "1",
        "modality_order": ["image"],
        "presence_input": "x",
        "modalities": {
            "image": {
                "input": "x",
                "height": 2,
                "width": 2,
                "mode": "L",
                "mean": [0.0],
                "std": [1.0],
            }
        },
    }
    with pytest.raises(ParityError):
        export_model(
            _Drifting(),
            {"x": np.ones((2, 1, 2, 2), dtype=np.float32)},
            fields,
            tmp_path,
            output_names=["y"],
        )


def test_exported_folder_is_readable_by_other_users(tmp_path: Path) -> None:
    """The factory's tokenizer folder comes from ``mkdtemp`` (mode 0700); the copy in the model
    folder must get ordinary modes, or a server running as another user cannot read it."""
    spec = tiny_clip()  # tokenizer saved into a fresh mkdtemp folder
    source = spec.side_files["tokenizer"]
    assert stat.S_IMODE(source.stat().st_mode) == 0o700
    old = os.umask(0o022)
    try:
        out = tmp_path / "tiny-clip" / "1"
        export_spec(spec, out)
    finally:
        os.umask(old)
    folders = [p for p in out.rglob("*") if p.is_dir()]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert out / "tokenizer" in folders and out / "tokenizer" / "tokenizer.json" in files
    for folder in [out, *folders]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file
