"""A tiny random-weight Hugging Face CLIP, wrapped for serving: the bring-your-own-model demo.

``CLIPModel(CLIPConfig(...tiny...))`` is built from a config (no download, random weights)
and wrapped so the graph takes the service's inputs (``image``, ``input_ids``,
``attention_mask``, ``presence`` over ["image", "text"]) and returns:

- ``match_probs`` (B, 2): labels ["no", "yes"], does the text describe the image
  (sigmoid of CLIP's scaled cosine similarity; "yes" when only one modality is present);
- ``contributions`` (B, 2): uniform over present modalities;
- ``embedding`` (B, P): mean of the present modalities' normalised projections.

Absent modalities are masked with ``presence`` so they never change the answer. The
tokenizer is a small WordPiece trained on the spot (``export.tokenizer``), saved as a
transformers folder next to the model.

    python -m export byom --factory export.examples.tiny_clip:tiny_clip \
        --out onnx_models/tiny-clip/1
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import CLIPConfig, CLIPModel

from export.byom import ByomSpec
from export.tokenizer import save_tokenizer, train_tokenizer
from service.features.text import encode_text
from service.manifest import ImageRecipe, TextRecipe

WORDS = (
    "a photo of the number digit one two three four five six seven eight nine zero cat dog".split()
)


class ServableClip(nn.Module):
    """CLIP with the service's calling convention and presence masking."""

    def __init__(self, clip: CLIPModel) -> None:
        super().__init__()
        self.clip = clip

    def forward(
        self,
        image: torch.Tensor,  # (B, 3, H, W)
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor,  # (B, T)
        presence: torch.Tensor,  # (B, 2) over ["image", "text"]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img = self.clip.get_image_features(pixel_values=image)
        txt = self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        img = getattr(img, "pooler_output", img)  # transformers 5 may return a model output
        txt = getattr(txt, "pooler_output", txt)
        img = img / img.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        txt = txt / txt.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        both = presence[:, 0] * presence[:, 1]  # (B,)
        logit = self.clip.logit_scale.exp() * (img * txt).sum(dim=-1) - 5.0
        yes = both * torch.sigmoid(logit) + (1.0 - both)  # one modality agrees with itself
        match = torch.stack([1.0 - yes, yes], dim=1)
        weights = presence / presence.sum(dim=1, keepdim=True).clamp(min=1.0)
        embedding = weights[:, :1] * img + weights[:, 1:] * txt
        return match, weights, embedding


def build_clip(vocab_size: int, eos_id: int, image_size: int = 32) -> CLIPModel:
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "eos_token_id": eos_id,
            "bos_token_id": eos_id - 1,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    config._attn_implementation = "eager"
    config.text_config._attn_implementation = "eager"
    config.vision_config._attn_implementation = "eager"
    return CLIPModel(config).eval()


def tiny_clip(tokenizer_dir: Path | None = None) -> ByomSpec:
    """The ``ByomSpec`` of a tiny random CLIP (deterministic)."""
    texts = [f"a photo of the number {w}" for w in WORDS] + WORDS
    tok = train_tokenizer(texts, vocab_size=120)
    folder = tokenizer_dir or Path(tempfile.mkdtemp(prefix="tiny-clip-tok-"))
    save_tokenizer(tok, folder, max_length=16)
    text_recipe = TextRecipe(
        input_ids="input_ids",
        attention_mask="attention_mask",
        tokenizer_dir="tokenizer",
        max_length=16,
    )
    image_recipe = ImageRecipe(
        input="image",
        height=32,
        width=32,
        mode="RGB",
        resize="bicubic",
        keep_aspect=False,
        mean=[0.4815, 0.4578, 0.4082],
        std=[0.2686, 0.2613, 0.2758],
    )
    rows = [encode_text(t, tok, text_recipe) for t in ("a photo of a cat", "seven")]
    width = max(len(ids) for ids, _ in rows)
    ids = np.zeros((2, width), dtype=np.int64)
    mask = np.zeros((2, width), dtype=np.int64)
    for i, (r_ids, r_mask) in enumerate(rows):
        ids[i, : len(r_ids)], mask[i, : len(r_mask)] = r_ids, r_mask
    rng = np.random.default_rng(0)
    example = {
        "image": rng.standard_normal((2, 3, 32, 32)).astype(np.float32),
        "input_ids": ids,
        "attention_mask": mask,
        "presence": np.ones((2, 2), dtype=np.float32),
    }
    eos = tok.token_to_id("[SEP]")
    module = ServableClip(build_clip(tok.get_vocab_size(), eos))
    fields = {
        "name": "tiny-clip",
        "version": "1",
        "description": "Random-weight tiny CLIP (demo of bring-your-own-model; answers are noise).",
        "modality_order": ["image", "text"],
        "presence_input": "presence",
        "modalities": {"image": image_recipe.model_dump(), "text": text_recipe.model_dump()},
        "tasks": [{"name": "match", "output": "match_probs", "labels": ["no", "yes"]}],
        "contribution_output": "contributions",
        "embedding_output": "embedding",
        "fusion": "custom",
        "provenance": {"source": "export.examples.tiny_clip:tiny_clip", "seed": 0},
    }
    return ByomSpec(
        module=module,
        example_inputs=example,
        manifest_fields=fields,
        output_names=["match_probs", "contributions", "embedding"],
        side_files={"tokenizer": folder},
    )
