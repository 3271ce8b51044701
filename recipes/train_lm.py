"""Train a small decoder-only LM on ``unitok tokenize`` shards, then sample documents and decode them.

The end-to-end proof of ``unitok.lm`` and ``unitok.data.Packer``: the model reads the 3-D
positions of ``lm.positions`` (M-RoPE sections over (t, h, w); Uni-RoPE floats by default), attends
under ``lm.dense_mask(blocks, documents)`` of the packed rows (causal within a document, never across
one) and learns the labels of ``lm.labels`` (next-token convention), with ``lm.loss_mask`` unless
``data.masked: false`` (then also the tokens the layout forces, which a free sample must write).
Then it samples documents with and without ``tok.constraint(...)`` and decodes them::

    python recipes/train_lm.py --config recipes/configs/lm_tiny.yaml         # about a minute
    python benchmarks/lm_proof.py --config recipes/configs/lm_default.yaml   # ~30 min; writes RESULTS.md

Data: ``data.dir`` holds what ``recipes/data/make_lm_data.py`` writes (``data.images`` captioned
images and ``data.audio`` captioned clips, generated, tokenized with a suite of toy codecs); the
recipe makes it first when it is missing.

The output head covers the ids the training data uses plus every non-text id of the space (a
compact vocabulary: the bundled text vocabulary has 49,152 ids, a caption uses a few dozen), so an
unconstrained sample can still write any structural, header or media id in any place.

Output folder (``log.out_dir``)::

    log.txt             everything printed
    model/              config.json (the LMConfig and the vocabulary) + model.safetensors
    loss.json           the loss curve: [step, train loss] per log window, [step, val loss] per check
    samples.json        every sampled document: ids, strict decode result or error, lenient repairs
    samples.png         sampled images beside training images (decoded by the suite)
    report.json         the summary that benchmarks/lm_proof.py writes into RESULTS.md
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import unitok
import unitok.testing  # noqa: F401  (registers the toy codecs the data's suite is made of)
from unitok import TokenSequenceError, lm
from unitok.checkpoint import save_tensors
from unitok.data import Packer, TokenDataset
from unitok.errors import ConfigError
from unitok.lm.constraint import BODY, Constraint, mask_logits
from unitok.train import SCHEDULES, Logger, lr_at, read_config, setup_runtime

DEFAULTS = {
    "model": {},
    "data": {"dir": "data/lm", "images": 2000, "audio": 2000, "seed": 0, "val_docs": 200, "length": 256,
             "docs_per_batch": 16, "mode": "uni", "masked": True},
    "train": {"lr": 3e-3, "min_lr_ratio": 0.1, "schedule": "budget", "warmup": 50, "steps": 3000,
              "time_limit_min": None, "betas": [0.9, 0.95], "weight_decay": 0.01, "grad_clip": 1.0, "seed": 0,
              "num_threads": 1, "device": "cpu"},
    "sample": {"n": 64, "temperature": 1.0, "max_tokens": 160, "image": [32, 32], "audio": [32, 80], "seed": 0,
               "picture_columns": 8},
    "log": {"out_dir": "data/train_lm", "every": 25, "val_every": 200},
}


# -- the model ------------------------------------------------------------------------------------


@dataclass
class LMConfig:
    vocab_size: int = 0                     # set from the data: the compact vocabulary
    dim: int = 128
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    rope_base: float = 10000.0
    rope_sections: tuple = (4, 6, 6)        # rotary pairs per axis (t, h, w); sum = dim / heads / 2


class RoPE3D(nn.Module):
    """Rotary embedding of 3-D positions (Qwen2-VL's M-RoPE sections): the first ``sections[0]``
    frequency pairs rotate by t, the next by h, the last by w. Positions may be floats (Uni-RoPE)."""

    def __init__(self, head_dim: int, sections, base: float):
        super().__init__()
        pairs = head_dim // 2
        if head_dim % 2 or sum(sections) != pairs:
            raise ConfigError(f"model.rope_sections {list(sections)} must sum to head_dim / 2 = {pairs}")
        self.register_buffer("inv_freq", base ** (-torch.arange(pairs, dtype=torch.float32) / pairs), persistent=False)
        self.register_buffer("axis", torch.repeat_interleave(torch.arange(3), torch.tensor(list(sections))),
                             persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: [B, L, 3] -> (cos, sin), each [B, 1, L, head_dim / 2]."""
        angles = positions.float()[..., self.axis] * self.inv_freq
        return angles.cos()[:, None], angles.sin()[:, None]


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, L, D]; cos, sin: [B, 1, L, D / 2]."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


