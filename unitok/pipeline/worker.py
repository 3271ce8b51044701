"""Tokenizing one record: what every worker (a local process, a Ray actor, or the main process
itself) runs, with the tokenizer suite loaded once."""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..errors import ConfigError, MediaError, UnitokError
from ..files import read_regular_file
from ..parentwatch import watch_parent
from ..media import DEFAULT_LIMITS, MediaLimits, Preprocess, check_document_bytes, open_media
from .shards import GROUP_DTYPE, Document, Skipped, id_dtype
from .sources import Blob, Record

MAX_TEXT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Options:
    """Everything besides the suite that decides the ids; recorded in ``run.json``."""

    bos: bool = False
    eos: bool = False
    allowed_special: tuple | str = ()       # text-vocabulary specials recognised in text, or "all"
    bitrate: float | None = None            # audio: highest bitrate in kbit/s (None: all levels)
    max_tokens: int = 1 << 24               # a longer document is skipped as absurd
    # MediaLimits fields (max_pixels, max_frames, max_seconds, ...) that differ from the defaults
    limits: tuple = ()                      # ((name, value), ...)
    confine: bool = False                   # every file a record names stays inside its input (--confine)
    # unitok.media.Preprocess fields (max_pixels, target_pixels, max_fps, max_duration, split_shots, ...)
    # that were given; the others take Preprocess's defaults (see ``resuming`` for a resumed run)
    preprocess: tuple = ()                  # ((name, value), ...)
    # BPE-dropout of the text (--bpe-dropout): record i is encoded with seed (seed, i), so the shards
    # are the same whatever the worker count
    bpe_dropout: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.limits, dict):
            object.__setattr__(self, "limits", tuple(sorted(self.limits.items())))
        if isinstance(self.preprocess, dict):
            object.__setattr__(self, "preprocess", tuple(sorted(self.preprocess.items())))
        if isinstance(self.bpe_dropout, bool) or not isinstance(self.bpe_dropout, (int, float)) or \
                not 0.0 <= self.bpe_dropout <= 1.0:
            raise ConfigError(f"bpe_dropout must be a probability in [0, 1], got {self.bpe_dropout!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        self.media_limits()   # refuse unknown names and bad values now, not in every worker
        self.media_preprocess()

    def media_limits(self) -> MediaLimits:
        """The ``MediaLimits`` media files are read under."""
        if not self.limits:
            return DEFAULT_LIMITS
        try:
            return MediaLimits(**dict(self.limits))
        except TypeError as e:
            raise ConfigError(f"limits: {e}; the fields are those of unitok.media.MediaLimits") from None

    def media_preprocess(self) -> Preprocess:
        """The ``Preprocess`` policy media are brought under before they are encoded."""
        try:
            return Preprocess(**dict(self.preprocess))
        except TypeError as e:
            raise ConfigError(f"preprocess: {e}; the fields are those of unitok.media.Preprocess") from None

    def to_json(self) -> dict:
        data = asdict(self)
        if not isinstance(self.allowed_special, str):
            data["allowed_special"] = sorted(self.allowed_special)
        data.pop("limits")
        if self.limits:   # only when set, so run.json of runs with default limits stays as it was
            data["limits"] = dict(self.limits)
        data["preprocess"] = self.media_preprocess().to_json()   # split_shots always, so a resume can tell
        if not self.bpe_dropout:   # only when used, so run.json of runs without it stays as it was
            data.pop("bpe_dropout")
            data.pop("seed")
        return data

    def resuming(self, recorded) -> "Options":
        """These options for resuming a run whose ``run.json`` recorded ``recorded`` (its
        ``options``): unless shot splitting was chosen here, the run keeps its own choice, so a run
        resumes as it started whatever the default is now."""
        if "split_shots" in dict(self.preprocess):
            return self
        was = upgrade_recorded(recorded).get("preprocess", {}) if isinstance(recorded, dict) else {}
        if not isinstance(was, dict) or not isinstance(was.get("split_shots"), bool):
            return self
        return replace(self, preprocess={**dict(self.preprocess), "split_shots": was["split_shots"]})


def upgrade_recorded(options: dict) -> dict:
    """``run.json``'s options as this unitok records them. Before unitok 0.4 videos were coded whole
    unless ``split_shots`` was set, and the option was recorded only when set: a run that recorded
    none ran with ``split_shots`` off."""
    if not isinstance(options, dict):
        return options
    preprocess = options.get("preprocess", {})
    if not isinstance(preprocess, dict) or "split_shots" in preprocess:
        return options
    return {**options, "preprocess": {**preprocess, "split_shots": False}}


@dataclass(frozen=True)
class WorkerSpec:
    """How to build a worker in another process (picklable)."""

    suite: str | None
    device: str
    options: Options
    plugins: tuple = ()        # modules to import first (they may register tokenizer types)
    threads: int = 1           # torch threads per worker, fixed so ids never depend on the worker count
    loader: str = "unitok.load"   # what builds the suite: ``loader(suite, device=...)``, found by name


def resolve_loader(name: str):
    """The suite loader named ``module.function``. The pipeline takes it by name instead of
    importing the tokenizers: workers in other processes find it the same way, and a caller may
    hand in another (a remote tokenizer pool, a suite built in code)."""
    module, _, attr = str(name).rpartition(".")
    try:
        loader = getattr(importlib.import_module(module), attr) if module else None
    except (ImportError, AttributeError) as e:
        raise UnitokError(f"suite loader {name!r}: cannot import it ({e})") from None
    if not callable(loader):
        raise UnitokError(f"suite loader {name!r}: expected 'module.function', a function that takes the suite "
                          f"folder and device= and returns a tokenizer")
    return loader


def import_plugins(plugins) -> None:
    for name in plugins:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UnitokError(f"--plugin {name}: cannot import it ({e})") from None


def _exit_with_parent() -> None:
    """A worker whose parent was killed (SIGKILL leaves no chance to stop it) exits by itself; a
    pool worker already watches from its initializer (``parentwatch.start_worker``)."""
    watch_parent()


def check_allowed_special(tok, allowed) -> None:
    """``--allowed-special``: every name must be a special token of the suite's text vocabulary
    (checked once for a whole run, by encoding one character under it: the text tokenizer refuses
    an unknown name, whichever kind it is, a service's included)."""
    if allowed and allowed != "all":
        tok.encode("x", allowed_special=allowed)


def set_audio_bitrate(tok, kbps: float) -> int:
    """``--bitrate``: the suite's audio tokenizer codes with the most levels whose bitrate is at most
    ``kbps``; returns that level count. Refused by name where the suite has no audio tokenizer or
    its audio tokenizer has one fixed bitrate (a public codec loaded by ``from_hf``, for example)."""
    codec = tok.media.get("audio")
    if codec is None:
        raise ConfigError("--bitrate applies to audio, but this suite has no audio tokenizer")
    if not callable(getattr(codec, "set_bitrate", None)):
        raise ConfigError(f"--bitrate: this suite's audio tokenizer ({type(codec).__name__}) has no bitrates to "
                          f"choose from; leave --bitrate out")
    return codec.set_bitrate(kbps)


class Worker:
    """Turns records into ``Document`` or ``Skipped`` results with one loaded tokenizer."""

    def __init__(self, tok, options: Options):
        self.limits = options.media_limits()
        # the run's limits, preprocessing and bitrate apply to the suite too (the image codec refuses
        # pictures over its limits); on a copy that shares the models, so the caller's suite is left
        # as it is
        tok = tok.with_limits(self.limits if options.limits else None,
                              max_tokens=max(tok.max_tokens, options.max_tokens),
                              preprocess=options.media_preprocess())
        self.tok = tok
        self.options = options
        self.dtype = id_dtype(len(tok.space))
        self.allowed = options.allowed_special if isinstance(options.allowed_special, str) else set(
            options.allowed_special)
        if options.bitrate is not None:
            set_audio_bitrate(tok, options.bitrate)

    @classmethod
    def from_spec(cls, spec: WorkerSpec, *, in_subprocess: bool = True) -> "Worker":
        torch.set_num_threads(spec.threads)
        if in_subprocess:
            _exit_with_parent()
        import_plugins(spec.plugins)
        return cls(resolve_loader(spec.loader)(spec.suite, device=spec.device), spec.options)

    def __call__(self, record: Record) -> Document | Skipped:
        if record.error is not None:
            return self.skip(record, record.error)
        try:
            noise = {"dropout": self.options.bpe_dropout, "seed": (self.options.seed, record.index)} \
                if self.options.bpe_dropout else {}
            seq = self.tok.encode(self.items(record), bos=self.options.bos, eos=self.options.eos, allowed_special=self.allowed,
                                  **noise)
        except UnitokError as e:
            return self.skip(record, str(e))
        except Exception as e:   # a bug or a decoder crash on one record must not end the run
            return self.skip(record, f"unexpected {type(e).__name__}: {e}")
        if not seq.spans:
            return self.skip(record, "empty document: no text or media to tokenize")
        if len(seq) > self.options.max_tokens:
            return self.skip(record, f"document has {len(seq)} tokens, over the limit of {self.options.max_tokens} "
                                     f"(--max-tokens)")
        return Document(record.index, record.id, record.source, seq.ids.astype(self.dtype),
                        seq.groups.astype(GROUP_DTYPE), seq.spans)

    def items(self, record: Record) -> list:
        """The record's parts, read and decoded: text as ``str``/``bytes``, media as ``Image`` etc.
        A document's media together may not decode to more than ``MediaLimits.max_decoded_bytes``."""
        out, total = [], 0
        for kind, value in record.parts:
            if kind == "text":
                out.append(self._text(value))
                continue
            item = self._media(kind, value, self.limits)
            total = check_document_bytes(total, item, self.limits, value.name if isinstance(value, Blob) else str(value))
            out.append(item)
        return out

    def many(self, records: list[Record]) -> list[Document | Skipped]:
        return [self(r) for r in records]

    @staticmethod
    def skip(record: Record, reason: str) -> Skipped:
        return Skipped(record.index, record.id, record.source, record.position, reason)

    @staticmethod
    def _text(value) -> str | bytes:
        if isinstance(value, Blob):
            return value.data
        if isinstance(value, Path):   # a regular file only: a FIFO would block, /dev/zero never end
            return read_regular_file(value, MAX_TEXT_BYTES, MediaError, "text file")
        return value

    @staticmethod
    def _media(kind: str, value, limits: MediaLimits = DEFAULT_LIMITS):
        if isinstance(value, Blob):
            try:
                item = open_media(value.data, limits=limits)
            except MediaError as e:
                raise MediaError(e.reason, value.name) from None
            name = value.name
        else:
            item = open_media(value, limits=limits)
            name = str(value)
        actual = type(item).__name__.lower()
        if kind != "media" and actual != kind:      # a manifest's "image" must be one; a file name only suggests
            raise MediaError(f"listed as {kind}, but the file holds {'an' if actual[0] in 'aeiou' else 'a'} {actual}",
                             name)
        return item


# -- the process-pool side ------------------------------------------------------------------------

_WORKER: Worker | None = None


def init_process(spec: WorkerSpec) -> None:
    global _WORKER
    _WORKER = Worker.from_spec(spec)


def run_in_process(records: list[Record]) -> list[Document | Skipped]:
    assert _WORKER is not None, "init_process runs first"
    return _WORKER.many(records)
