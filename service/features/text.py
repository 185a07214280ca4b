"""Unicode text -> int64 ``input_ids`` and ``attention_mask`` for one row.

The model folder holds a ``transformers`` tokenizer folder (``save_pretrained`` output). Its
``tokenizer.json`` is the complete fast tokenizer — normaliser, pre-tokeniser, WordPiece
vocabulary and the [CLS]/[SEP] post-processor — so the service loads it with the small
``tokenizers`` library instead of importing ``transformers`` (about 2 s of start-up).
``tests/service/test_features_text.py`` holds the ids to ``transformers``' fast tokenizer's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from service.errors import InvalidInput
from service.manifest import TextRecipe

FIELD = "text"


def load_tokenizer(folder: Path, max_length: int | None = None) -> Tokenizer:
    """Load ``folder/tokenizer.json`` (raises ValueError if missing or invalid).

    Pass the recipe's ``max_length`` to configure truncation once, here, rather than on the
    first :func:`encode_text` call, which may happen on several threads at once.
    """
    path = folder / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception subclass from Rust
        raise ValueError(f"cannot load tokenizer {path}: {exc}") from exc
    if max_length is not None:
        _truncate_to(tokenizer, max_length)
    return tokenizer


def _truncate_to(tokenizer: Tokenizer, max_length: int) -> None:
    # The tokenizer truncates before its post-processor adds [CLS]/[SEP], so specials are kept
    # exactly as transformers' ``truncation=True, max_length=...`` keeps them.
    current = tokenizer.truncation
    if current is None or current.get("max_length") != max_length:
        tokenizer.enable_truncation(max_length)
    if tokenizer.padding is not None:
        tokenizer.no_padding()  # the batcher pads to the longest row in a batch


def encode_text(
    text: str, tokenizer: Tokenizer, recipe: TextRecipe
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise one text, truncated to ``recipe.max_length`` tokens including specials."""
    _truncate_to(tokenizer, recipe.max_length)
    if not text.strip():
        raise InvalidInput("text is empty", field=FIELD)
    try:
        encoding = tokenizer.encode(text)
    except Exception as exc:
        raise InvalidInput(f"text could not be tokenised: {exc}", field=FIELD) from exc
    input_ids = np.asarray(encoding.ids, dtype=np.int64)
    return input_ids, np.ones_like(input_ids)
