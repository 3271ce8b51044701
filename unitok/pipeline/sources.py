"""Inputs of a tokenize run, turned into a numbered stream of records (one record = one document).

Inputs, in the order given, each expanded in a fixed order so record numbers never change:

- a folder: every text or media file under it (recursively, sorted by path); one document per file;
- a glob (``data/*.jpg``, ``shards/**/*.flac``): the matching files, sorted;
- a text or media file: one document;
- a JSONL manifest (``.jsonl``): one document per non-blank line,
  ``{"id": "doc-17", "content": [{"text": "A cat"}, {"image": "img/cat.jpg"}, {"audio": "a.flac"}]}``,
  media paths relative to the manifest's folder, ``id`` defaulting to the line number;
- WebDataset tar shards (``.tar``, ``.tar.gz``, ``.tgz``; ``shard-{000..009}.tar`` brace patterns):
  one document per sample (the members sharing a key). A ``json`` member with a ``content`` list
  orders the parts like a manifest line whose media values name member extensions
  (``{"image": "jpg"}``); without one, every member of a known kind is a part, in tar order.

A record carries descriptions (paths, inline text, member bytes), never decoded media: workers do
the decoding. Anything wrong with a record (bad JSON, a bad part, a truncated tar) makes it a
record with an ``error``, so it is numbered, skipped and reported like any other bad record.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from webdataset.tariterators import base_plus_ext

from ..checkpoint import file_sha256
from ..errors import UnitokError
from ..files import regular_file_size, walk_files
from ..media import DEFAULT_LIMITS, kind_of
from .shards import printable

PART_KINDS = ("text", "image", "video", "audio")
MANIFEST_SUFFIXES = (".jsonl",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
MAX_LINE_BYTES = 64 * 1024 * 1024    # a manifest line longer than this is refused, not read


@dataclass(frozen=True)
class Blob:
    """Bytes of a tar member, with the name errors should use."""

    name: str
    data: bytes


@dataclass
class Record:
    """One input document before tokenization.

    ``parts``: ``(kind, value)`` in document order; ``kind`` is text/image/video/audio as a
    manifest names it, or "media" where only a file name suggested it (a folder's file, a tar
    member), which the worker takes as whatever the content holds, as ``unitok encode`` does; and
    ``value`` a ``str`` (inline text), a ``Path`` (a file) or a ``Blob`` (a tar member).
    """

    index: int
    id: str                    # always a string (a manifest's integer id or line number as its digits)
    source: str
    position: str
    parts: list = field(default_factory=list)
    error: str | None = None


def _is_manifest(path: str) -> bool:
    return path.lower().endswith(MANIFEST_SUFFIXES)


def _is_tar(path: str) -> bool:
    return path.lower().endswith(TAR_SUFFIXES)


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[{")


def resolve_inputs(inputs: list[str]) -> list[str]:
    """Absolute spellings of the inputs (globs stay globs), as recorded in ``run.json``."""
    return [os.path.abspath(os.path.expanduser(name)) for name in inputs]


def _expand_glob(pattern: str) -> list[str]:
    from braceexpand import braceexpand

    found: set[str] = set()
    for p in braceexpand(pattern):
        found.update(glob.glob(p, recursive=True) if _is_glob(p) else ([p] if os.path.exists(p) else []))
    return sorted(found)


class _Counter:
    """Hands out record numbers in input order."""

    def __init__(self):
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next - 1


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, links resolved, lies inside the folder ``root``."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):   # a link loop
        return False


def _expand(inputs: list[str], *, confine: bool = False) -> Iterator[tuple[str, str, object]]:
    """The inputs as ``(what, name, detail)`` in record order: ``("file", path, record id)``,
    ``("manifest", path, None)``, ``("tar", path, None)``, ``("missing", name, reason)``,
    ``("unlisted", path, (record id, reason))`` for a subfolder that cannot be listed or, with
    ``confine``, ``("outside", path, record id)`` for a folder's link that leads out of it."""
    for name in inputs:
        if os.path.isdir(name):
            root = Path(name)
            # every non-folder entry of a known kind, special files and broken links included, and
            # every subfolder that cannot be listed (a path past PATH_MAX): they become records that
            # fail with the reason, instead of vanishing from the run or stopping it
            found, unlisted = walk_files(root)
            entries = sorted([(p, None) for p in found if kind_of(p)] + unlisted, key=lambda e: e[0].as_posix())
            if not entries:
                yield "missing", name, "folder holds no text or media file"
            for p, reason in entries:
                rid = p.relative_to(root).as_posix()
                if reason is not None:
                    yield "unlisted", str(p), (rid, reason)
                else:
                    yield ("outside" if confine and not _inside(p, root) else "file"), str(p), rid
            continue
        paths = _expand_glob(name) if _is_glob(name) and not os.path.exists(name) else [name]
        if not paths or not os.path.exists(paths[0]):
            yield "missing", name, "the pattern matches no file" if _is_glob(name) else "no such file or folder"
            continue
        for path in paths:
            if not os.path.isdir(path):
                kind = "manifest" if _is_manifest(path) else "tar" if _is_tar(path) else "file"
                if kind != "file":    # a FIFO would block the reader (and the resume digest), /dev/zero never end
                    try:
                        regular_file_size(path, UnitokError, "manifest" if kind == "manifest" else "tar shard")
                    except UnitokError as e:
                        yield "missing", path, str(e)
                        continue
                yield kind, path, Path(path).name


