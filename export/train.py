"""Training loop: fresh multimodal rows every step, modality dropout, weighted task losses.

Per step and row: a digit, one sample of that digit from each pool, and a presence vector
(all three modalities with probability ``p_all_present``, else one of the six other non-empty
subsets uniformly: *modality dropout*). With probability ``p_inconsistent``, a row with two or
more modalities has one present modality replaced by a sample of another digit; such rows
teach the ``consistent`` head ("no") and are left out of the digit loss (their digit is
ambiguous). Loss = ``digit_weight`` * CE(digit) + ``consistent_weight`` * CE(consistent).

AdamW with linear warm-up and cosine decay. Deterministic for a given seed: numpy and torch
are seeded, the thread count is fixed and only deterministic CPU kernels are used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from export.config import MODALITIES, ModelConfig, TrainConfig
from export.dataset import SUBSETS, Pools, assemble
from export.model import DigitModel


def sample_batch(
    pools: Pools, groups: list[list[np.ndarray]], cfg: TrainConfig, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One training batch: graph inputs, digit labels, consistent labels."""
    b = cfg.batch_size
    digits = rng.integers(0, 10, size=b)
    index = np.zeros((b, 3), dtype=np.int64)
    for m in range(3):
        for i, d in enumerate(digits):
            g = groups[m][d]
            index[i, m] = g[int(rng.integers(len(g)))]
    partial = SUBSETS[:-1]
    presence = np.array(
        [
            SUBSETS[-1]
            if rng.random() < cfg.p_all_present
            else partial[int(rng.integers(len(partial)))]
            for _ in range(b)
        ],
        dtype=np.float32,
    )
    consistent = np.ones(b, dtype=np.int64)
    for i in range(b):
        present = np.flatnonzero(presence[i])
        if len(present) >= 2 and rng.random() < cfg.p_inconsistent:
            m = int(present[int(rng.integers(len(present)))])
            other = (int(digits[i]) + 1 + int(rng.integers(9))) % 10
            g = groups[m][other]
            index[i, m] = g[int(rng.integers(len(g)))]
            consistent[i] = 0
    return assemble(pools, index, presence), digits.astype(np.int64), consistent


def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    pools: Pools,
    log: Callable[[str], None] = print,
) -> tuple[DigitModel, dict[str, float]]:
    """Train a ``DigitModel`` on ``pools``; returns it in eval mode and timing/loss figures."""
    torch.set_num_threads(train_cfg.threads)
    torch.set_flush_denormal(True)  # tiny activations late in training are slow on CPU
    torch.manual_seed(train_cfg.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(train_cfg.seed)
    groups = [pools.by_digit(m) for m in MODALITIES]
    model = DigitModel(model_cfg)
    opt = torch.optim.AdamW(
        model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
    )
    model.train()
    start = time.perf_counter()
    running = 0.0
    for step in range(train_cfg.steps):
        batch, digits, consistent = sample_batch(pools, groups, train_cfg, rng)
        inputs = {k: torch.from_numpy(v) for k, v in batch.items()}
        digit_logits, cons_logits, _, _ = model.logits(**inputs)
        keep = torch.from_numpy(consistent == 1)
        loss = train_cfg.digit_weight * F.cross_entropy(
            digit_logits[keep], torch.from_numpy(digits)[keep]
        ) + train_cfg.consistent_weight * F.cross_entropy(cons_logits, torch.from_numpy(consistent))
        for group in opt.param_groups:
            group["lr"] = _lr(step, train_cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        value = loss.item()
        running = 0.95 * running + 0.05 * value if step else value
        if train_cfg.log_every and (step + 1) % train_cfg.log_every == 0:
            log(
                f"step {step + 1}/{train_cfg.steps} loss {running:.4f} "
                f"({time.perf_counter() - start:.0f} s)"
            )
    model.eval()
    return model, {
        "train_seconds": round(time.perf_counter() - start, 1),
        "final_loss": round(running, 4),
    }
