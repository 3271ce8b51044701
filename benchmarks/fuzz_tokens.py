"""Fuzz cases of token streams (``robustness.py``): random and adversarial id sequences through
``decode`` in strict and lenient mode, and every truncation of valid sequences."""

from __future__ import annotations

from fuzz_common import Bad, Calls, Context, case_rng, part_kind


# =================================================================================================
# token streams
# =================================================================================================

def _doc(ctx: Context, suite: str, rng, small: bool = False):
    """A small random document for ``suite``."""
    import torch

    from unitok import Audio, Image, Video

    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    tok = ctx.suites[suite]
    side = (lambda: int(rng.integers(1, 12))) if small else (lambda: int(rng.integers(1, 40)))
    parts: list = ["a caption"] if rng.random() < 0.7 else []
    for _ in range(int(rng.integers(1, 3))):
        choice = rng.choice(list(tok.media))
        if choice == "image":
            parts.append(Image(torch.randint(0, 256, (3, side(), side()), dtype=torch.uint8, generator=g)))
        elif choice == "audio":
            n = int(rng.integers(1, 200 if small else 3000))
            parts.append(Audio(torch.rand(1, n, generator=g) * 2 - 1, int(rng.choice([8000, 24000]))))
        else:
            parts.append(Video(torch.randint(0, 256, (int(rng.integers(1, 6)), 3, 8, 8), dtype=torch.uint8,
                                             generator=g), 8))
        if rng.random() < 0.5:
            parts.append("more text" if not small else "x")
    return tok.encode(parts, bos=bool(rng.integers(2)), eos=bool(rng.integers(2))).ids


def _adversarial_ids(ctx: Context, rng):
    """(suite, ids, what was done) for one token-stream case."""
    import numpy as np

    suite = list(ctx.suites)[int(rng.integers(len(ctx.suites)))]
    tok = ctx.suites[suite]
    sp = tok.space
    ids = _doc(ctx, suite, rng)
    specials = np.array(list(sp.special_tokens.values()))
    begins = np.array([sp.special(f"<|{m}|>") for m in tok.media])
    op = int(rng.integers(0, 14))
    n = len(ids)
    if op == 0:
        ids = rng.integers(-3, len(sp) + 3, int(rng.integers(0, 300)))
        what = "random ids"
    elif op == 1:
        ids = ids[:int(rng.integers(0, n + 1))]
        what = "truncated"
    elif op == 2:
        k = int(rng.integers(1, 8))
        ids[rng.integers(0, n, k)] = rng.integers(0, len(sp), k)
        what = f"{k} ids replaced by random ids"
    elif op == 3:   # codes of another modality (or text) inside a segment
        k = int(rng.integers(1, 6))
        foreign = rng.integers(sp.text_vocab_size + 2048, len(sp), k) if rng.random() < 0.7 else rng.integers(
            0, sp.text_vocab_size, k)
        ids[rng.integers(0, n, k)] = foreign
        what = f"{k} foreign codes"
    elif op == 4:   # begin/end/structural tokens anywhere: nested, unmatched, doubled
        for _ in range(int(rng.integers(1, 4))):
            ids = np.insert(ids, int(rng.integers(0, len(ids) + 1)), rng.choice(specials))
        what = "structural tokens inserted"
    elif op == 5:
        marks = np.flatnonzero(np.isin(ids, specials))
        if len(marks):
            ids = np.delete(ids, rng.choice(marks, int(rng.integers(1, min(3, len(marks)) + 1)), replace=False))
        what = "structural tokens deleted"
    elif op == 6:   # extreme header values
        starts = np.flatnonzero(np.isin(ids, begins))
        if len(starts):
            p = int(rng.choice(starts))
            m = next(m for m in tok.media if sp.special(f"<|{m}|>") == ids[p])
            widths = tok.media[m].header_widths()      # shape tokens per field (a wide field takes more)
            f = int(rng.integers(0, len(widths)))
            v = int(rng.choice([0, 1, 2, 3, 7, 999, 1000, 1023, 1024, 4096, 16385, 65535, 2**20 - 1]))
            at = p + 1 + sum(widths[:f])
            ids[at:at + widths[f]] = sp.dim_ids([v], widths[f])[:len(ids[at:at + widths[f]])]
        what = "a header field set to an extreme value"
    elif op == 7:
        k = int(rng.integers(1, 5))
        ids[rng.integers(0, n, k)] = [sp.dim_ids([int(rng.integers(0, 2**20))])[0] for _ in range(k)]
        what = "shape tokens anywhere"
    elif op == 8:
        i = int(rng.integers(0, n))
        ids = np.concatenate([ids[:i], ids[int(rng.integers(i, n + 1)):]])
        what = "a run deleted"
    elif op == 9:
        ids = np.concatenate([ids, _doc(ctx, suite, rng)[:int(rng.integers(1, 200))]])
        what = "a second document appended, cut short"
    elif op == 10:
        ids = ids[::-1].copy()
        what = "reversed"
    elif op == 11:
        ids = np.concatenate([ids, np.full(int(rng.integers(1, 3000)), rng.choice(specials))])
        what = "a long run of one structural token"
    elif op == 12:   # a header that asks for a lot, with almost no body
        m = list(tok.media)[int(rng.integers(len(tok.media)))]
        widths = tok.media[m].header_widths()
        dims = [int(rng.choice([1, 2, 8, 1000, 4096, 2**20 - 1])) for _ in range(len(widths))]
        ids = np.array([sp.special(f"<|{m}|>"), *sp.dim_ids(dims, widths)] + list(ids[:int(rng.integers(0, 20))]))
        what = f"a {m} header asking for {dims}"
    else:
        ids = ids.copy()
        ids[rng.integers(0, n, int(rng.integers(1, 4)))] = rng.choice([-1, -2**40, len(sp), 2**40, 2**62])
        what = "ids far outside the space"
    return suite, np.asarray(ids, dtype=np.int64), what