def input_facts(name: str) -> dict:
    """What one input expands to, for ``run.json``: a resume compares these to notice an input that
    changed since the run started. A folder or glob: how many files it matches and a digest of their
    names and sizes (a file added, removed, renamed or resized changes it); a manifest: its size and
    sha256 (its lines are the records); a tar or a plain file: its size."""
    listing = hashlib.sha256()
    files = 0
    for what, path, detail in _expand([name]):
        if what == "missing":
            return {"missing": detail}
        try:
            size = os.path.getsize(path)
        except OSError:
            size = -1
        if os.path.isdir(name) or _is_glob(name) and not os.path.exists(name):
            content = file_sha256(path) if what == "manifest" and size >= 0 else size
            listing.update(f"{detail if os.path.isdir(name) else path}\t{content}\n".encode("utf-8", "surrogateescape"))
            files += 1
        elif what == "manifest":
            return {"bytes": size, "sha256": file_sha256(path) if size >= 0 else None}
        else:
            return {"bytes": size}
    return {"files": files, "listing_sha256": listing.hexdigest()}


def iter_records(inputs: list[str], *, confine: bool = False,
                 max_member_bytes: int = DEFAULT_LIMITS.max_file_bytes) -> Iterator[Record]:
    """Every record of the inputs, numbered from 0 in input order.

    ``confine``: every file a record names must lie inside its input (a folder's files, links
    resolved, inside the folder; a manifest's media inside the manifest's folder); a record that
    reaches outside is skipped with the reason. ``max_member_bytes``: a tar member declaring more is
    refused before it is read."""
    counter = _Counter()
    for what, name, detail in _expand(inputs, confine=confine):
        if what == "missing":
            yield Record(counter.take(), name, name, "input", error=detail)
        elif what == "outside":
            yield Record(counter.take(), detail, name, "file",
                         error=f"a link to {_shown(Path(name).resolve())}, outside the input folder (--confine)")
        elif what == "unlisted":
            rid, reason = detail
            yield Record(counter.take(), rid, name, "file", error=f"cannot list this folder ({reason}); its files "
                                                                  f"are not read")
        elif what == "manifest":
            yield from _manifest_records(Path(name), counter, confine=confine)
        elif what == "tar":
            yield from _tar_records(name, counter, max_member_bytes)
        else:
            yield _file_record(counter.take(), Path(name), detail)


def _brief(e: BaseException) -> str:
    """An exception as a short printable reason (no message of megabytes, no raw surrogates)."""
    text = str(e) or type(e).__name__
    if isinstance(e, RecursionError):
        text = "nested too deeply"
    return _shown(text if len(text) <= 300 else text[:300] + "...")


def _shown(path) -> str:
    """A path as messages show it: printable whatever bytes the name holds."""
    return printable(path) if isinstance(path, (str, Path)) else repr(path)


def chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Consecutive lists of ``size`` records (the last one shorter)."""
    chunk: list[Record] = []
    for r in records:
        chunk.append(r)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def count_records(inputs: list[str]) -> int | None:
    """How many records ``iter_records`` will yield, found cheaply (no JSON parsing, tar headers
    only); None when a compressed tar would have to be read in full to know."""
    total = 0
    for what, name, _ in _expand(inputs):
        if what == "manifest":
            try:
                with open(name, "rb") as f:
                    total += sum(1 for line in f if line.strip())
            except OSError:
                total += 1      # the unreadable manifest is one bad record
        elif what == "tar":
            if not name.lower().endswith(".tar"):
                return None
            total += _count_tar_samples(name)
        else:
            total += 1
    return total


def _file_record(index: int, path: Path, rid: str) -> Record:
    kind = _inferred_kind(path)
    if kind is None:
        return Record(index, rid, str(path), "file", error="unknown file type; expected text (.txt, .md, ...), "
                                                           "image, video or audio")
    return Record(index, rid, str(path), "file", [(kind, path)])


# -- JSONL manifests ------------------------------------------------------------------------------

class _Outside(Exception):
    """A manifest part that names a file outside the manifest's folder (with ``confine``)."""


