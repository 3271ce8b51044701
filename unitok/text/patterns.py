"""Pre-tokenisation regexes.

A pattern splits text into pieces before BPE runs on each piece, so no token crosses a piece
boundary. Every pattern here is written in the subset of syntax that fancy-regex (tiktoken's
engine) and Oniguruma (HF tokenizers' engine) read the same way, so a vocabulary trained with HF
tokenizers encodes identically through tiktoken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Character classes, named so the alternatives below read as a grammar.
_UPPER = r"\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}"  # letters that can start or fill an upper-case run
_LOWER = r"\p{Ll}\p{Lm}\p{Lo}\p{M}"  # letters that fill a lower-case run (scripts without case too)
_LEAD = r"[^\r\n\p{L}\p{N}]?"  # one optional non-letter glued to a word: " word", "_name", ".attr"
_CONTRACTION = r"(?:'(?i:[sdmt]|ll|ve|re))?"  # English clitics stay on their word: "it's", "DON'T"

DEFAULT_PATTERN = "|".join(
    [
        # Capitalised or lower-case word: "Hello", " world", "naïve", "東京", "iPhone" -> "i", "Phone".
        rf"{_LEAD}[{_UPPER}]*[{_LOWER}]+{_CONTRACTION}",
        # All-caps word or acronym, possibly followed by lower case: "HTTP", " NASA's".
        rf"{_LEAD}[{_UPPER}]+[{_LOWER}]*{_CONTRACTION}",
        # Numbers in groups of at most three digits, so "2024" -> "202", "4" and ids stay short.
        r"\p{N}{1,3}",
        # Punctuation and symbols, with an optional leading space; trailing newlines stick to them
        # so "):\n" or "};\n" is one piece in code.
        r" ?[^\s\p{L}\p{N}]+[\r\n]*",
        # Whitespace: line breaks (with the indentation before them), then runs that leave the last
        # space to the next word, then whatever is left.
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)

# GPT-2's split, used when an HF byte-level tokenizer.json says ByteLevel(use_regex=True).
GPT2_PATTERN = "|".join(
    [
        r"'(?:[sdmt]|ll|ve|re)",
        r" ?\p{L}+",
        r" ?\p{N}+",
        r" ?[^\s\p{L}\p{N}]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)


def keep_unmatched(pattern: str) -> str:
    """``pattern`` plus an alternative matching each run of text that ``pattern`` skips.

    tiktoken drops text its regex does not match; HF's ``Split(behavior="Isolated")`` keeps such
    a run as a piece of its own. The added alternative matches a maximal run of characters at
    none of which ``pattern`` matches, which is exactly HF's piece.
    """
    return rf"(?:{pattern})|(?:(?!(?:{pattern}))[\s\S])+"


def _probe_text() -> str:
    points = [*range(0x3000), *range(0x3000, 0x110000, 61)]
    chars = [chr(c) for c in points if not 0xD800 <= c <= 0xDFFF]
    return "".join(chars) + "a".join(chars)


def covers_all_text(pattern: str) -> bool:
    """Whether tiktoken keeps every character under ``pattern`` (probed over a sample of every
    Unicode block, alone and between letters). Patterns like GPT-2's, cl100k's and ours do."""
    import tiktoken

    enc = tiktoken.Encoding(
        "probe", pat_str=pattern, mergeable_ranks={bytes([b]): b for b in range(256)}, special_tokens={}
    )
    text = _probe_text()
    return enc.decode_bytes(enc.encode_ordinary(text)) == text.encode("utf-8")


def split_isolated(text: str, regexes: Sequence[Any]) -> list[str]:
    """Apply compiled regexes one after another, as HF's ``Split(behavior="Isolated")`` steps
    in a ``Sequence``: each splits every piece into its matches and the runs between them."""
    pieces = [text]
    for compiled in regexes:
        out: list[str] = []
        for piece in pieces:
            pos = 0
            for m in compiled.finditer(piece):
                start, end = m.span()
                if start == end:  # HF skips empty matches
                    continue
                if start > pos:
                    out.append(piece[pos:start])
                out.append(piece[start:end])
                pos = end
            if pos < len(piece):
                out.append(piece[pos:])
        pieces = out
    return pieces
