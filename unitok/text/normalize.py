"""Text normalizers, in the JSON form HF ``tokenizer.json`` files use, applied before splitting.

Only normalizers whose output we can reproduce exactly are accepted: Unicode normal forms,
Lowercase, Replace, Prepend, Strip and Sequences of them. The rest (BertNormalizer, Precompiled
SentencePiece tables, StripAccents, Nmt, ...) raise ``ConfigError``.

A normalizer rewrites the text, so ``decode(encode(text))`` gives the *normalized* text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import regex

from unitok.errors import ConfigError

__all__ = ["Normalizer", "parse_normalizer"]

_FORMS = ("NFC", "NFD", "NFKC", "NFKD")
# Rust's char::is_whitespace (Unicode White_Space), which HF's Strip uses; str.strip() also
# strips U+001C..U+001F, which are not White_Space.
_WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
               "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def parse_normalizer(node: Any, where: str) -> list[dict[str, Any]]:
    """Flatten an HF normalizer object into a list of steps (``[]`` for none).

    Raises ConfigError naming ``where`` for a normalizer that cannot be reproduced exactly.
    """
    if node is None or node == {}:
        return []
    if isinstance(node, (list, tuple)):  # our own saved form: already a list of steps
        return [step for item in node for step in parse_normalizer(item, where)]
    if not isinstance(node, Mapping):
        raise ConfigError(f"{where}: normalizer {node!r} is not an object")
    kind = node.get("type")

    def bad(detail: str) -> ConfigError:
        return ConfigError(
            f"{where}: normalizer {detail} is not supported (unitok reproduces NFC, NFD, NFKC, "
            "NFKD, Lowercase, Replace, Prepend, Strip and Sequences of them exactly); remove it "
            "from the file only if the model was trained without it"
        )

    if kind == "Sequence":
        return [step for item in node.get("normalizers") or [] for step in parse_normalizer(item, where)]
    if kind in _FORMS or kind == "Lowercase":
        return [{"type": kind}]
    if kind == "Prepend":
        if not isinstance(node.get("prepend"), str):
            raise bad("Prepend without a string 'prepend'")
        return [{"type": kind, "prepend": node["prepend"]}]
    if kind == "Strip":
        return [{"type": kind, "strip_left": bool(node.get("strip_left", True)),
                 "strip_right": bool(node.get("strip_right", True))}]
    if kind == "Replace":
        pattern = node.get("pattern")
        content = node.get("content")
        if not isinstance(pattern, Mapping) or len(pattern) != 1 or not isinstance(content, str):
            raise bad(f"Replace({pattern!r}, {content!r})")
        (how, what), = pattern.items()
        if how not in ("String", "Regex") or not isinstance(what, str):
            raise bad(f"Replace with pattern {pattern!r}")
        if how == "Regex":
            try:
                regex.compile(what)
            except regex.error as exc:
                raise ConfigError(f"{where}: Replace regex {what!r} is not valid ({exc})") from None
        return [{"type": kind, "pattern": {how: what}, "content": content}]
    raise bad(repr(kind))


def _lowercase(text: str) -> str:
    # HF lowercases char by char (Rust's char::to_lowercase), so a word-final capital sigma
    # becomes σ, where str.lower() would apply the final-sigma rule and give ς.
    if "\u03a3" not in text:
        return text.lower()
    return "".join(ch.lower() for ch in text)


class Normalizer:
    """A list of normalization steps (as ``parse_normalizer`` returns), applied in order."""

    def __init__(self, steps: Sequence[Mapping[str, Any]]):
        self.steps = [dict(s) for s in steps]
        self._funcs = [self._compile(s) for s in self.steps]

    @staticmethod
    def _compile(step: Mapping[str, Any]):
        kind = step["type"]
        if kind in _FORMS:
            return lambda text: unicodedata.normalize(kind, text)
        if kind == "Lowercase":
            return _lowercase
        if kind == "Prepend":
            prefix = step["prepend"]
            return lambda text: prefix + text if text else text
        if kind == "Strip":
            left, right = step["strip_left"], step["strip_right"]

            def strip(text: str) -> str:
                if left:
                    text = text.lstrip(_WHITE_SPACE)
                if right:
                    text = text.rstrip(_WHITE_SPACE)
                return text

            return strip
        if kind == "Replace":
            (how, what), = step["pattern"].items()
            content = step["content"]
            if how == "String":
                return lambda text: text.replace(what, content) if what else text
            compiled = regex.compile(what)
            return lambda text: compiled.sub(lambda _m: content, text)
        raise AssertionError(f"unparsed normalizer step {kind!r}")

    def __call__(self, text: str) -> str:
        for f in self._funcs:
            text = f(text)
        return text

    def __bool__(self) -> bool:
        return bool(self.steps)