def _lines(f) -> Iterator[tuple[int, bytes | None]]:
    """(line number from 1, content) of every line; content is None for a line over the limit,
    which is skipped without being held in memory."""
    number = 0
    while True:
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = f.readline(MAX_LINE_BYTES)
            yield number, None
            continue
        yield number, line


def _manifest_records(path: Path, counter: _Counter, *, confine: bool = False) -> Iterator[Record]:
    source = str(path)
    base = path.parent

    def media_path(value: str) -> Path:
        p = base / value
        if confine and not _inside(p, base):
            raise _Outside(f"{value!r} leaves the manifest's folder {_shown(base)} (--confine)")
        return p

    try:
        f = open(path, "rb")
    except OSError as e:
        yield Record(counter.take(), source, source, "input", error=f"cannot read the manifest ({e.strerror or e})")
        return
    with f:
        for number, line in _lines(f):
            if line is not None and not line.strip():
                continue
            record = Record(counter.take(), str(number), source, f"line {number}")
            if line is None:
                record.error = f"line is longer than {MAX_LINE_BYTES} bytes"
            else:
                try:
                    _fill_from_json(record, json.loads(line), media_path)
                except _Outside as e:
                    record.error = str(e)
                except (ValueError, RecursionError) as e:   # bad JSON, an integer of 5000 digits, deep nesting
                    record.error = f"not valid JSON ({_brief(e)})"
            yield record


def _fill_from_json(record: Record, doc, media_value) -> None:
    """Set ``record.id`` and ``record.parts`` (or ``record.error``) from a manifest-style object;
    ``media_value`` turns a media string into what the worker opens."""
    if not isinstance(doc, dict):
        record.error = f"expected a JSON object with a 'content' list, got {type(doc).__name__}"
        return
    if "id" in doc:
        if not isinstance(doc["id"], (str, int)) or isinstance(doc["id"], bool):
            record.error = f"'id' must be a string or an integer, got {doc['id']!r}"
            return
        try:
            record.id = str(doc["id"])
        except ValueError:   # an integer of thousands of digits has no str() (Python's conversion limit)
            record.error = "'id' is an integer too long to write out"
            return
    content = doc.get("content")
    if not isinstance(content, list):
        record.error = "missing 'content': expected a list of parts like {\"text\": ...} or {\"image\": PATH}"
        return
    parts = []
    for i, part in enumerate(content):
        keys = [k for k in PART_KINDS if isinstance(part, dict) and k in part]
        if len(keys) != 1:
            record.error = f"part {i} must be an object with one of {', '.join(PART_KINDS)}, got {part!r:.80}"
            return
        kind, value = keys[0], part[keys[0]]
        if not isinstance(value, str):
            record.error = f"part {i}: {kind} must be a string, got {type(value).__name__}"
            return
        parts.append((kind, value if kind == "text" else media_value(value)))
    record.parts = parts


# -- WebDataset tar shards ------------------------------------------------------------------------

def _split_member(name: str) -> tuple[str, str] | None:
    """WebDataset's naming: a member ``dir/key.ext`` (``ext`` may hold dots) belongs to sample
    ``dir/key``, extensions compared in lower case; None for a name without an extension."""
    key, ext = base_plus_ext(name)
    return None if key is None else (key, ext.lower())


def _link_kind(member: tarfile.TarInfo) -> str | None:
    """Why a tar member cannot be read as a part (None for a regular file or a folder)."""
    if member.islnk():
        return f"a hard link to {_shown(member.linkname)}"
    if member.issym():
        return f"a symbolic link to {_shown(member.linkname)}"
    if member.issparse():
        return "a sparse file"
    if not (member.isreg() or member.isdir()):
        return "a special file (device or FIFO)"
    return None


