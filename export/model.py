"""The multimodal digit model: three encoders, one fusion, two task heads.

    image (B,1,32,32) --ImageEncoder--> (B,D) -.
    audio (B,20,101)  --AudioEncoder--> (B,D) --+-- stack (B,3,D) --Fusion(presence)--> z (B,D)
    text  (B,T) ids   --TextEncoder---> (B,D) -'                         |        weights (B,3)
                                                                         +-> digit head (10)
                                                                         +-> consistent head (2)

Presence masks make absent modalities *exactly* irrelevant: every strategy either multiplies
an absent modality's embedding by 0 or gives it an attention/gate weight of exactly 0
(scores are pushed down by 1e9 before the softmax, so exp() underflows to 0.0, never NaN).
Nothing mixes rows (GroupNorm, not BatchNorm) and padded text tokens are masked keys, so a
row's answer does not depend on the rest of the batch or on padding.

Fusion strategies:
- ``concat``: Linear over [e_image, e_audio, e_text, presence] (absent ones zeroed);
  contributions are uniform over present modalities;
- ``mean``: average of present embeddings; uniform contributions;
- ``gated``: a learned scalar gate per modality, softmax over present ones; the gates are
  the contributions;
- ``cross_attention``: one Transformer block in which each modality token attends to the
  present modality tokens (scaled dot-product), then a learned query attends over them; its
  attention weights are the contributions.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import BertConfig, BertModel

from export.config import ModelConfig

NEG = 1e9  # added (negated) to masked attention/gate scores


def _block2d(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.ReLU(), nn.MaxPool2d(2)
    )


def _block1d(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, k, padding=k // 2), nn.GroupNorm(4, cout), nn.ReLU())


class ImageEncoder(nn.Module):
    """(B, 1, 32, 32) -> (B, D): three conv blocks (32 -> 16 -> 8 -> 4), then a projection."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(_block2d(1, 16), _block2d(16, 32), _block2d(32, 64))
        self.proj = nn.Linear(64 * 4 * 4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(x).flatten(1))  # (B, 64, 4, 4) -> (B, D)


class AudioEncoder(nn.Module):
    """(B, C=n_mfcc, F=frames) -> (B, D): 1-D convs over time, mean+max pooling over time."""

    def __init__(self, coefficients: int, dim: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            _block1d(coefficients, 64, 5),
            nn.MaxPool1d(2),  # (B, 64, F/2)
            _block1d(64, 64, 5),
            nn.MaxPool1d(2),  # (B, 64, F/4)
            _block1d(64, 96, 3),  # (B, 96, F/4)
        )
        self.proj = nn.Linear(2 * 96, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)
        return self.proj(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))


class TextEncoder(nn.Module):
    """(B, T) ids + mask -> (B, D): a tiny ``transformers.BertModel``, [CLS] state projected."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = BertConfig(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.dim,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            intermediate_size=cfg.text_ffn,
            max_position_embeddings=max(32, cfg.max_tokens),
            type_vocab_size=1,
            pad_token_id=0,
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.dropout,
        )
        self.config._attn_implementation = "eager"
        self.bert = BertModel(self.config, add_pooling_layer=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
        return self.proj(out.last_hidden_state[:, 0])  # [CLS] -> (B, D)


def masked_softmax(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis where ``keep`` (same shape, 0/1 float) is 1; masked entries
    are exactly 0. A row with nothing kept gets a uniform (finite) answer, never NaN."""
    return torch.softmax(scores - (1.0 - keep) * NEG, dim=-1) * keep + (1.0 - keep) * 0.0


def _uniform_over_present(presence: torch.Tensor) -> torch.Tensor:
    return presence / presence.sum(dim=1, keepdim=True).clamp(min=1.0)


