"""Export your own model: a complete example (docs/export.md quotes this file verbatim).

A small image + text model (untrained: the answers are noise) becomes a servable folder:

    python -m export.examples.my_model onnx_models/my-model/1
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.byom import export_model
from export.tokenizer import save_tokenizer, train_tokenizer
from service.features.text import encode_text
from service.manifest import ImageRecipe, TextRecipe


class MyModel(nn.Module):
    """Does the text name what the image shows? The service's calling convention: one input
    per modality plus ``presence`` over ``modality_order``, which masks absent modalities."""

    def __init__(self, vocab_size: int, dim: int = 16) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, dim), nn.Tanh())
        self.words = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.text = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())

    def forward(
        self,
        image: torch.Tensor,  # (B, 1, 32, 32) float32
        input_ids: torch.Tensor,  # (B, T) int64
        attention_mask: torch.Tensor,  # (B, T) int64
        presence: torch.Tensor,  # (B, 2) float32 over ["image", "text"]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img = self.image(image)
        mask = attention_mask.unsqueeze(-1).float()
        txt = self.text((self.words(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        both = presence[:, 0] * presence[:, 1]
        yes = both * torch.sigmoid((img * txt).sum(-1)) + (1.0 - both)  # one modality: "yes"
        weights = presence / presence.sum(1, keepdim=True).clamp(min=1.0)
        embedding = weights[:, :1] * img + weights[:, 1:] * txt
        return torch.stack([1.0 - yes, yes], dim=1), weights, embedding


def main(out_dir: Path, tokenizer_dir: Path) -> None:
    torch.manual_seed(0)
    # The tokenizer: any transformers tokenizer folder whose pad id is 0 (here one is trained).
    words = "a photo of the number one two three four five six seven eight nine zero".split()
    tokenizer = train_tokenizer([" ".join(words), *words], vocab_size=80)
    save_tokenizer(tokenizer, tokenizer_dir, max_length=16)

    # The feature recipes: exactly what the model was trained on.
    image_recipe = ImageRecipe(input="image", height=32, width=32, mode="L", mean=[0.5], std=[0.5])
    text_recipe = TextRecipe(
        input_ids="input_ids",
        attention_mask="attention_mask",
        tokenizer_dir="tokenizer",  # inside the model folder (the side file below)
        max_length=16,
    )

    # Example inputs, in forward()'s order, with a batch of at least 2.
    rows = [encode_text(t, tokenizer, text_recipe) for t in ("a photo of seven", "three")]
    width = max(len(ids) for ids, _ in rows)
    input_ids = np.zeros((2, width), dtype=np.int64)
    attention_mask = np.zeros((2, width), dtype=np.int64)
    for i, (ids, mask) in enumerate(rows):
        input_ids[i, : len(ids)], attention_mask[i, : len(mask)] = ids, mask
    image = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    presence = np.ones((2, 2), dtype=np.float32)

    manifest = export_model(
        MyModel(tokenizer.get_vocab_size()),
        {
            "image": image,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "presence": presence,
        },
        {
            "name": "my-model",
            "version": "1",
            "description": "Does the text name the image? (untrained example)",
            "modality_order": ["image", "text"],
            "presence_input": "presence",
            "modalities": {"image": image_recipe, "text": text_recipe},
            "tasks": [{"name": "match", "output": "match_probs", "labels": ["no", "yes"]}],
            "contribution_output": "contributions",
            "embedding_output": "embedding",
        },
        out_dir,
        output_names=["match_probs", "contributions", "embedding"],
        side_files={"tokenizer": tokenizer_dir},
    )
    print(f"wrote {out_dir}: parity {manifest.provenance.parity_max_abs_diff:g}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        main(Path(sys.argv[1] if len(sys.argv) > 1 else "onnx_models/my-model/1"), Path(scratch))