def _tar_samples(stream, max_member_bytes: int) -> Iterator[tuple[str, dict, list[str]]]:
    """``(key, {ext: bytes}, problems)`` per sample of a tar stream, in tar order. Members of one
    sample are consecutive (WebDataset's rule); every member that cannot be a part (a link, a sparse
    or special file, one over ``max_member_bytes``, a second member of the same extension) becomes
    a problem of its sample, so the sample is reported instead of silently losing a part."""
    key, members, problems = None, {}, []
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            name = member.name
            if member.isdir() or re.match(r"__[^/]*__($|/)", name):   # folders and WebDataset metadata
                continue
            split = _split_member(name)
            if split is None:
                if key is not None:
                    problems.append(f"member {_shown(name)} has no extension, so it belongs to no sample")
                continue
            k, ext = split
            if k != key:
                if key is not None:
                    yield key, members, problems
                key, members, problems = k, {}, []
            why = _link_kind(member)
            if why is None and member.size > max_member_bytes:
                why = f"{member.size} bytes, over the limit of {max_member_bytes} (MediaLimits.max_file_bytes)"
            if why is None and ext in members:
                why = f"a second member with the extension .{ext}"
            if why is not None:
                problems.append(f"member {_shown(name)} is {why}")
                continue
            members[ext] = tar.extractfile(member).read()
        # tarfile takes a shard cut at a header's boundary for its end: the samples after the cut
        # would vanish without a word, and the last one may lack members. A whole shard ends with
        # the end-of-archive marker (zero blocks); checked where the shard is not compressed (the
        # decompressors notice their own truncation)
        if getattr(tar.fileobj, "comptype", None) == "tar" and not _marker_at(stream, tar.offset):
            pending = f"; sample {_shown(key)} may be incomplete" if key is not None else ""
            raise tarfile.ReadError(f"it ends without the end-of-archive marker, so it was cut short{pending} and "
                                    f"any later samples are missing")
    if key is not None:
        yield key, members, problems


def _marker_at(stream, offset: int) -> bool:
    try:
        return os.pread(stream.fileno(), 512, offset) == bytes(512)
    except (OSError, AttributeError, ValueError):   # not a file: nothing to check against
        return True


def _count_tar_samples(path: str) -> int:
    keys, last = 0, None
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                split = None if member.isdir() else _split_member(member.name)
                if split is not None and split[0] != last:
                    keys, last = keys + 1, split[0]
    except (tarfile.TarError, OSError):
        keys += 1   # the damage itself is one record
    return max(keys, 1)


def _tar_records(path: str, counter: _Counter, max_member_bytes: int) -> Iterator[Record]:
    yielded = 0
    last_key = None
    try:
        with open(path, "rb") as stream:
            for key, members, problems in _tar_samples(stream, max_member_bytes):
                shown = _shown(key)
                record = Record(counter.take(), shown, path, f"sample {shown}")
                if problems:
                    record.error = "; ".join(problems)
                else:
                    _fill_from_sample(record, {"__key__": shown, **members}, path)
                last_key = shown
                yielded += 1
                yield record
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        where = f"after sample {last_key}" if last_key is not None else "at the start"
        yield Record(counter.take(), path, path, where, error=f"tar shard is damaged or truncated ({e})")
        return
    if not yielded:
        yield Record(counter.take(), path, path, "input", error="tar shard holds no sample")


def _inferred_kind(name) -> str | None:
    """A part's kind from a file name alone: "text", "media" (an image, video or audio file: the
    content decides which, so an animated .gif is a video and an audio-only .mp4 is audio) or None."""
    kind = kind_of(name)
    return None if kind is None else "text" if kind == "text" else "media"


def _member_kind(suffix: str) -> str | None:
    return _inferred_kind("x." + suffix.rsplit(".", 1)[-1])


def _fill_from_sample(record: Record, sample: dict, path: str) -> None:
    key = sample["__key__"]
    blob = lambda suffix: Blob(f"{path}:{key}.{suffix}", sample[suffix])  # noqa: E731
    if "json" in sample:
        try:
            doc = json.loads(sample["json"])
        except (ValueError, RecursionError) as e:        # UnicodeDecodeError and JSONDecodeError included
            record.error = f"{key}.json is not valid JSON ({_brief(e)})"
            return
        if isinstance(doc, dict) and "content" in doc:
            missing = []

            def member(suffix):
                if suffix not in sample:
                    missing.append(suffix)
                return blob(suffix) if suffix in sample else None

            _fill_from_json(record, {"id": record.id, **doc}, member)
            if missing and record.error is None:
                record.error = f"{key}.json names member(s) {', '.join(missing)} that the sample does not have"
            return
    record.parts = [(_member_kind(s), blob(s)) for s in sample
                    if not s.startswith("__") and _member_kind(s) is not None]
    if not record.parts:
        record.error = "sample has no member of a known kind (text, image, video, audio)"


