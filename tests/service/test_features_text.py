"""service.features.text: the ids the service computes are the ones ``transformers`` computes.

The service loads the tokenizer folder with the small ``tokenizers`` library (no
``transformers`` at serving time); the exporter's models learnt on ids from ``transformers``'
fast tokenizer over the same ``tokenizer.json``, truncated with ``truncation=True``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.features.text import encode_text, load_tokenizer
from service.manifest import TextRecipe, load_manifest

TEXTS = [
    "seven",
    "Seven, EIGHT and nine!",
    "  spaced   out\ttext\n",
    "héllo wörld ünïcode",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen",
]


@pytest.mark.parametrize("text", TEXTS)
def test_ids_equal_transformers_fast_tokenizer(model_folder: Path, text: str) -> None:
    transformers = pytest.importorskip("transformers")
    recipe = load_manifest(model_folder).modalities.text
    assert isinstance(recipe, TextRecipe)
    folder = model_folder / recipe.tokenizer_dir
    reference = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    expected = reference(text, truncation=True, max_length=recipe.max_length)["input_ids"]
    ids, mask = encode_text(text, load_tokenizer(folder, recipe.max_length), recipe)
    assert ids.tolist() == expected
    assert mask.tolist() == [1] * len(expected)
