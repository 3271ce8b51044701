"""Fuzz cases of what unitok stores (``robustness.py``): damaged, tampered, foreign and pickled
checkpoints; damaged token-space manifests, suite configs and token files; damaged tokenized
datasets (``TokenDataset``, ``unitok verify``); and ``unitok tokenize`` over manifests of broken files."""

from __future__ import annotations

import copy
import json
import os
import pickle
import shutil
from pathlib import Path

from fuzz_common import ALL_EXTENSIONS, Calls, Context, failed, fuzz_limits, mutate, round_trip
from fuzz_tokens import check_lenient, check_strict


# =================================================================================================
# checkpoints and manifests
# =================================================================================================

WEIRD = (None, True, False, 0, -1, 1, 2, 3, 10**9, 2**63, 10**30, 1.5, float("nan"), float("inf"), "", "x",
         "image.vqgan", "os.system", "../../etc", [], [1], [1.5], {}, {"a": 1})


def mutate_json(obj, rng, depth: int = 0):
    """One random edit somewhere in a JSON value: a weird value, a deleted or an added key."""
    if isinstance(obj, dict) and obj and depth < 6:
        key = sorted(obj)[int(rng.integers(len(obj)))]
        op = int(rng.integers(0, 4))
        if op == 0:
            obj[key] = copy.deepcopy(WEIRD[int(rng.integers(len(WEIRD)))])
        elif op == 1:
            del obj[key]
        elif op == 2:
            obj[f"unknown_{int(rng.integers(9))}"] = 1
        else:
            obj[key] = mutate_json(obj[key], rng, depth + 1)
        return obj
    if isinstance(obj, list) and obj and depth < 6:
        i = int(rng.integers(len(obj)))
        op = int(rng.integers(0, 3))
        if op == 0:
            obj[i] = copy.deepcopy(WEIRD[int(rng.integers(len(WEIRD)))])
        elif op == 1:
            del obj[i]
        else:
            obj[i] = mutate_json(obj[i], rng, depth + 1)
        return obj
    return copy.deepcopy(WEIRD[int(rng.integers(len(WEIRD)))])


