"""Fuzz cases of the robustness issue's classes (``robustness.py``): hostile manifest records, tar
shards, special files, damaged JSON, containment and unclean failures. Every case builds its inputs
from its random numbers (no file is committed) and checks the issue's invariants: every good record
is in the dataset with the ids ``tok.encode`` gives it, every bad one is in ``errors.jsonl`` under a
valid UTF-8 name, a refusal is a unitok error naming the file, and a run that failed or was cut
short completes with ``--resume`` byte-identical to a clean run. Bounded time and memory are the
watchdog's part (``robustness.py``)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

from fuzz_common import Calls, Context, failed

GOOD, BAD, EITHER = "good", "bad", "either"      # what a record must become: stored, listed, or one of them
DEEP = 100_000                                   # nesting deeper than Python's stack
HUGE_INT = "1" * 5000                            # past Python's integer-string limit
LONG_PATH = "d" * 200 + ("/" + "d" * 200) * 25 + "/x.png"    # longer than PATH_MAX (4096)


def _suite(ctx: Context):
    return ctx.suites["toy"]


def _options(tok):
    from unitok.pipeline import Options

    return Options(max_tokens=tok.max_tokens)


def _cfg(inputs, out: Path, tok, **kw):
    from unitok.pipeline import TokenizeConfig

    return TokenizeConfig([str(i) for i in inputs], out, workers=0, shard_size=4, progress=False,
                          options=_options(tok), **kw)


def _texts(rng, n: int) -> list[str]:
    pool = ["plain words", "caf\u00e9 na\u00efve", "\U0001F600 emoji", "\u05e9\u05dc\u05d5\u05dd rtl",
            "tab\there", "nul\u0000inside", "line\nbreaks\n", "\u200b zero width", "x" * 3000, "  spaced  "]
    return [f"{pool[int(rng.integers(len(pool)))]} {i}" for i in range(n)]


# =================================================================================================
# the invariants of a tokenize run
# =================================================================================================

@dataclasses.dataclass
class Expect:
    """What each record must become; keyed by record index (manifests) or by id (folders, tars)."""

    by_index: dict = dataclasses.field(default_factory=dict)   # index -> (verdict, content or None)
    by_id: dict = dataclasses.field(default_factory=dict)      # id -> (verdict, content or None)


def check_run(tok, out: Path, expect: Expect) -> tuple[int, list[str]]:
    """(records lost, problems): good records stored with tok.encode's ids, bad ones listed, none
    twice, every name valid UTF-8."""
    import numpy as np

    from unitok.data import TokenDataset

    problems, lost = [], 0
    ds = TokenDataset(out)
    stored_i, stored_id = {}, {}
    for j in range(len(ds)):
        doc = ds[j]
        index, _ = ds.source(j)
        stored_i[index] = stored_id[doc["id"]] = doc["ids"]
    listed = [json.loads(x) for x in (out / "errors.jsonl").read_bytes().decode("utf-8").splitlines()]
    listed_i, listed_id = {e["index"] for e in listed}, {e["id"] for e in listed}
    for e in listed:
        str(e["id"]).encode("utf-8")          # a lone surrogate would raise: names are escaped
        if not isinstance(e.get("reason"), str) or not e["reason"]:
            problems.append(f"error line without a reason: {e}")
    for table, stored, errors in ((expect.by_index, stored_i, listed_i), (expect.by_id, stored_id, listed_id)):
        for key, (verdict, content) in table.items():
            here, there = key in stored, key in errors
            if here and there:
                problems.append(f"record {key!r} is both stored and listed")
            elif not here and not there:
                lost += 1
                problems.append(f"record {key!r} is neither stored nor listed")
            elif verdict == GOOD and there:
                lost += 1
                problems.append(f"good record {key!r} was listed as an error")
            elif verdict == BAD and here:
                problems.append(f"bad record {key!r} was stored")
            elif here and content is not None and not np.array_equal(stored[key], tok.encode(content).ids):
                problems.append(f"record {key!r} was stored with other ids than tok.encode gives")
    return lost, problems


def same_files(a: Path, b: Path) -> list[str]:
    """Differences between two output folders (names and bytes)."""
    names = sorted(p.name for p in a.iterdir())
    other = sorted(p.name for p in b.iterdir())
    if names != other:
        return [f"files differ: {sorted(set(names) ^ set(other))}"]
    return [f"{n} differs" for n in names if (a / n).read_bytes() != (b / n).read_bytes()]


def cut_short(out: Path, rng) -> str:
    """Make a finished run look killed: its index and the files of one shard (or a half-written
    temporary) are gone."""
    (out / "index.json").unlink()
    shards = sorted(out.glob("shard-*.json"))
    if not shards:
        return "index removed"
    victim = shards[int(rng.integers(len(shards)))].name[: -len(".json")]
    for p in out.glob(victim + ".*"):
        if rng.random() < 0.7:
            p.unlink()
    (out / f".{victim}.bin.partial").write_bytes(b"half")
    return f"killed while writing {victim}"


def resume_matches(tok, inputs, out: Path, clean: Path, rng) -> list[str]:
    from unitok.pipeline import tokenize

    what = cut_short(out, rng)
    tokenize(dataclasses.replace(_cfg(inputs, out, tok), resume=True), tok=tok)
    return [f"after a resume ({what}): {d}" for d in same_files(out, clean)]


# =================================================================================================
# hostile records: manifest lines, folder entries and tar samples of every class the issue lists
# =================================================================================================

def _tar_bytes(members) -> bytes:
    """members: (name, bytes) regular files, (name, ("symlink"|"hardlink", target)) links, or
    (name, ("sparse", size)) a GNU sparse member declaring ``size`` bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple) and content[0] == "sparse":
                tar.fileobj.write(_sparse_header(name, content[1]))
                tar.offset += 512
                continue
            if isinstance(content, tuple):
                info.type = tarfile.SYMTYPE if content[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _sparse_header(name: str, real_size: int) -> bytes:
    """An old GNU sparse member ('S') with no stored data that declares ``real_size`` bytes."""
    h = bytearray(512)
    raw = os.fsencode(name)
    h[0:len(raw)] = raw
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % 0
    h[136:148] = b"%011o\0" % 0
    h[156:157] = b"S"
    h[257:265] = b"ustar  \0"
    h[386:398] = b"%011o\0" % 0                     # one sparse entry: offset 0 ...
    h[398:410] = b"%011o\0" % 0                     # ... of no bytes
    h[483:495] = b"%011o\0" % real_size if real_size < 8**11 else b"%012o" % real_size   # the size it claims
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    assert len(h) == 512
    return bytes(h)


def hostile_records_case(ctx: Context, rng, index: int):
    """A manifest, a folder and a tar shard, each mixing good records with hostile ones; the run
    must keep every good one; then the run is cut short and resumed: identical to the clean run."""
    from unitok.pipeline import tokenize

    tok = _suite(ctx)
    root = ctx.fresh()
    expect = Expect()
    (root / "pic.png").write_bytes(ctx.seeds["img.png"])
    texts = _texts(rng, 40)

    # the manifest: its records are numbered first, by line
    lines = []
    hostile = [
        (BAD, '{"id": ' + HUGE_INT + ', "content": [{"text": "huge id"}]}'),
        (GOOD, '{"id": "\\ud800", "content": [{"text": "lone surrogate id"}]}'),
        (EITHER, '{"content": [{"text": "lone \\udc80 surrogate text"}]}'),
        (BAD, "[" * DEEP + "]" * DEEP),
        (BAD, '{"content": ' + "[" * DEEP + "]" * DEEP + "}"),
        (BAD, json.dumps({"content": [{"image": LONG_PATH}]})),
        (BAD, json.dumps({"content": [{"image": "nul\u0000.png"}]})),
        (BAD, b'{"content": [{"text": "\xff\xfe raw bytes"}]}'.decode("latin-1")),
        (EITHER, json.dumps({"content": [{"text": " " * 1_000_000}]})),
        (EITHER, json.dumps({"content": [{"text": "\u0301" * 100_000}]})),
        (BAD, json.dumps({"content": [{"text": 1e308}]})),
        (BAD, '{"content": [{"text": "unterminated'),
    ]
    for i in range(int(rng.integers(6, 14))):
        if rng.random() < 0.4:
            verdict, line = hostile[int(rng.integers(len(hostile)))]
            lines.append(line)
            expect.by_index[i] = (verdict, None)
        elif rng.random() < 0.3:
            lines.append(json.dumps({"id": f"m{i}", "content": [{"text": texts[i]}, {"image": "pic.png"}]}))
            expect.by_index[i] = (GOOD, [texts[i], root / "pic.png"])
        else:
            lines.append(json.dumps({"id": f"m{i}", "content": [{"text": texts[i]}]}))
            expect.by_index[i] = (GOOD, texts[i])
    (root / "docs.jsonl").write_bytes(_encode_lines(lines))

    # the folder: non-UTF-8 names are good records (escaped), special entries and unlistable paths bad
    folder = root / "folder"
    folder.mkdir()
    for k in range(int(rng.integers(1, 5))):
        name = f"t{k}.txt" if rng.random() < 0.6 else os.fsdecode(b"n\xff%d.txt" % k)
        (folder / name).write_text(texts[20 + k])
        expect.by_id[_printable(name)] = (GOOD, texts[20 + k])
    extras = rng.permutation(4)[: int(rng.integers(0, 4))]
    for e in extras:
        if e == 0:
            os.mkfifo(folder / "pipe.txt")
            expect.by_id["pipe.txt"] = (BAD, None)
        elif e == 1:
            (folder / "zero.txt").symlink_to("/dev/zero")
            expect.by_id["zero.txt"] = (BAD, None)
        elif e == 2:
            (folder / "gone.txt").symlink_to(folder / "nowhere")
            expect.by_id["gone.txt"] = (BAD, None)
        else:
            unlisted = _deep_folder(folder / "deep")
            expect.by_id[unlisted] = (BAD, None)

    # the tar shard: samples after a bad one are still read
    members, seen = [], set()
    for k in range(int(rng.integers(2, 7))):
        key = f"s{k}" if rng.random() < 0.7 else os.fsdecode(b"s\xfe%d" % k)
        r = rng.random()
        shown = _printable(key)
        if r < 0.55:
            members.append((f"{key}.txt", texts[30 + k].encode()))
            expect.by_id[shown] = (GOOD, texts[30 + k])
        elif r < 0.65:
            members += [(f"{key}.txt", b"one"), (f"{key}.TXT", b"two")]
            expect.by_id[shown] = (BAD, None)
        elif r < 0.75:
            members.append((f"{key}.txt", ("symlink" if rng.random() < 0.5 else "hardlink", "/etc/passwd")))
            expect.by_id[shown] = (BAD, None)
        elif r < 0.85:
            members.append((f"{key}.txt", ("sparse", 8 << 30)))
            expect.by_id[shown] = (BAD, None)
        else:
            members += [(f"{key}.txt", b"text"), (f"{key}.json", ("[" * DEEP).encode())]
            expect.by_id[shown] = (BAD, None)
        seen.add(shown)
    (root / "shard.tar").write_bytes(_tar_bytes(members))

    inputs = [root / "docs.jsonl", folder, root / "shard.tar"]
    calls = Calls()
    summary = calls("tokenize", tokenize, _cfg(inputs, root / "out", tok), tok=tok)
    if failed(summary):
        return calls.result()
    lost, problems = check_run(tok, root / "out", expect)
    shutil.copytree(root / "out", root / "clean")
    problems += resume_matches(tok, inputs, root / "out", root / "clean", rng)
    if problems:
        calls.crash = "; ".join(problems[:3])
    return calls.result(lost)


def _encode_lines(lines: list[str]) -> bytes:
    """Manifest lines as bytes: a line holding U+00FF..U+00FE stands for raw invalid UTF-8."""
    out = []
    for x in lines:
        out.append(x.encode("latin-1") if "\xff\xfe" in x else x.encode("utf-8"))
    return b"".join(x + b"\n" for x in out)


def _printable(name: str) -> str:
    from unitok.pipeline.shards import printable

    return printable(name)


def _deep_folder(top: Path) -> str:
    """Folders nested past PATH_MAX with a text file at the bottom; the record id of the first
    folder that cannot be listed."""
    here = top
    os.makedirs(top, exist_ok=True)
    fd = os.open(top, os.O_RDONLY)
    try:
        depth = 0
        for depth in range(24):        # 24 * 201 bytes: past PATH_MAX below any tmp folder
            os.mkdir("d" * 200, dir_fd=fd)
            nxt = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        with open(os.open("x.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("too deep to read")
    finally:
        os.close(fd)
    # the first folder whose path is too long to list: where os.walk fails
    parts = []
    path = str(here)
    while len(path) + 201 < 4096:
        path += "/" + "d" * 200
        parts.append("d" * 200)
    return "/".join(["deep", *parts, "d" * 200])


# =================================================================================================
# tar shards: damaged and truncated
# =================================================================================================

def tar_shards_case(ctx: Context, rng, index: int):
    """A tar shard of good and bad samples, then cut at a random place (often a block boundary, where
    tarfile sees a clean end): the samples before the cut are kept, the cut is listed, none lost."""
    from unitok.pipeline import tokenize

    tok = _suite(ctx)
    root = ctx.fresh()
    texts = _texts(rng, 12)
    members, keys = [], []
    for k in range(int(rng.integers(2, 9))):
        key = f"k{k:02d}"
        bad = rng.random() < 0.25
        members.append((f"{key}.txt", texts[k].encode()))
        if bad:
            members.append((f"{key}.Txt", b"twin"))
        elif rng.random() < 0.3:
            members.append((f"{key}.png", ctx.seeds["img.png"]))
        keys.append((key, bad))
    raw = _tar_bytes(members)
    offsets, end = {}, 0     # where each sample's last member ends; where the end-of-archive marker starts
    for name, content in members:
        size = len(content) if isinstance(content, bytes) else 0
        end += 512 + -(-size // 512) * 512
        offsets[name.split(".")[0]] = end
    op = int(rng.integers(0, 4))
    if op == 0:
        cut = len(raw)                                       # intact
    elif op == 1:
        cut = int(rng.integers(0, end // 512 + 1)) * 512     # at a header's boundary
    else:
        cut = int(rng.integers(1, end + 1024))               # anywhere (the marker included)
    (root / "s.tar").write_bytes(raw[:cut])
    (root / "after.txt").write_text("the next input")
    calls = Calls()
    out = root / "out"
    summary = calls("tokenize", tokenize, _cfg([root / "s.tar", root / "after.txt"], out, tok), tok=tok)
    if failed(summary):
        return calls.result()
    from unitok.data import TokenDataset

    ds = TokenDataset(out)
    stored = {ds[j]["id"] for j in range(len(ds))}
    listed = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    names = {e["id"] for e in listed}
    problems, lost = [], 0
    truncated = cut < end + 512
    for key, bad in keys:
        whole = offsets[key] <= cut
        if key in stored and (bad or not whole):
            problems.append(f"sample {key} stored, but it is {'bad' if bad else 'cut'}")
        if not bad and whole and offsets[key] + 512 <= cut and key not in stored:
            # complete and followed by another header: it must be there (the last one may wait for the marker)
            if not any("s.tar" in e["id"] for e in listed):
                lost += 1
                problems.append(f"complete sample {key} neither stored nor the truncation listed")
        if bad and whole and key not in names and not any(f"sample {key} may be" in e["reason"] for e in listed):
            lost += 1
            problems.append(f"bad sample {key} not listed")
    if truncated and cut and not any(e["id"].endswith("s.tar") for e in listed):
        lost += 1
        problems.append(f"a shard cut at byte {cut} of {len(raw)} is not listed as truncated")
    if "after.txt" not in stored:
        lost += 1
        problems.append("the input after the tar was lost")
    if problems:
        calls.crash = "; ".join(problems[:3])
    return calls.result(lost)


# =================================================================================================
# special files and damaged JSON in every file a suite or dataset has
# =================================================================================================

SUITE_FILES = ("suite.json", "space.json", "text/config.json", "text/vocab.tiktoken", "image/config.json",
               "image/model.safetensors", "audio/config.json", "audio/model.safetensors")
DATASET_FILES = ("index.json", "run.json", "shard-00000.json", "shard-00000.docs.jsonl", "shard-00000.idx",
                 "shard-00000.bin", "shard-00000.groups.bin", "errors.jsonl")

JSON_DAMAGE = {
    "deep nesting": lambda old: b"[" * DEEP + b"]" * DEEP,
    "deep value": lambda old: b'{"a": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "huge integer": lambda old: b'{"version": ' + HUGE_INT.encode() + b"}",
    "invalid UTF-8": lambda old: old[:20] + b"\xff\xfe\xc0" + old[20:],
    "lone surrogate": lambda old: b'{"\\ud800": "\\udfff"}',
    "truncated": lambda old: old[: len(old) // 2],
    "empty": lambda old: b"",
    "NaN": lambda old: b'{"a": NaN, "b": Infinity}',
    "wrong type": lambda old: b'["a list", 1, null]',
    "nul bytes": lambda old: old.replace(b'"', b'"\0', 3),
}


def _dataset(ctx: Context) -> Path:
    """A small finished run with the toy suite (made once per worker)."""
    from unitok.pipeline import tokenize

    folder = ctx.work / "hostile-dataset"
    if not (folder / "out" / "index.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for i in range(7):
            (folder / f"d{i}.txt").write_text(f"document {i} " * (i + 1))
        tokenize(_cfg([folder / f"d{i}.txt" for i in range(7)], folder / "out", _suite(ctx)), tok=_suite(ctx))
    return folder


def _special(path: Path, rng) -> str:
    path.unlink(missing_ok=True)
    if rng.random() < 0.5:
        os.mkfifo(path)
        return "a FIFO"
    path.symlink_to("/dev/zero")
    return "a link to /dev/zero"


def _names_file(e, path: Path) -> bool:
    return path.name in str(e) or path.parent.name in str(e)


def special_files_case(ctx: Context, rng, index: int):
    """A FIFO or /dev/zero in place of a file of a suite, a dataset, a token file or a tokenize
    input: refused naming the file (never read: the watchdog counts a block as a hang)."""
    import unitok
    from unitok import TokenSequence
    from unitok.data import TokenDataset
    from unitok.pipeline import tokenize, verify

    root = ctx.fresh()
    calls = Calls()
    which = int(rng.integers(0, 4))
    if which == 0:
        folder = root / "suite"
        shutil.copytree(ctx.suite_dir("toy"), folder)
        target = folder / SUITE_FILES[int(rng.integers(len(SUITE_FILES)))]
        if not target.exists() and not target.parent.exists():
            target = folder / "suite.json"
        what = _special(target, rng)
        r = calls(f"load ({target.relative_to(folder)} is {what})", unitok.load, folder)
        if not failed(r):
            calls.crash = f"a suite whose {target.name} is {what} loaded"
        elif not _names_file(r, target):
            calls.crash = f"the error does not name {target.name}: {r}"
    elif which == 1:
        folder = root / "out"
        shutil.copytree(_dataset(ctx) / "out", folder)
        target = folder / DATASET_FILES[int(rng.integers(len(DATASET_FILES)))]
        what = _special(target, rng)

        def read_all():
            ds = TokenDataset(folder)
            return [ds[i]["ids"] for i in range(len(ds))]

        r = calls(f"TokenDataset ({target.name} is {what})", read_all)
        if target.name not in ("run.json", "errors.jsonl", "shard-00000.json") and not failed(r):   # not read
            calls.crash = f"a dataset whose {target.name} is {what} was read"
        calls(f"verify ({target.name} is {what})", verify, folder, ctx.suites["toy"], sample=2)
    elif which == 2:
        target = root / "t.tokens.json"
        what = _special(target, rng)
        r = calls(f"TokenSequence.load ({what})", TokenSequence.load, target)
        if not failed(r):
            calls.crash = f"a token file that is {what} loaded"
    else:
        tok = _suite(ctx)
        (root / "good.txt").write_text("a good document")
        kind = ["m.jsonl", "s.tar", "in/x.txt", "g/a.txt"][int(rng.integers(4))]
        target = root / kind
        target.parent.mkdir(exist_ok=True)
        target.touch()
        what = _special(target, rng)
        inputs = [root / "good.txt", root / "g" / "*.txt" if kind.startswith("g/") else
                  target.parent if kind.startswith("in/") else target]
        summary = calls(f"tokenize ({kind} is {what})", tokenize, _cfg(inputs, root / "out", tok), tok=tok)
        if not failed(summary):
            expect = Expect(by_index={0: (GOOD, "a good document"), 1: (BAD, None)})
            lost, problems = check_run(tok, root / "out", expect)
            if problems:
                calls.crash = "; ".join(problems)
            return calls.result(lost)
    return calls.result()


def damaged_json_case(ctx: Context, rng, index: int):
    """Pathological JSON (deep, huge integers, invalid UTF-8, lone surrogates, NaN, truncated...) in
    a suite's, a dataset's or a token file's JSON: a unitok error naming the file, or a success that
    passes the checks. A dataset with a damaged shard manifest resumes to the clean run."""
    import unitok
    from unitok import TokenSequence
    from unitok.data import TokenDataset
    from unitok.pipeline import tokenize, verify

    root = ctx.fresh()
    name, damage = list(JSON_DAMAGE.items())[int(rng.integers(len(JSON_DAMAGE)))]
    calls = Calls()
    which = int(rng.integers(0, 4))
    if which == 0:
        folder = root / "suite"
        shutil.copytree(ctx.suite_dir("toy"), folder)
        target = folder / ["suite.json", "space.json", "text/config.json", "image/config.json",
                           "audio/config.json"][int(rng.integers(5))]
        target.write_bytes(damage(target.read_bytes()))
        r = calls(f"load ({target.relative_to(folder)}: {name})", unitok.load, folder)
        if failed(r) and not _names_file(r, target):
            calls.crash = f"the error does not name {target.name}: {r}"
    elif which == 1:                                 # the safetensors header is JSON too
        folder = root / "image"
        shutil.copytree(ctx.suite_dir("toy") / "image", folder)
        weights = folder / "model.safetensors"
        raw = weights.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = damage(raw[8:8 + n])
        weights.write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + n:])
        from unitok.checkpoint import load_pretrained

        calls(f"load (safetensors header: {name})", load_pretrained, folder)
    elif which == 2:
        target = root / "t.tokens.json"
        seq = ctx.suites["toy"].encode("some text")
        seq.save(target)
        target.write_bytes(damage(target.read_bytes()))
        r = calls(f"TokenSequence.load ({name})", TokenSequence.load, target)
        if not failed(r):
            calls("decode", ctx.suites["toy"].decode, r, strict=False)
    else:
        src = _dataset(ctx)
        out = root / "out"
        shutil.copytree(src / "out", out)
        target = out / ["index.json", "shard-00000.json", "shard-00001.json", "shard-00000.docs.jsonl",
                        "run.json"][int(rng.integers(5))]
        target.write_bytes(damage(target.read_bytes()))

        def read_all():
            ds = TokenDataset(out)
            return [ds[i]["ids"] for i in range(len(ds))]

        calls(f"TokenDataset ({target.name}: {name})", read_all)
        calls(f"verify ({target.name}: {name})", verify, out, ctx.suites["toy"], sample=2)
        if target.name.startswith("shard-") and target.suffix == ".json":
            # --resume over a damaged shard manifest redoes that shard
            (out / "index.json").unlink()
            inputs = [src / f"d{i}.txt" for i in range(7)]
            tok = _suite(ctx)
            r = calls("resume", tokenize, dataclasses.replace(_cfg(inputs, out, tok), resume=True), tok=tok)
            if not failed(r):
                diff = same_files(out, src / "out")
                if diff:
                    calls.crash = f"resume over a damaged {target.name} ({name}): {diff[:3]}"
    return calls.result()


# =================================================================================================
# containment and unclean failures
# =================================================================================================

OUTSIDE = ("../elsewhere.tiktoken", "../../elsewhere.tiktoken", "/etc/passwd", "sub/../../elsewhere.tiktoken",
           "link.tiktoken")


def containment_case(ctx: Context, rng, index: int):
    """A suite's vocab_file or id_map_file, or a dataset's shard names, reaching outside the folder:
    refused as outside; never read."""
    import unitok
    from unitok.data import TokenDataset

    root = ctx.fresh()
    calls = Calls()
    name = OUTSIDE[int(rng.integers(len(OUTSIDE)))]
    if rng.random() < 0.6:
        folder = root / "suite"
        shutil.copytree(ctx.suite_dir("toy"), folder)
        shutil.copy(folder / "text" / "vocab.tiktoken", root / "elsewhere.tiktoken")
        if name == "link.tiktoken":
            (folder / "text" / name).symlink_to(root / "elsewhere.tiktoken")
        cfg_path = folder / "text" / "config.json"
        cfg = json.loads(cfg_path.read_text())
        key = "vocab_file" if rng.random() < 0.7 else "id_map_file"
        cfg[key] = name
        cfg_path.write_text(json.dumps(cfg))
        r = calls(f"load ({key} {name})", unitok.load, folder)
        if not failed(r) or "outside" not in str(r):
            calls.crash = f"{key} {name!r} was not refused as outside the folder: {r!r}"[:300]
    else:
        out = root / "out"
        shutil.copytree(_dataset(ctx) / "out", out)
        other = root / "other"
        shutil.copytree(out, other)
        index_path = out / "index.json"
        data = json.loads(index_path.read_text())
        shard = {"../../elsewhere.tiktoken": "../other/shard-00000", "../elsewhere.tiktoken": "../other/shard-00000",
                 "/etc/passwd": str(other / "shard-00000"), "sub/../../elsewhere.tiktoken": "sub/../../x",
                 "link.tiktoken": "shard-00009"}[name]
        if name == "link.tiktoken":
            for p in other.glob("shard-00000.*"):
                (out / p.name.replace("00000", "00009")).symlink_to(p)
        data["shards"][0] = shard
        index_path.write_text(json.dumps(data))
        r = calls(f"TokenDataset (shard {shard})", TokenDataset, out)
        if not failed(r) and name != "link.tiktoken":
            calls.crash = f"a dataset naming the shard {shard!r} was opened"
    return calls.result()


def unclean_failures_case(ctx: Context, rng, index: int):
    """``unitok tokenize`` and ``unitok encode`` hit by a full disk at a random write, an output
    path blocked by a file, or a racing run holding the lock: a one-line error and exit status 1,
    no temporary file and no index claiming a complete run; once the cause is gone, a resume (or a
    new encode) gives exactly what a clean run gives."""
    from unitok import cli, files

    tok_dir = ctx.suite_dir("toy")
    root = ctx.fresh()
    data = root / "in"
    data.mkdir()
    for i in range(int(rng.integers(3, 10))):
        (data / f"d{i}.txt").write_text(f"document {i} " * (i + 2))
    encode = rng.random() < 0.3
    base = ["encode", str(data), "--suite", str(tok_dir)] if encode else \
        ["tokenize", str(data), "--suite", str(tok_dir), "--workers", "0", "--shard-size", "2", "--no-progress",
         "--plugin", "unitok.testing"]
    calls = Calls()
    if encode:
        import unitok.testing  # noqa: F401 - the toy suite's types

    def run(out: Path, *extra) -> tuple[int, str]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main([*base, "-o", str(out), *extra])
        return code, err.getvalue()

    code, _ = run(root / "clean")
    if code != 0:
        calls.crash = f"the clean run failed ({code})"
        return calls.result()
    out = root / "out"
    cause = int(rng.integers(0, 3))
    real = files.write_atomic
    fired = [cause != 0 and not (cause == 2 and encode)]    # encode takes no lock
    undo = lambda: None  # noqa: E731
    if cause == 0:
        fail_at, count = int(rng.integers(1, 8)), [0]

        def full(path, blob, **kw):
            count[0] += 1
            if count[0] >= fail_at:
                fired[0] = True
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real(path, blob, **kw)

        files.write_atomic = cli.write_atomic = full
        what = f"a full disk from write {fail_at}"

        def undo():
            files.write_atomic = cli.write_atomic = real
    elif cause == 1:
        first = sorted(p.relative_to(root / "clean") for p in (root / "clean").rglob("*") if p.is_file()
                       and (encode or p.name.endswith(".bin")))[0]
        blocked = out / first
        blocked.mkdir(parents=True)
        (blocked / "x").write_text("a folder where a file must go")
        what = f"a folder in place of {first}"
        undo = lambda: shutil.rmtree(blocked)  # noqa: E731
    else:
        out.mkdir()
        held = open(out / ".lock", "a+")
        fcntl.flock(held, fcntl.LOCK_EX)
        what = "another run holding the lock"

        def undo():
            held.close()
            (out / ".lock").unlink(missing_ok=True)
    try:
        code, err = run(out)
    finally:
        undo()
    lines = [x for x in err.splitlines() if x.strip()]
    problems = []
    if "Traceback" in err:
        problems.append(f"{what}: a traceback")
    if fired[0] and code != 1:
        problems.append(f"{what}: exit status {code}")
    if any(not x.startswith(("error: ", "encoded ", "tokenized ")) for x in lines):
        problems.append(f"{what}: output other than one-line errors: {lines[:3]}")
    if out.exists():
        partial = [p.name for p in out.rglob(".*.partial")]
        if partial:
            problems.append(f"{what}: temporary files left: {partial}")
        if not encode and fired[0] and (out / "index.json").exists():
            problems.append(f"{what}: index.json written by a failed run")
    code, err = run(out, *([] if encode else ["--resume"]))
    if code != 0:
        problems.append(f"{what}: the run after the cause was gone failed: {err.strip()[:200]}")
    elif encode:
        a = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
        b = sorted(p.relative_to(root / "clean") for p in (root / "clean").rglob("*") if p.is_file())
        if a != b or any((out / p).read_bytes() != (root / "clean" / p).read_bytes() for p in a):
            problems.append(f"{what}: encode again differs from a clean encode")
    else:
        problems += [f"{what}: resume: {d}" for d in same_files(out, root / "clean")]
    if problems:
        calls.crash = "; ".join(problems[:3])
    else:
        calls.errors += 1
    return calls.result()

