"""The digit typed in several forms and languages, with typo noise.

Forms: the bare digit ("7"), words in English, German, French, Spanish, Italian, Dutch,
Portuguese, Mandarin (hanzi and pinyin), inside short templates ("the number seven",
"die Zahl sieben", "数字七"). Noise is per character: deletion, duplication, adjacent swap,
keyboard-neighbour substitution. A *heavy* sample has its digit word replaced by random
letters of similar length (illegible), so text alone cannot be near perfect.
"""

from __future__ import annotations

import numpy as np

WORDS: dict[str, list[str]] = {
    "en": "zero one two three four five six seven eight nine".split(),
    "de": "null eins zwei drei vier fünf sechs sieben acht neun".split(),
    "fr": "zéro un deux trois quatre cinq six sept huit neuf".split(),
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve".split(),
    "it": "zero uno due tre quattro cinque sei sette otto nove".split(),
    "nl": "nul een twee drie vier vijf zes zeven acht negen".split(),
    "pt": "zero um dois três quatro cinco seis sete oito nove".split(),
    "zh": list("零一二三四五六七八九"),
    "pinyin": "ling yi er san si wu liu qi ba jiu".split(),
    "digit": [str(d) for d in range(10)],
}
TEMPLATES: dict[str, list[str]] = {
    "en": ["{w}", "the number {w}", "number {w}", "it is a {w}", "digit {w}", "a {w}"],
    "de": ["{w}", "die Zahl {w}", "Ziffer {w}"],
    "fr": ["{w}", "le chiffre {w}", "c'est {w}"],
    "es": ["{w}", "el número {w}", "es {w}"],
    "it": ["{w}", "il numero {w}"],
    "nl": ["{w}", "het getal {w}"],
    "pt": ["{w}", "o número {w}"],
    "zh": ["{w}", "数字{w}", "是{w}"],
    "pinyin": ["{w}", "shuzi {w}"],
    "digit": ["{w}", "the number {w}", "#{w}", "no. {w}", "{w}!"],
}
_KEYBOARD = [
    "1234567890",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
]
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _neighbours(ch: str) -> str:
    for r, row in enumerate(_KEYBOARD):
        c = row.find(ch.lower())
        if c >= 0:
            near = [row[c - 1] if c > 0 else "", row[c + 1] if c + 1 < len(row) else ""]
            for rr in (r - 1, r + 1):
                if 0 <= rr < len(_KEYBOARD) and c < len(_KEYBOARD[rr]):
                    near.append(_KEYBOARD[rr][c])
            return "".join(near)
    return _LETTERS


def typo(word: str, rate: float, rng: np.random.Generator) -> str:
    """Apply per-character typos at ``rate``: delete, duplicate, swap, neighbour key."""
    out: list[str] = []
    chars = list(word)
    i = 0
    while i < len(chars):
        ch = chars[i]
        if rng.random() < rate:
            op = int(rng.integers(4))
            if op == 0 and len(chars) > 1:  # deletion
                i += 1
                continue
            if op == 1:  # duplication
                out += [ch, ch]
            elif op == 2 and i + 1 < len(chars):  # swap with the next character
                out += [chars[i + 1], ch]
                i += 2
                continue
            else:  # keyboard neighbour
                near = _neighbours(ch)
                out.append(near[int(rng.integers(len(near)))])
        else:
            out.append(ch)
        i += 1
    return "".join(out) or word


def digit_text(digit: int, rng: np.random.Generator, heavy: bool) -> str:
    """One typed form of ``digit``; ``heavy`` makes the digit word illegible."""
    langs = list(WORDS)
    lang = langs[int(rng.integers(len(langs)))]
    word = WORDS[lang][digit]
    if heavy:
        n = max(2, len(word) + int(rng.integers(-1, 2)))
        word = "".join(_LETTERS[int(rng.integers(26))] for _ in range(n))
    else:
        word = typo(word, float(rng.uniform(0.0, 0.25)), rng)
    templates = TEMPLATES[lang]
    text = templates[int(rng.integers(len(templates)))].format(w=word)
    style = rng.random()
    if style < 0.15:
        text = text.upper()
    elif style < 0.3:
        text = text.capitalize()
    return text


def corpus() -> list[str]:
    """Every clean form, used to seed the tokenizer's vocabulary."""
    return [
        t.format(w=WORDS[lang][d]) for lang, ts in TEMPLATES.items() for t in ts for d in range(10)
    ]