class _Marker:
    """Unpickling this creates a file: its existence afterwards would prove code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _damage_file(path: Path, rng) -> str:
    data = path.read_bytes()
    op = int(rng.integers(0, 4))
    if op == 0 and path.suffix == ".json":
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        path.write_text(json.dumps(mutate_json(obj, rng)))
        return f"edited {path.name}"
    if op <= 1:
        path.write_bytes(data[:int(rng.integers(0, len(data) + 1))])
        return f"truncated {path.name}"
    if op == 2:
        b = bytearray(data)
        head = rng.random() < 0.6   # the safetensors header and JSON text are where damage bites
        for _ in range(int(rng.integers(1, 9))):
            if b:
                i = int(rng.integers(0, min(len(b), 4096) if head else len(b)))
                b[i] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(b))
        return f"bits flipped in {path.name}"
    path.unlink()
    return f"deleted {path.name}"


def checkpoint_case(ctx: Context, rng, index: int):
    import unitok

    suite = "bundled" if rng.random() < 0.4 else "toy"
    folder = ctx.fresh() / "suite"
    shutil.copytree(ctx.suite_dir(suite), folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    op = int(rng.integers(0, 8))
    marker = ctx.tmp / "code-ran"
    if op <= 3:
        what = _damage_file(files[int(rng.integers(len(files)))], rng)
    elif op == 4:   # weights as a pickle that would run code
        part = folder / ("image" if rng.random() < 0.5 else "audio")
        (part / "model.safetensors").unlink()
        name = ["model.pt", "pytorch_model.bin", "model.ckpt", "weights.pkl"][int(rng.integers(4))]
        (part / name).write_bytes(pickle.dumps({"state": _Marker(str(marker))}))
        what = f"weights replaced by {name}, a pickle that runs code"
    elif op == 5:   # the type names something outside the registry
        part = folder / ["image", "audio", "text"][int(rng.integers(3))]
        cfg = json.loads((part / "config.json").read_text())
        cfg["type"] = ["os.system", "builtins.eval", "cli.main", "subprocess.run", "unitok..x", "Image.Vqgan",
                       "torch.load"][int(rng.integers(7))]
        (part / "config.json").write_text(json.dumps(cfg))
        what = f"type set to {cfg['type']}"
    elif op == 6:   # another version of the format or of the manifest
        target = [folder / "image" / "config.json", folder / "space.json", folder / "text" / "config.json"][
            int(rng.integers(3))]
        cfg = json.loads(target.read_text())
        key = "version" if target.name == "space.json" else "format_version"
        cfg[key] = int(rng.choice([0, 2, 99]))
        target.write_text(json.dumps(cfg))
        what = f"{target.relative_to(folder)} says {key} {cfg[key]}"
    else:            # a component from another suite: the fingerprint no longer matches
        other = "toy-raster" if suite == "toy" else "toy"
        part = ["image", "audio"][int(rng.integers(2))]
        shutil.rmtree(folder / part)
        shutil.copytree(ctx.suite_dir(other) / part, folder / part)
        what = f"{part} swapped for another suite's"
    calls = Calls()
    tok = calls(f"load ({what})", unitok.load, folder)
    if not failed(tok):
        calls("round trip", round_trip, tok, ["text", _small_image(rng)])
    if op == 4 and (marker.exists() or not failed(tok) or "pickle" not in str(tok)):
        calls.crash = f"a pickle checkpoint was not refused as one ({tok!r}; code ran: {marker.exists()})"
    return calls.result()


def _small_image(rng):
    import torch

    from unitok import Image

    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    return Image(torch.randint(0, 256, (3, 16, 24), dtype=torch.uint8, generator=g))


def manifest_case(ctx: Context, rng, index: int):
    import unitok
    from unitok import TokenSequence, TokenSpace

    suite = "bundled" if rng.random() < 0.5 else "toy"
    folder = ctx.fresh()
    calls = Calls()
    which = int(rng.integers(0, 3))
    if which == 0:
        path = folder / "space.json"
        shutil.copy(ctx.suite_dir(suite) / "space.json", path)
        what = _damage_file(path, rng)
        if rng.random() < 0.5 and path.exists():   # without a fingerprint the content itself is checked
            try:
                obj = json.loads(path.read_text())
                if isinstance(obj, dict):
                    obj.pop("fingerprint", None)
                    path.write_text(json.dumps(obj))
            except ValueError:
                pass
        space = calls(f"TokenSpace.load ({what})", TokenSpace.load, path)
        if not failed(space):
            calls.check("the space", lambda s: (len(s), s.table(), s.describe(0), s.fingerprint), space)
            calls("check_fingerprint", space.check_fingerprint, ctx.suites[suite].space.fingerprint)
    elif which == 1:
        shutil.copytree(ctx.suite_dir(suite), folder / "suite")
        what = _damage_file(folder / "suite" / "suite.json", rng)
        tok = calls(f"load ({what})", unitok.load, folder / "suite")
        if not failed(tok):
            calls("round trip", round_trip, tok, ["text", _small_image(rng)])
    else:
        tok = ctx.suites[suite]
        seq = tok.encode(["a caption", _small_image(rng)])
        path = folder / "doc.tokens.json"
        form = int(rng.integers(0, 3))
        if form == 0:
            seq.save(path)
        elif form == 1:
            path.write_text(json.dumps(seq.ids.tolist()))
        else:
            path.write_text(" ".join(map(str, seq.ids.tolist())))
        what = _damage_file(path, rng) if rng.random() < 0.9 else "intact"
        loaded = calls(f"TokenSequence.load ({what})", TokenSequence.load, path) if path.exists() else None
        if loaded is not None and not failed(loaded):
            out = calls("decode strict", tok.decode, loaded)
            calls.check("strict result", check_strict, loaded.ids, out)
            if loaded.fingerprint in (None, tok.space.fingerprint):
                out = calls("decode lenient", tok.decode, loaded, strict=False)
                if not failed(out):
                    calls.check("lenient result", check_lenient, tok, loaded.ids, out)
    return calls.result()


# =================================================================================================
# tokenized datasets and unitok tokenize
# =================================================================================================

def _dataset(ctx: Context) -> Path:
    """A small finished tokenize run (made once per worker)."""
    if ctx._dataset is None:
        from unitok.pipeline import TokenizeConfig, tokenize

        src = ctx.work / "dataset-src"
        out = ctx.work / "dataset"
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        src.mkdir(parents=True)
        (src / "img.png").write_bytes(ctx.seeds["img.png"])
        (src / "snd.wav").write_bytes(ctx.seeds["snd.wav"])
        lines = [{"content": [{"text": f"document {i} " * (i + 1)}] + ([{"image": "img.png"}] if i % 3 == 0 else [])
                  + ([{"audio": "snd.wav"}] if i % 4 == 1 else [])} for i in range(7)]
        lines[5] = {"content": [{"image": "missing.png"}]}
        (src / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        tokenize(TokenizeConfig([str(src / "m.jsonl")], out, shard_size=3, workers=0, progress=False),
                 tok=ctx.suites["bundled"])
        ctx._dataset = out
    return ctx._dataset


def dataset_case(ctx: Context, rng, index: int):
    from unitok.data import TokenDataset
    from unitok.pipeline import verify

    src = _dataset(ctx)
    folder = ctx.fresh() / "out"
    shutil.copytree(src, folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    what = _damage_file(files[int(rng.integers(len(files)))], rng)
    calls = Calls()

    def read_all(path):
        ds = TokenDataset(path)
        for i in range(len(ds)):
            ds[i], ds.sequence(i), ds.source(i)
        return ds.sizes

    calls(f"TokenDataset ({what})", read_all, folder)
    # verify reports damage as problems (a success here); only an exception would be a crash
    calls(f"verify ({what})", verify, folder, ctx.suites["bundled"], sample=2)
    return calls.result()


def tokenize_case(ctx: Context, rng, index: int):
    """A manifest mixing good files, mutated files, a FIFO and bad lines; afterwards every record
    must be in the dataset with exactly the ids ``tok.encode`` gives it, or in errors.jsonl. Even
    cases tokenize in the worker's own process, odd ones in a process pool of one."""
    import numpy as np

    from unitok import UnitokError
    from unitok.data import TokenDataset
    from unitok.media import check_document_bytes, open_media
    from unitok.pipeline import Options, TokenizeConfig, tokenize

    tok = ctx.suites["bundled"]
    root = ctx.fresh()
    media = []
    for k in range(24):
        name = list(ctx.seeds)[int(rng.integers(len(ctx.seeds)))]
        data = ctx.seeds[name]
        if rng.random() < 0.6:
            data, _ = mutate(data, rng, list(ctx.seeds.values()))
        ext = Path(name).suffix if rng.random() < 0.8 else ALL_EXTENSIONS[int(rng.integers(len(ALL_EXTENSIONS)))]
        path = root / f"f{k}{ext}"
        path.write_bytes(data)
        media.append(path.name)
    os.mkfifo(root / "fifo.wav")
    media.append("fifo.wav")
    lines: list = []
    for i in range(40):
        r = rng.random()
        if r < 0.08:
            lines.append('{"content": [{"text": "unterminated')
            continue
        if r < 0.12:
            lines.append({"content": [{"image": "nul\u0000.png"}]})
            continue
        if r < 0.15:
            lines.append({"content": [{"audio": 5}]})
            continue
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.3:
                parts.append({"text": "some text \u00e9\U0001F600 " * int(rng.integers(0, 3))})
            else:
                name = media[int(rng.integers(len(media)))]
                kind = {"image": "image", "video": "video", "audio": "audio"}.get(
                    _kind_of_name(name), ["image", "audio", "video"][int(rng.integers(3))])
                parts.append({kind: name})
        lines.append({"id": f"doc-{i}", "content": parts})
    manifest = root / "docs.jsonl"
    manifest.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    out = root / "out"
    limits = fuzz_limits()
    options = Options(max_tokens=tok.max_tokens,
                      limits={k: getattr(limits, k) for k in ("max_pixels", "max_side", "max_seconds")})
    summary = tokenize(TokenizeConfig([str(manifest)], out, shard_size=7, workers=index % 2, options=options,
                                      progress=False), tok=tok)

    # what each record should have become, from tok.encode directly
    expected: dict[int, np.ndarray | None] = {}
    for i, line in enumerate(lines):
        if isinstance(line, str):
            expected[i] = None
            continue
        parts = line["content"]
        try:
            items, total = [], 0
            for p in parts:
                (kind, value), = p.items()
                if kind == "text":
                    items.append(value)
                    continue
                if not isinstance(value, str):
                    raise UnitokError("bad part")
                item = open_media(root / value)
                if type(item).__name__.lower() != kind:
                    raise UnitokError("wrong kind")
                total = check_document_bytes(total, item, tok.limits, value)
                items.append(item)
            seq = tok.encode(items)
            expected[i] = seq.ids if seq.spans else None
        except UnitokError:
            expected[i] = None
    ds = TokenDataset(out)
    stored = {ds.source(j)[0]: ds[j]["ids"] for j in range(len(ds))}
    errors = {json.loads(x)["index"] for x in (out / "errors.jsonl").read_text().splitlines()}
    lost = 0
    problems = []
    for i, ids in expected.items():
        if i in stored and i in errors:
            problems.append(f"record {i} is both stored and listed as an error")
        elif i not in stored and i not in errors:
            lost += 1
        elif ids is None and i in stored:
            problems.append(f"record {i} was stored, but tok.encode refuses it")
        elif ids is not None and i in errors:
            lost += 1
            problems.append(f"good record {i} was skipped")
        elif ids is not None and not np.array_equal(stored[i], ids):
            problems.append(f"record {i} was stored with other ids than tok.encode gives")
    if summary.records != len(lines) or summary.documents + summary.skipped != summary.records:
        problems.append(f"summary counts {summary.records} records, {summary.documents} documents, "
                        f"{summary.skipped} skipped, for {len(lines)} lines")
    if problems:
        return "crash", "; ".join(problems[:3]), lost
    return ("ok" if stored else "error"), f"{len(stored)} stored, {len(errors)} skipped", lost


def _kind_of_name(name: str) -> str | None:
    from unitok.media import kind_of

    return kind_of(name)
