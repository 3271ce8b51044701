"""The tokenizers under test: where each modality's benchmark finds them (the suite and the
``--checkpoint`` folders) and the checks every one of them makes while loading."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import unitok
from unitok import ConfigError, UniTokenizer, checkpoint

from report import rel

BUNDLED_SUITE = Path(unitok.__file__).resolve().parent / "assets"


@dataclass
class Candidate:
    """A tokenizer under test, in a suite (``tok``: a whole suite, or the bundled text vocabulary
    and it), with its name in the tables, a description, and the folder it was loaded from (probes
    load it again in a fresh process; None for a whole suite)."""

    name: str
    tok: UniTokenizer
    modality: str
    description: str = ""
    folder: Path | None = None

    @property
    def codec(self):
        return self.tok.media[self.modality]


def candidate_folders(modality: str, suite: Path | None, checkpoints: Sequence[Path], *,
                      use_suite: bool = True) -> list[tuple[str, Path]]:
    """(name, folder) of every ``modality`` tokenizer under test: the suite's (``<suite>/<modality>``;
    the bundled suite when ``suite`` is None), then each of ``checkpoints``. A suite without one is
    refused, unless checkpoints are given and it is the bundled one (then it is skipped with a note)."""
    folders = []
    if use_suite:
        base = Path(suite) if suite is not None else BUNDLED_SUITE
        name = rel(suite) if suite is not None else "bundled suite"
        if (base / modality / checkpoint.CONFIG_NAME).exists():
            folders.append((name, base / modality))
        elif suite is not None or not checkpoints:
            article = "an" if modality[0] in "aeiou" else "a"
            raise ConfigError(f"{name} has no {modality} tokenizer ({base / modality}); train one "
                              f"(recipes/train_{modality}.py) or pass --checkpoint DIR with {article} {modality} "
                              f"tokenizer folder")
        else:
            print(f"note: the {name} has no {modality} tokenizer; comparing the --checkpoint folders only")
    elif not checkpoints:
        raise ConfigError("nothing to compare: --no-suite needs at least one --checkpoint DIR")
    return folders + [(rel(f), Path(f)) for f in checkpoints]


def load_codec(folder: Path, modality: str, what: str, *, device: str = "cpu",
               accept: Callable[[object], bool] = lambda codec: True):
    """The tokenizer saved in ``folder``; refused unless it is a ``modality`` tokenizer that
    ``accept`` takes (``what`` names what was expected, for the message)."""
    codec = checkpoint.load_pretrained(folder, device=device)
    if getattr(codec, "modality", None) != modality or not accept(codec):
        raise ConfigError(f"{folder}: is a {getattr(codec, 'modality', type(codec).__name__)} tokenizer, "
                          f"not {what}")
    return codec


def from_args(load: Callable[..., list], args: argparse.Namespace) -> list:
    """``load(suite, checkpoints, use_suite=...)`` with the command line's ``--suite``,
    ``--checkpoint`` and ``--no-suite``; a ConfigError ends the command with its message."""
    try:
        return load(args.suite, args.checkpoint or [], use_suite=not args.no_suite)
    except ConfigError as e:
        sys.exit(f"error: {e}")


def announce(candidates: Sequence, heldout: str) -> None:
    """Say what is compared on what, before the long work starts."""
    for c in candidates:
        print(f"[{c.name}] {c.description}")
    print(f"held-out: {heldout}")


def check_unique(names: Sequence[str]) -> None:
    if len(set(names)) != len(names):
        raise ConfigError(f"the same tokenizer is listed twice: {list(names)}")


def codec_type(codec) -> str:
    """How the tokenizer tables name a codec's kind: "type `image.vqgan`"."""
    return f"type `{getattr(codec, 'checkpoint_type', type(codec).__name__)}`"


def parameter_count(codec, *, dtype: bool = True) -> str:
    """"12.34M parameters (float32 in memory)" (without the dtype when ``dtype`` is False)."""
    params = sum(p.numel() for p in codec.parameters())
    text = f"{params / 1e6:.2f}M parameters"
    if dtype:
        text += f" ({str(next(codec.parameters()).dtype).replace('torch.', '')} in memory)"
    return text
