"""The end-to-end proof of ``unitok.lm``: train ``recipes/train_lm.py`` (a small LM on ``unitok
tokenize`` shards of generated captioned images and audio, with ``lm.positions``, the ``Packer``'s
block structure, labels and loss mask), sample documents with and without ``tok.constraint``, decode
them, and write the section "Next-group LM (proof)" of RESULTS.md with the samples' picture. Two
trainings of the config: with the loss mask (``data.masked``) and with a loss on every token, since
a model that never learned the tokens the layout forces cannot write them without the constraint.

    OMP_NUM_THREADS=1 python benchmarks/lm_proof.py --config recipes/configs/lm_default.yaml
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import shutil
import sys
from pathlib import Path

from report import (MAX_PLOT_BYTES, PLOTS, RESULTS, ROOT, Section, command_line, fmt, markdown_table, rel, run_lines,
                    write_section)

TITLE = "Next-group LM (proof)"


def recipe():
    """recipes/train_lm.py as a module (recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("train_lm", ROOT / "recipes" / "train_lm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


VARIANTS = {   # name -> (data.masked, what the table calls it)
    "masked": (True, "loss mask (`lm.loss_mask`)"),
    "unmasked": (False, "loss on every token"),
}


def train_variants(train_lm, cfg: dict, names: list[str], reuse: bool) -> dict[str, dict]:
    """Train (or, ``reuse``, read back) one model per variant: the config's, with ``data.masked`` set
    and ``log.out_dir`` suffixed by the variant's name."""
    reports = {}
    for name in names:
        vcfg = json.loads(json.dumps({k: v for k, v in cfg.items() if k != "model_config"}))
        vcfg["data"]["masked"] = VARIANTS[name][0]
        vcfg["log"]["out_dir"] = f"{cfg['log']['out_dir']}_{name}"
        vcfg["model_config"] = copy.deepcopy(cfg["model_config"])
        done = Path(vcfg["log"]["out_dir"]) / "report.json"
        old = json.loads(done.read_text()) if reuse and done.exists() else None
        if old is not None and old.get("config") == {k: vcfg[k] for k in old["config"]}:
            print(f"{name}: reusing {done}")
            reports[name] = old
        else:
            reports[name] = train_lm.train(vcfg)
    return reports


def section(reports: dict[str, dict], cfg: dict, picture: str, command: str) -> Section:
    first = next(iter(reports.values()))
    rows = []
    for name, report in reports.items():
        for kind, label in (("constrained", "`tok.constraint(image=(32, 32), audio=(32, 80))`"), ("free", "none")):
            r = report["samples"][kind]
            rows.append({"training": VARIANTS[name][1], "constraint": label,
                         "strict": f"{r['strict']}/{r['n']} ({100 * r['strict'] / r['n']:.0f}%)",
                         "kinds": ", ".join(f"{k} {v}" for k, v in r["kinds"].items()),
                         "repaired": f"{r['with_repairs']}/{r['n']}",
                         "repairs": ", ".join(f"{k} {v}" for k, v in sorted(r["repairs"].items())) or "none",
                         "tokens": fmt(r["mean_tokens"], 1)})
    columns = ["training", "constraint", "strict", "kinds", "repaired", "repairs", "tokens"]
    table = markdown_table(columns, rows, lambda c, row: row[c], left=("training", "constraint", "kinds", "repairs"))
    curves = []
    for name, report in reports.items():
        train = dict(report["loss"]["train"])
        curves += [{"training": VARIANTS[name][1], "step": str(step), "train": fmt(train.get(step), 3),
                    "val": fmt(val, 3)} for step, val in report["loss"]["val"]]
    curve = markdown_table(["training", "step", "train", "val"], curves, lambda c, row: row[c], left=("training",))
    m, d = cfg["model"], cfg["data"]
    errors = [f"{VARIANTS[name][1]}: `{e}`" for name, report in reports.items()
              for e in report["samples"]["free"]["examples"][:2]]
    minutes = sum(r["minutes"] for r in reports.values())
    spent = " and ".join(f"{r['train_minutes']:.1f}" for r in reports.values())
    body = "\n".join(run_lines(command) + [
        "",
        f"A {first['parameters'] / 1e6:.2f}M-parameter decoder-only transformer ({m.get('layers')} layers, dim "
        f"{m.get('dim')}, {m.get('heads')} heads; `recipes/train_lm.py`) trained for "
        f"{' and '.join(str(r['steps']) for r in reports.values())} steps "
        f"({spent} min, one thread, on a 2-core "
        f"machine shared with other jobs) on {first['documents']} generated documents ({first['tokens']} tokens; "
        f"{d['images']} captioned 32x32 shapes, {d['audio']} captioned 0.32 s signals; "
        f"`recipes/data/make_lm_data.py`, tokenized by `unitok tokenize` with the bundled text tokenizer and the "
        f"toy codecs of `unitok.testing`), {d['val_docs']} held out. Inputs: `lm.positions(mode=\"{d['mode']}\")` "
        f"through M-RoPE sections, attention `lm.dense_mask(blocks, documents)` of the `Packer`'s rows of "
        f"{d['length']} (causal within a document, never across one), next-token labels (`convention=\"next_token\"`); "
        f"a next-group variant (inputs from `lm.parents`, whole groups sampled with `group_ranges`) is not part "
        f"of this recipe. Output head: the {first['vocab']} ids the data uses plus every non-text id. Two "
        f"trainings: with the loss mask (`Packer(masked=True)`: no loss where the layout forces the token, e.g. "
        f"`<|/image|>` after a complete body) and with a loss on every token. Then {first['samples']['free']['n']} "
        f"documents per row sampled from `<|bos|>` at temperature {cfg['sample']['temperature']}, at most "
        f"{cfg['sample']['max_tokens']} tokens, each decoded with `strict=True` (and `strict=False` to count the "
        f"repairs, by kind, over all the documents that needed them).",
        "",
        table,
        "",
        "A model trained with the loss mask never learns the tokens the layout forces, so without the constraint "
        "it does not close its segments: the constraint is what writes them. First strict-decode errors of free "
        "samples: " + ("; ".join(errors) or "none") + ".",
        "",
        f"Loss per target token (train: mean of the log window ending at the step; val: the held-out documents; "
        f"with the loss mask the forced tokens are not counted, so the two trainings' losses differ in what they "
        f"average); all runs and samples took {minutes:.1f} min:",
        "",
        curve,
        "",
        f"Held-out documents as the suite decodes them (top: 8 images, 8 audio clips drawn as waveforms), then the "
        f"constrained samples' images and audio of the first training: "
        f"[{picture}]({picture.removeprefix('benchmarks/')})",
        "",
        f"![LM samples]({picture.removeprefix('benchmarks/')})",
    ])
    return Section(TITLE, body)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "recipes" / "configs" / "lm_default.yaml"))
    ap.add_argument("--variants", default="masked,unmasked", help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--reuse", action="store_true",
                    help="read a variant's <out_dir>_<variant>/report.json back when its config is this one")
    ap.add_argument("--no-write", action="store_true", help="train and sample, but leave RESULTS.md as it is")
    args = ap.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    if not names or set(names) - set(VARIANTS):
        ap.error(f"--variants: choose from {', '.join(VARIANTS)}")
    train_lm = recipe()
    cfg = train_lm.load_config(args.config)
    reports = train_variants(train_lm, cfg, names, args.reuse)
    if args.no_write:
        return
    PLOTS.mkdir(parents=True, exist_ok=True)
    picture = PLOTS / "lm_proof_samples.png"
    shutil.copyfile(next(iter(reports.values()))["picture"], picture)
    assert picture.stat().st_size < MAX_PLOT_BYTES, "the samples picture is over the plot budget"
    write_section(RESULTS, section(reports, cfg, rel(picture), command_line()))
    print(f"wrote the section {TITLE!r} of {RESULTS}")


if __name__ == "__main__":
    main()