class Block(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.heads = cfg.heads
        self.norm1, self.norm2 = nn.RMSNorm(cfg.dim), nn.RMSNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.mlp_ratio * cfg.dim), nn.GELU(),
                                 nn.Linear(cfg.mlp_ratio * cfg.dim, cfg.dim))

    def forward(self, x, rope, mask=None, cache=None):
        """x: [B, L, dim]; mask: bool [B, 1, L, L] (None: the L new tokens follow ``cache`` and see
        all of it, so L must be 1 or the cache empty with a causal prefix); cache: a dict that keeps
        this layer's keys and values for generation."""
        B, L, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, *rope), rotate(k, *rope)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        causal = mask is None and L > 1
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        x = x + self.proj(y.transpose(1, 2).reshape(B, L, -1))
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    """A pre-norm decoder-only transformer over a compact vocabulary, with 3-D rotary positions."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ConfigError(f"model.dim ({cfg.dim}) must be a multiple of model.heads ({cfg.heads})")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.rope = RoPE3D(cfg.dim // cfg.heads, cfg.rope_sections, cfg.rope_base)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.RMSNorm(cfg.dim)
        nn.init.normal_(self.embed.weight, std=0.02)

    @classmethod
    def from_config(cls, cfg: LMConfig) -> "TinyLM":
        return cls(cfg)

    def forward(self, ids, positions, mask=None, caches=None):
        """ids: [B, L] compact ids; positions: [B, L, 3]; mask: bool [B, 1, L, L] or None (see
        ``Block``); caches: one dict per layer, or None. Returns logits [B, L, vocab_size]."""
        x = self.embed(ids)
        rope = self.rope(positions)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, mask, None if caches is None else caches[i])
        return self.norm(x) @ self.embed.weight.T     # tied output head


class Vocab:
    """The compact vocabulary: the ids the data uses plus every non-text id of the space."""

    def __init__(self, ids: np.ndarray, space_size: int):
        self.ids = np.asarray(ids, dtype=np.int64)                     # compact -> space id
        self.index = np.full(space_size, -1, dtype=np.int64)           # space id -> compact (-1: none)
        self.index[self.ids] = np.arange(len(self.ids))

    @classmethod
    def from_dataset(cls, ds: TokenDataset, space) -> "Vocab":
        used = np.unique(np.concatenate([np.asarray(ds[i]["ids"]) for i in range(len(ds))]))
        return cls(np.union1d(used, np.arange(space.text_vocab_size, len(space))), len(space))

    def compact(self, ids: torch.Tensor) -> torch.Tensor:
        """Space ids -> compact ids; -100 (no label) stays."""
        out = torch.from_numpy(self.index)[ids.clamp(min=0)]
        return torch.where(ids < 0, ids, out)


# -- data -----------------------------------------------------------------------------------------


def load_config(path, overrides: dict | None = None) -> dict:
    """YAML -> nested dict with this recipe's defaults filled in; unknown sections or keys raise."""
    return read_config(path, DEFAULTS, LMConfig, overrides)


