"""Pre-tokenisation regexes.

A pattern splits text into pieces before BPE runs on each piece, so no token crosses a piece
boundary. Every pattern here is written in the subset of syntax that fancy-regex (tiktoken's
engine) and Oniguruma (HF tokenizers' engine) read the same way, so a vocabulary trained with HF
tokenizers encodes identically through tiktoken.
"""

from __future__ import annotations

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