class ConcatFusion(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3 * dim + 3, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, e: torch.Tensor, presence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masked = (e * presence[:, :, None]).flatten(1)  # (B, 3D)
        return self.mlp(torch.cat([masked, presence], dim=1)), _uniform_over_present(presence)


class MeanFusion(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, e: torch.Tensor, presence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = _uniform_over_present(presence)  # (B, 3)
        return self.proj((e * w[:, :, None]).sum(dim=1)), w


class GatedFusion(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))
        self.proj = nn.Linear(dim, dim)

    def forward(self, e: torch.Tensor, presence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = masked_softmax(self.gate(e).squeeze(-1), presence)  # (B, 3)
        return self.proj((e * w[:, :, None]).sum(dim=1)), w


class CrossAttentionFusion(nn.Module):
    """Modality tokens attend to each other (masked multi-head SDPA), then a learned query
    pools them; the pooling weights are the contributions."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.kind = nn.Parameter(torch.zeros(3, dim))  # which modality a token is
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)
        self.query = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        self.pool_k = nn.Linear(dim, dim)
        self.pool_v = nn.Linear(dim, dim)

    def forward(self, e: torch.Tensor, presence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, m, d = e.shape
        hd = d // self.heads
        x = e + self.kind[None]  # (B, 3, D)
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q = q.reshape(b, m, self.heads, hd).transpose(1, 2)  # (B, H, 3, hd)
        k = k.reshape(b, m, self.heads, hd).transpose(1, 2)
        v = v.reshape(b, m, self.heads, hd).transpose(1, 2)
        keep = presence[:, None, None, :].expand(b, self.heads, m, m)  # keys that exist
        att = masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), keep)  # (B, H, 3, 3)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(b, m, d)
        x = x + self.out(y)
        x = x + self.drop(self.ffn(self.ln2(x)))  # (B, 3, D)
        scores = self.pool_k(x) @ self.query / math.sqrt(d)  # (B, 3)
        w = masked_softmax(scores, presence)
        return (w[:, :, None] * self.pool_v(x)).sum(dim=1), w


def make_fusion(cfg: ModelConfig) -> nn.Module:
    if cfg.fusion == "concat":
        return ConcatFusion(cfg.dim)
    if cfg.fusion == "mean":
        return MeanFusion(cfg.dim)
    if cfg.fusion == "gated":
        return GatedFusion(cfg.dim)
    if cfg.fusion == "cross_attention":
        return CrossAttentionFusion(cfg.dim, cfg.fusion_heads, cfg.dropout)
    raise ValueError(f"unknown fusion {cfg.fusion!r}")


class DigitModel(nn.Module):
    """The whole trunk + heads. ``logits`` for training, ``forward`` (probabilities) for export."""

    def __init__(self, cfg: ModelConfig, coefficients: int = 20) -> None:
        super().__init__()
        self.cfg = cfg
        self.image = ImageEncoder(cfg.dim)
        self.audio = AudioEncoder(coefficients, cfg.dim)
        self.text = TextEncoder(cfg)
        self.fusion = make_fusion(cfg)
        self.norm = nn.LayerNorm(cfg.dim)
        self.digit_head = nn.Sequential(
            nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.dim, 10)
        )
        self.consistent_head = nn.Sequential(
            nn.Linear(cfg.dim + 3, cfg.dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.dim, 2),
        )

    def logits(
        self,
        image: torch.Tensor,
        audio: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        presence: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> digit logits (B,10), consistent logits (B,2), contributions (B,3), z (B,D)."""
        e = torch.stack(
            [self.image(image), self.audio(audio), self.text(input_ids, attention_mask)], dim=1
        )  # (B, 3, D)
        z, weights = self.fusion(e, presence)
        z = self.norm(z)
        digit = self.digit_head(z)
        consistent = self.consistent_head(torch.cat([z, presence], dim=1))
        return digit, consistent, weights, z

    def forward(
        self,
        image: torch.Tensor,
        audio: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        presence: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Graph outputs: digit_probs, consistent_probs, contributions, embedding."""
        digit, consistent, weights, z = self.logits(
            image, audio, input_ids, attention_mask, presence
        )
        return torch.softmax(digit, dim=-1), torch.softmax(consistent, dim=-1), weights, z
