"""Executable documentation: the console blocks of a Markdown file, run and compared.

A block fenced as ```console holds commands (lines starting with ``$ ``), each followed by the
output it prints. A block preceded by the line ``<!-- not run -->`` is shown to readers only
(e.g. ``sudo apt-get install``). Expected output is compared with what the command prints:

- whitespace is not significant (hand-wrapped JSON matches the server's compact JSON);
- ``…`` stands for any text (an elided request id, timing or list);
- a number with a decimal point or an exponent matches within ``tolerance`` (probabilities
  printed rounded); every other character, integers included (ports, status codes, sizes,
  dimensions, batch sizes), must be equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NOT_RUN = "<!-- not run -->"
FENCE = re.compile(r"^```(\S*)\s*$")
# A number standing alone: not part of a word, a version ("3.11.2") or an address ("127.0.0.1").
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
ANY_NUMBER = r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


@dataclass
class Command:
    line: str  # without the "$ " prompt
    expected: str  # the lines shown after it, joined with newlines


@dataclass
class Block:
    start_line: int  # 1-based line of the opening fence in the Markdown file
    commands: list[Command] = field(default_factory=list)


def console_blocks(markdown: str) -> list[Block]:
    """Every ```console block that is meant to be run, in order."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        skipped = i > 0 and lines[i - 1].strip() == NOT_RUN
        if fence.group(1) == "console" and not skipped:
            block = Block(start_line=i + 1)
            for line in lines[i + 1 : end]:
                if line.startswith("$ "):
                    block.commands.append(Command(line[2:], ""))
                elif block.commands:
                    previous = block.commands[-1]
                    previous.expected += ("\n" if previous.expected else "") + line
            blocks.append(block)
        i = end + 1
    return blocks


def _pattern(expected: str) -> tuple[re.Pattern[str], list[str]]:
    parts: list[str] = []
    numbers: list[str] = []
    for piece in re.split(r"(…|\s+)", expected.strip()):
        if piece == "…":
            parts.append(".*?")
        elif piece.isspace():
            parts.append(r"\s*")
        elif piece:
            position = 0
            for number in NUMBER.finditer(piece):
                parts.append(re.escape(piece[position : number.start()]))
                parts.append(ANY_NUMBER)
                numbers.append(number.group())
                position = number.end()
            parts.append(re.escape(piece[position:]))
    return re.compile(r"\s*" + "".join(parts) + r"\s*", re.DOTALL), numbers


def mismatch(expected: str, actual: str, tolerance: float) -> str | None:
    """None when ``actual`` is what ``expected`` shows, else why not."""
    pattern, numbers = _pattern(expected)
    match = pattern.fullmatch(actual)
    if match is None:
        return "the text differs"
    for want, got in zip(numbers, match.groups(), strict=True):
        exact = not re.search(r"[.eE]", want)
        if exact and want != got:
            return f"{got} where the document shows {want}"
        if not exact and abs(float(want) - float(got)) > tolerance:
            return f"{got} where the document shows {want} (tolerance {tolerance})"
    return None