def _declared(tok, ids):
    """(kind, shape) of every segment header in ``ids``, in order: what lenient decoding may give."""
    sp = tok.space
    out = []
    for m, codec in tok.media.items():
        begin = sp.special(f"<|{m}|>")
        widths = codec.header_widths()
        for p in (i for i, t in enumerate(ids) if t == begin):
            try:
                values = sp.dims_from_ids(ids[p + 1:p + 1 + sum(widths)], len(widths), widths)
            except Exception:   # noqa: BLE001 - a damaged header: the decoder drops that segment
                continue
            out.append((p, m, dict(zip(codec.header_fields, values))))
    return [(m, h) for _, m, h in sorted(out, key=lambda x: x[0])]


def _shape_matches(tok, item, modality: str, header: dict) -> bool:
    codec = tok.media[modality]
    if modality == "image":
        return (item.height, item.width) == (header["height"], header["width"])
    if modality == "video":
        return (item.num_frames, item.height, item.width) == (header["frames"], header["height"], header["width"])
    if hasattr(codec, "model_length"):          # the bundled audio codec, at its own rate
        return item.num_samples == getattr(codec, "output_length", codec.model_length)(header)
    if "frames" in header:                       # the toy audio codec
        return item.num_samples == min(header["frames"] * codec.cfg.hop,
                                       (header["frames"] - 1) * codec.cfg.hop + header["samples_in_last_frame"])
    return True


def check_lenient(tok, ids, out) -> None:
    """Lenient decoding gave parts, and every media part has the shape a header in ``ids`` declares
    (headers in order: a dropped segment may be skipped)."""
    from unitok import Decoded

    if not isinstance(out, Decoded):
        raise Bad(f"lenient decode returned a {type(out).__name__}")
    declared = _declared(tok, list(ids))
    j = 0
    for item in out:
        kind = part_kind(item)
        if kind == "text":
            continue
        while j < len(declared) and not (declared[j][0] == kind and _shape_matches(tok, item, kind, declared[j][1])):
            j += 1
        if j == len(declared):
            raise Bad(f"lenient decode gave {item!r}, which no header in the sequence declares")
        j += 1
    for r in out.repairs:
        if not 0 <= r.position <= len(ids):
            raise Bad(f"repair at position {r.position}, outside the {len(ids)} ids")


def check_strict(ids, result) -> None:
    from unitok import Decoded, TokenSequenceError

    if isinstance(result, TokenSequenceError):
        if not 0 <= result.position <= len(ids):
            raise Bad(f"TokenSequenceError at position {result.position}, outside the {len(ids)} ids")
    elif not isinstance(result, Decoded) or result.repairs:
        raise Bad("strict decode returned repairs")


def strict_case(ctx: Context, rng, index: int):
    suite, ids, what = _adversarial_ids(ctx, rng)
    calls = Calls()
    result = calls(f"decode strict ({what})", ctx.suites[suite].decode, ids)
    calls.check("strict result", check_strict, ids, result)
    return calls.result()


def lenient_case(ctx: Context, rng, index: int):
    suite, ids, what = _adversarial_ids(ctx, rng)
    tok = ctx.suites[suite]
    calls = Calls()
    out = calls(f"decode lenient ({what})", tok.decode, ids, strict=False)
    if isinstance(out, Exception):    # lenient decoding of an int sequence never refuses
        calls.crash = calls.crash or f"decode lenient ({what}) raised {type(out).__name__}: {out}"
    else:
        calls.check("lenient result", check_lenient, tok, ids, out)
    return calls.result()


SWEEP = 64   # truncation positions per document (documents are built with fewer tokens)


def truncation_case(ctx: Context, rng, index: int):
    """Document ``index // SWEEP`` cut at position ``index % SWEEP``: every position of each."""
    doc_rng = case_rng(ctx.seed, "truncation", 10**9 + index // SWEEP)   # the same document for its SWEEP cases
    suite = list(ctx.suites)[(index // SWEEP) % len(ctx.suites)]
    tok = ctx.suites[suite]
    for _ in range(50):
        ids = _doc(ctx, suite, doc_rng, small=True)
        if len(ids) < SWEEP:
            break
    cut = ids[:min(index % SWEEP, len(ids))]
    calls = Calls()
    result = calls(f"decode strict, cut at {len(cut)} of {len(ids)}", tok.decode, cut)
    calls.check("strict result", check_strict, cut, result)
    out = calls(f"decode lenient, cut at {len(cut)} of {len(ids)}", tok.decode, cut, strict=False)
    if isinstance(out, Exception):
        calls.crash = calls.crash or f"lenient decode of a cut sequence raised {out!r}"
    else:
        calls.check("lenient result", check_lenient, tok, cut, out)
    return calls.result()