def make_data(dc: dict) -> None:
    """Run recipes/data/make_lm_data.py for ``data.dir`` (it keeps a finished dataset)."""
    spec = importlib.util.spec_from_file_location("make_lm_data", Path(__file__).parent / "data" / "make_lm_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(dc["dir"], dc["images"], dc["audio"], dc["seed"])


def open_data(dc: dict):
    """(suite, TokenDataset) of ``data.dir``, generated first when it is missing."""
    folder = Path(dc["dir"])
    if not (folder / "tokens" / "index.json").exists():
        make_data(dc)
    tok = unitok.load(folder / "suite")
    ds = TokenDataset(folder / "tokens")
    if ds.fingerprint != tok.space.fingerprint:
        raise ConfigError(f"{folder}: tokens and suite differ; rebuild with make_lm_data.py --overwrite")
    if len(ds) <= dc["val_docs"]:
        raise ConfigError(f"{folder}: {len(ds)} documents, not more than data.val_docs={dc['val_docs']}")
    return tok, ds


def to_model(batch: dict, vocab: Vocab, device) -> tuple:
    """A Packer batch -> (ids [R, L], positions [R, L, 3], mask [R, 1, L, L], labels [R, L], tokens
    with a loss), all compact and on ``device``."""
    mask = lm.dense_mask(batch["blocks"], batch["documents"])[:, None]
    labels = vocab.compact(batch["labels"])
    return (vocab.compact(batch["ids"]).to(device), batch["positions"].to(device), mask.to(device),
            labels.to(device), int((labels >= 0).sum()))


def loss_of(model, batch, vocab, device) -> tuple[torch.Tensor, int]:
    ids, positions, mask, labels, n = to_model(batch, vocab, device)
    logits = model(ids, positions, mask)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100), n


