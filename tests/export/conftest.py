"""Shared fixtures for the export tests: a small data config and its pools (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from export.build import reference_tokenizer
from export.config import DataConfig
from export.dataset import Pools, build_pools

SMALL = DataConfig(
    image_copies_train=1,
    image_copies_test=1,
    audio_copies_train=2,
    audio_copies_test=1,
    text_train=600,
    text_test=200,
    test_rows=60,
)
MODELS = Path(__file__).resolve().parents[2] / "onnx_models"


@pytest.fixture(scope="session")
def small_cfg() -> DataConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_tokenizer() -> Tokenizer:
    return reference_tokenizer(SMALL)


@pytest.fixture(scope="session")
def small_pools(small_tokenizer: Tokenizer) -> tuple[Pools, Pools]:
    return build_pools(SMALL, "train", small_tokenizer), build_pools(SMALL, "test", small_tokenizer)
