"""A WordPiece tokenizer trained with ``tokenizers`` and saved as a transformers folder.

BERT-style pipeline: NFD + lower-casing normaliser (accents kept, CJK characters split),
whitespace/punctuation pre-tokeniser, WordPiece with ``##`` continuations, and the
``[CLS] $A [SEP]`` post-processor. ``[PAD]`` is id 0, as the service pads with id 0.
The folder is written by ``PreTrainedTokenizerFast.save_pretrained``; the service reads its
``tokenizer.json`` with ``service.features.text.load_tokenizer``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import WordPieceTrainer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 400) -> Tokenizer:
    """Train a WordPiece tokenizer on ``texts`` (deterministic for a given input order)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=32))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2)
    tok.train_from_iterator(list(texts), trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    if tok.token_to_id("[PAD]") != 0:
        raise AssertionError("[PAD] must be id 0")
    return tok


def save_tokenizer(tok: Tokenizer, folder: Path, max_length: int) -> Path:
    """Write a transformers tokenizer folder (tokenizer.json, tokenizer_config.json, ...)."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
        padding_side="right",
    )
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder
