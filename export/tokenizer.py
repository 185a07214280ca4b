"""A WordPiece tokenizer built with ``tokenizers`` and saved as a transformers folder.

BERT-style pipeline: lower-casing normaliser (accents kept, CJK characters split),
whitespace/punctuation pre-tokeniser, WordPiece with ``##`` continuations, and the
``[CLS] $A [SEP]`` post-processor. ``[PAD]`` is id 0, as the service pads with id 0.

The vocabulary is learnt from the corpus by a deterministic count, not by
``tokenizers.trainers.WordPieceTrainer``: that trainer breaks ties between equally frequent
merges in hash-map order, so two runs on the same corpus give different vocabularies (we
measured 3 different sets in 6 runs), which would break "deterministic by seed". The count,
run through the tokenizer's own normaliser and pre-tokeniser, keeps: the special tokens,
every character seen (alone and as a ``##`` continuation, so any typo still tokenises), then
whole words by decreasing frequency (ties by spelling) up to ``vocab_size``.

The folder is written by ``PreTrainedTokenizerFast.save_pretrained``; the service reads its
``tokenizer.json`` with ``service.features.text.load_tokenizer``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def learn_vocab(
    texts: Iterable[str],
    normalizer: normalizers.Normalizer,
    pre_tokenizer: pre_tokenizers.PreTokenizer,
    vocab_size: int,
    min_frequency: int = 2,
) -> dict[str, int]:
    """Specials, then sorted characters and ``##`` characters, then frequent whole words."""
    counts: Counter[str] = Counter()
    for text in texts:
        for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            counts[piece] += 1
    chars = sorted({c for word in counts for c in word})
    tokens = SPECIALS + chars + [f"##{c}" for c in chars]
    words = sorted(
        (w for w, n in counts.items() if n >= min_frequency and len(w) > 1),
        key=lambda w: (-counts[w], w),
    )
    tokens += words[: max(0, vocab_size - len(tokens))]
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 400) -> Tokenizer:
    """Learn a WordPiece tokenizer from ``texts`` (deterministic for a given input)."""
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = learn_vocab(list(texts), normalizer, pre_tokenizer, vocab_size)
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=32))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    if tok.token_to_id("[PAD]") != 0:
        raise AssertionError("[PAD] must be id 0")
    return tok


def canonical(tok: Tokenizer) -> Tokenizer:
    """A copy without truncation or padding state. ``service.features.text.encode_text``
    enables truncation on the tokenizer it is given; that state must not leak into saved
    folders or cache keys (the recipe's max_length is the single source of truth)."""
    copy = Tokenizer.from_str(tok.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def save_tokenizer(tok: Tokenizer, folder: Path, max_length: int) -> Path:
    """Write a transformers tokenizer folder (tokenizer.json, tokenizer_config.json, ...)."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=canonical(tok),
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