@torch.no_grad()
def evaluate(model, batches, vocab, device) -> float:
    """Mean loss per target token over the held-out batches."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        loss, n = loss_of(model, batch, vocab, device)
        total, count = total + float(loss) * n, count + n
    model.train()
    return total / max(1, count)


# -- generation -----------------------------------------------------------------------------------


class PositionTracker:
    """The (t, h, w) of each token of a document as it is generated, equal to ``lm.positions`` of
    the finished document. Positions are causal, so each is known once its token is: text,
    header and structural tokens take the running index; when a media body opens (the header is
    complete), the rest of the segment is planned by completing the prefix with any valid body
    (lowest ids) and reading ``lm.positions`` of that. A prefix the automaton refuses (an
    unconstrained sample's mistake) continues with the running index."""

    def __init__(self, tok, mode: str, automaton: Constraint):
        self.tok, self.mode, self.g = tok, mode, automaton
        self.state = automaton.start()
        self.ids: list[int] = []
        self.planned: dict[int, np.ndarray] = {}
        self.next = 0.0
        self.valid = True

    def push(self, token: int) -> np.ndarray:
        """Append ``token``; returns its position, float64 [3]."""
        n = len(self.ids)
        self.ids.append(token)
        if self.valid and self.g.is_allowed(self.state, token):
            self.state = self.g.advance(self.state, token)
            if self.state.phase == BODY and self.state.pos == 0:
                self.planned = self._plan()
        elif self.valid:
            self.valid, self.planned = False, {}
        if n in self.planned:
            pos = self.planned.pop(n)
            if not self.planned:              # the end token: the index continues after the body
                self.next = float(pos[0]) + 1
            return pos
        pos = np.full(3, self.next)
        self.next += 1
        return pos

    def _plan(self) -> dict[int, np.ndarray]:
        g, s, ids = self.g, self.state, list(self.ids)
        while s.phase == BODY:
            token = g.allowed_ranges(s)[0][0]
            ids.append(token)
            s = g.advance(s, token)
        n = len(self.ids)
        positions = lm.positions(np.asarray(ids), self.mode, tok=self.tok)
        return {i: positions[i].astype(np.float64) for i in range(n, len(ids))}


@torch.no_grad()
def sample(model, vocab: Vocab, tok, n: int, sc: dict, mode: str, constrained: bool, seed: int) -> list[list[int]]:
    """``n`` documents from ``<|bos|>``, sampled together with a key/value cache; ``constrained``:
    under ``tok.constraint(image=..., audio=...)`` (``unitok.lm.mask_logits``), else free until
    ``<|eos|>`` or ``sample.max_tokens``. Returns each document's ids, ``<|bos|>`` first."""
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(seed)
    bos, eos = tok.space.special("<|bos|>"), tok.space.special("<|eos|>")
    rule = tok.constraint(image=tuple(sc["image"]), audio=tuple(sc["audio"]), max_tokens=sc["max_tokens"])
    free = tok.constraint(max_tokens=sc["max_tokens"])       # only follows a free sample, to place it
    trackers = [PositionTracker(tok, mode, rule if constrained else free) for _ in range(n)]
    states = [rule.advance(rule.start(), bos) for _ in range(n)]
    docs = [[bos] for _ in range(n)]
    caches = [{} for _ in model.blocks]
    active = torch.arange(n)
    step_ids = torch.full((n, 1), int(vocab.index[bos]))
    step_pos = torch.from_numpy(np.stack([t.push(bos) for t in trackers]))[:, None].float()
    for _ in range(sc["max_tokens"] - 1):
        logits = model(step_ids.to(device), step_pos.to(device), None, caches)[:, -1].float().cpu()
        logits = logits / max(sc["temperature"], 1e-6)
        if constrained:   # over the whole space, where the automaton's masks live, then back
            full = logits.new_full((len(logits), len(tok.space)), -torch.inf)
            full[:, vocab.ids] = logits
            logits = mask_logits(rule, [states[i] for i in active.tolist()], full)[:, vocab.ids]
            assert torch.isfinite(logits).any(1).all(), "the compact vocabulary holds an allowed id in every state"
        picks = torch.multinomial(logits.softmax(-1), 1, generator=g)[:, 0]
        keep = []
        for row, i in enumerate(active.tolist()):
            token = int(vocab.ids[picks[row]])
            docs[i].append(token)
            if constrained:
                states[i] = rule.advance(states[i], token)
            if token != eos:
                keep.append(row)
        if not keep:
            break
        keep_t = torch.tensor(keep)
        active = active[keep_t]
        for c in caches:
            c["k"], c["v"] = c["k"][keep_t], c["v"][keep_t]
        step_ids = picks[keep_t][:, None]
        step_pos = torch.from_numpy(np.stack([trackers[i].push(docs[i][-1]) for i in active.tolist()]))[:, None].float()
    model.train()
    return docs


def check(tok, docs: list[list[int]]) -> list[dict]:
    """Per document: whether it decodes with ``strict=True`` (else the error), the parts, and the
    repairs ``strict=False`` needed."""
    out = []
    for ids in docs:
        row = {"ids": ids, "tokens": len(ids)}
        try:
            parts = tok.decode(np.asarray(ids), strict=True)
            row.update(strict=True, parts=[_describe(p) for p in parts], repairs=[],
                       media=[type(p).__name__.lower() for p in parts if not isinstance(p, str)])
        except TokenSequenceError as e:
            lenient = tok.decode(np.asarray(ids), strict=False)
            row.update(strict=False, error=str(e), parts=[_describe(p) for p in lenient],
                       repairs=[f"{r.action}: {r.reason}" for r in lenient.repairs])
        out.append(row)
    return out


def _describe(part) -> str:
    return part if isinstance(part, str) else repr(part)


# -- the picture ----------------------------------------------------------------------------------


def tile(part, size: int = 64) -> np.ndarray:
    """uint8 [size, size, 3]: an image scaled by nearest pixels, or an audio clip as its waveform."""
    canvas = np.full((size, size, 3), 255, np.uint8)
    if isinstance(part, unitok.Image):
        px = part.pixels.permute(1, 2, 0).numpy()
        rows = np.arange(size) * px.shape[0] // size
        cols = np.arange(size) * px.shape[1] // size
        return np.ascontiguousarray(px[rows][:, cols, :3]) if px.shape[2] >= 3 else np.repeat(px[rows][:, cols], 3, 2)
    if isinstance(part, unitok.Audio):
        wave = part.samples.mean(0).numpy()
        x = np.minimum(np.arange(len(wave)) * size // max(1, len(wave)), size - 1)
        y = np.clip(((1 - wave) / 2 * (size - 1)).round().astype(int), 0, size - 1)
        canvas[size // 2, :] = 200
        canvas[y, x] = (30, 60, 200)
    return canvas


def picture(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    """uint8 [H, W, 3]: rows of equal tiles with white gaps."""
    size = rows[0][0].shape[0]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (size + gap) + gap, cols * (size + gap) + gap, 3), 255, np.uint8)
    for r, tiles in enumerate(rows):
        for c, t in enumerate(tiles):
            y, x = gap + r * (size + gap), gap + c * (size + gap)
            out[y:y + size, x:x + size] = t
    return out


def samples_picture(tok, ds: TokenDataset, val: list[int], results: list[dict], columns: int) -> np.ndarray:
    """Two rows of held-out training documents (as the suite decodes them), then the constrained
    samples' media: images and audio, ``columns`` tiles a row."""
    def pick(parts, images: int, clips: int):
        return ([p for p in parts if isinstance(p, unitok.Image)][:images]
                + [p for p in parts if isinstance(p, unitok.Audio)][:clips])

    data = pick([p for i in val[:4 * columns] for p in tok.decode(ds.sequence(i))], columns, columns)
    made = pick([p for r in results if r["strict"] for p in tok.decode(np.asarray(r["ids"]))], 2 * columns, columns)
    tiles = [tile(m) for m in data], [tile(m) for m in made]
    rows = [tiles[0][k:k + columns] for k in range(0, len(tiles[0]), columns)]
    rows += [[np.full_like(tiles[0][0], 255)]]    # a blank row between data and samples
    rows += [tiles[1][k:k + columns] for k in range(0, len(tiles[1]), columns)]
    return picture([r for r in rows if r])


# -- training -------------------------------------------------------------------------------------


def batches_forever(ds, indices, packer, docs_per_batch: int, rng: np.random.Generator):
    while True:
        order = rng.permutation(indices)
        for k in range(0, len(order) - docs_per_batch + 1, docs_per_batch):
            yield packer([ds[int(i)] for i in order[k:k + docs_per_batch]])


def train(cfg: dict) -> dict:
    """Train, sample, decode; returns the report (also written to ``<out_dir>/report.json``)."""
    tc, dc, sc = cfg["train"], cfg["data"], cfg["sample"]
    _, _, device, _ = setup_runtime(tc)
    out = Path(cfg["log"]["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    log = Logger(out / "log.txt")
    t_start = time.time()

    tok, ds = open_data(dc)
    vocab = Vocab.from_dataset(ds, tok.space)
    mcfg = cfg["model_config"]
    mcfg.vocab_size = len(vocab.ids)
    model = TinyLM.from_config(mcfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    # masked: no loss where the layout forces the token (lm.loss_mask), as for a model that always
    # generates under tok.constraint; False also teaches it the end tokens a free sample must write
    packer = Packer(dc["length"], tok=tok, mode=dc["mode"], masked=dc["masked"])
    val_idx = list(range(dc["val_docs"]))            # the manifest's first documents are held out
    train_idx = np.arange(dc["val_docs"], len(ds))
    k = dc["docs_per_batch"]
    val_batches = [packer([ds[i] for i in val_idx[a:a + k]]) for a in range(0, len(val_idx), k)]
    stream = batches_forever(ds, train_idx, packer, k, np.random.default_rng(tc["seed"]))
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], betas=tuple(tc["betas"]), weight_decay=tc["weight_decay"])
    log(f"lm: {n_params / 1e6:.2f}M parameters, vocabulary {len(vocab.ids)} of {len(tok.space)} ids; "
        f"{len(train_idx)} training and {len(val_idx)} held-out documents ({ds.num_tokens} tokens), rows of "
        f"{dc['length']}, {k} documents a batch, positions {dc['mode']}; torch threads {torch.get_num_threads()}")

    curve = {"train": [], "val": [[0, evaluate(model, val_batches, vocab, device)]]}
    log(f"val step 0 | loss {curve['val'][0][1]:.4f}")
    step, window, t0 = 0, [], time.time()
    while step < tc["steps"]:
        elapsed = time.time() - t0
        if tc["time_limit_min"] and elapsed >= 60 * tc["time_limit_min"]:
            break
        lr = lr_at(step, elapsed, tc)
        for group in opt.param_groups:
            group["lr"] = lr
        loss, _ = loss_of(model, next(stream), vocab, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
        opt.step()
        step += 1
        window.append(loss.item())
        if step % cfg["log"]["every"] == 0 or step == tc["steps"]:
            curve["train"].append([step, float(np.mean(window))])
            log(f"step {step} | {elapsed / 60:.1f} min | lr {lr:.2e} | loss {np.mean(window):.4f}")
            window = []
        if step % cfg["log"]["val_every"] == 0:
            curve["val"].append([step, evaluate(model, val_batches, vocab, device)])
            log(f"val step {step} | loss {curve['val'][-1][1]:.4f}")
    if window:
        curve["train"].append([step, float(np.mean(window))])
    if curve["val"][-1][0] != step:
        curve["val"].append([step, evaluate(model, val_batches, vocab, device)])
    train_minutes = (time.time() - t0) / 60
    log(f"trained {step} steps in {train_minutes:.1f} min; val loss {curve['val'][0][1]:.4f} -> "
        f"{curve['val'][-1][1]:.4f}")

    (out / "model").mkdir(exist_ok=True)
    (out / "model" / "config.json").write_text(json.dumps({"config": asdict(mcfg), "vocab": vocab.ids.tolist(),
                                                           "fingerprint": tok.space.fingerprint}) + "\n")
    save_tensors(out / "model" / "model.safetensors", {k: v.detach().cpu().contiguous()
                                                       for k, v in model.state_dict().items()})
    (out / "loss.json").write_text(json.dumps(curve) + "\n")

    report = {"config": {k: cfg[k] for k in DEFAULTS}, "steps": step, "train_minutes": train_minutes,
              "parameters": n_params, "vocab": len(vocab.ids), "documents": len(ds), "tokens": ds.num_tokens,
              "loss": curve, "samples": {}}
    everything = {}
    for constrained in (True, False):
        name = "constrained" if constrained else "free"
        t = time.time()
        docs = sample(model, vocab, tok, sc["n"], sc, dc["mode"], constrained, sc["seed"])
        results = everything[name] = check(tok, docs)
        repairs: dict[str, int] = {}
        for r in results:
            for rep in r["repairs"]:
                kind = rep.split(":", 1)[0]
                repairs[kind] = repairs.get(kind, 0) + 1
        kinds = {"image": 0, "audio": 0, "text only": 0}
        for r in results:
            if r["strict"]:
                kinds["image" if "image" in r["media"] else "audio" if "audio" in r["media"] else "text only"] += 1
        report["samples"][name] = {
            "n": len(results), "strict": sum(r["strict"] for r in results),
            "with_repairs": sum(bool(r["repairs"]) for r in results), "repairs": repairs,
            "mean_tokens": float(np.mean([r["tokens"] for r in results])), "kinds": kinds,
            "seconds": time.time() - t,
            "examples": [r.get("error") for r in results if not r["strict"]][:3]}
        s = report["samples"][name]
        log(f"{name} samples: {s['strict']}/{s['n']} decode strictly ({kinds}); {s['with_repairs']} needed "
            f"repairs {repairs}; {s['seconds']:.1f} s")
    (out / "samples.json").write_text(json.dumps(everything) + "\n")
    canvas = samples_picture(tok, ds, val_idx, everything["constrained"], sc["picture_columns"])
    unitok.Image.from_array(torch.from_numpy(canvas), channels_last=True).save(out / "samples.png")
    report["picture"] = str(out / "samples.png")
    report["minutes"] = (time.time() - t_start) / 60
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"done in {report['minutes']:.1f} min: {out / 'report.json'}, {out / 'samples.png'}")
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="YAML config (recipes/configs/lm_*.yaml)")
    ap.add_argument("--data", help="override data.dir (a make_lm_data.py output folder)")
    ap.add_argument("--out-dir", help="override log.out_dir")
    ap.add_argument("--steps", type=int, help="override train.steps")
    ap.add_argument("--time-limit-min", type=float, help="override train.time_limit_min")
    ap.add_argument("--schedule", choices=SCHEDULES, help="override train.schedule (budget or steps)")
    args = ap.parse_args(argv)
    overrides: dict = {}
    for section, key, value in (("data", "dir", args.data), ("log", "out_dir", args.out_dir),
                                ("train", "steps", args.steps), ("train", "time_limit_min", args.time_limit_min),
                                ("train", "schedule", args.schedule)):
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    try:
        train(load_config(args.config, overrides))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
