"""Fetch and prepare the multilingual text corpus for the text tokenizer.

Sources (Debian packages, see shared DATA.md): the Linux man pages in English, German, French,
Japanese, Chinese and Russian, and the Python documentation sources (reStructuredText prose with
code). Everything runs offline apart from ``apt-get download``.

    python recipes/data/fetch_text.py [--out data/text]

Writes::

    data/text/raw/             the unpacked packages
    data/text/train/*.txt      one file per (language, source), documents separated by blank lines
    data/text/heldout/*.txt    the same, for the ~5% of documents whose path hash falls in bucket 0

The split is deterministic: a document is held out when sha256(package-relative path) mod 20 == 0,
so rerunning the script (or a newer package version) never moves a document from held-out to train.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PACKAGES = [
    "manpages",
    "manpages-de",
    "manpages-fr",
    "manpages-ja",
    "manpages-zh",
    "manpages-ru",
    "python3-doc",
]
# python3-doc is a dependency-only package; the documentation itself is in python3.X-doc.
DOC_PACKAGE_PATTERN = re.compile(r"^python3\.\d+-doc$")

HELDOUT_BUCKETS = 20  # 1 in 20 documents (~5%) is held out


# --------------------------------------------------------------------------------------------
# download


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}")
    return proc.stdout


def _doc_dependency(deb: Path) -> str | None:
    """Name of the python3.X-doc package that python3-doc depends on."""
    fields = _run(["dpkg-deb", "-f", str(deb.resolve()), "Depends"], deb.parent)
    for part in fields.split(","):
        name = part.strip().split(" ")[0]
        if DOC_PACKAGE_PATTERN.match(name):
            return name
    return None


def download(raw: Path) -> None:
    debs = raw / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    wanted = list(PACKAGES)
    for name in list(wanted):
        if not list(debs.glob(f"{name}_*.deb")):
            print(f"apt-get download {name}")
            _run(["apt-get", "download", name], debs)
        if name == "python3-doc":
            dep = _doc_dependency(next(debs.glob("python3-doc_*.deb")))
            if dep and not list(debs.glob(f"{dep}_*.deb")):
                print(f"apt-get download {dep}")
                _run(["apt-get", "download", dep], debs)
    tree = raw / "root"
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg", "-x", str(deb.resolve()), str(tree.resolve())], raw)


# --------------------------------------------------------------------------------------------
# roff -> text

_NAMED_GLYPHS = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "aq": "'", "dq": '"', "lq": "\u201c",
    "rq": "\u201d", "oq": "\u2018", "cq": "\u2019", "bu": "\u2022", "co": "\u00a9",
    "rg": "\u00ae", "tm": "\u2122", "de": "\u00b0", "mu": "\u00d7", "di": "\u00f7",
    "+-": "\u00b1", "<=": "\u2264", ">=": "\u2265", "!=": "\u2260", "->": "\u2192",
    "<-": "\u2190", "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "ba": "|", "or": "|",
    "at": "@", "sh": "#", "Do": "$", "ga": "`", "ul": "_", "pl": "+", "mi": "-", "eq": "=",
}

_ESCAPE = re.compile(
    r"""\\(?:
        f(?:\[[^\]]*\]|\(..|.)          # font change
      | \((..)                          # two-letter glyph \(xx
      | \[([^\]]*)\]                    # bracketed glyph \[xx]
      | \*(?:\[[^\]]*\]|\(..|.)         # string register
      | s[+-]?(?:\d+|\[[^\]]*\]|\(..)   # size change
      | [nk](?:\[[^\]]*\]|\(..|.)       # number register / mark
      | [hvwl]'[^']*'                   # motions and widths
      | (.)                             # any other one-character escape
    )""",
    re.VERBOSE,
)
_SIMPLE_ESCAPES = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "'": "'", "`": "`", ".": "."}
_TEXT_MACROS = {"SH", "SS", "B", "I", "SM", "SB", "TP", "IP", "TQ", "UR", "MT", "OP", "Nm", "Nd", "Sh", "Ss"}
_ALTERNATING_MACROS = {"BR", "RB", "BI", "IB", "IR", "RI"}
_BREAK_MACROS = {"PP", "LP", "P", "sp", "br", "SH", "SS", "TP", "IP", "Pp"}


def _unescape(line: str) -> str:
    def sub(m: re.Match) -> str:
        glyph = m.group(1) or m.group(2)
        if glyph is not None:
            return _NAMED_GLYPHS.get(glyph, "")
        other = m.group(3)
        if other is not None:
            return _SIMPLE_ESCAPES.get(other, "")
        return ""

    return _ESCAPE.sub(sub, line)


def _macro_args(rest: str) -> list[str]:
    args, cur, quoted, i = [], [], False, 0
    while i < len(rest):
        ch = rest[i]
        if ch == '"':
            quoted = not quoted
        elif ch == " " and not quoted:
            if cur:
                args.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
        i += 1
    if cur:
        args.append("".join(cur))
    return args


def roff_to_text(source: str) -> str:
    """A deliberately simple man(7) reader: keeps the prose, drops layout requests.

    Filled text (the default in roff) is joined into one line per paragraph, as a reader sees it;
    no-fill regions (.nf/.fi, .EX/.EE: code and examples) keep their lines.
    """
    paragraphs: list[str] = []
    para: list[str] = []
    fill = True

    def flush() -> None:
        if para:
            paragraphs.append((" " if fill else "\n").join(para))
            para.clear()

    for raw_line in source.splitlines():
        line = raw_line.rstrip()
        if line.startswith(('.\\"', "'\\\"", '\\"')):
            continue
        if line[:1] in (".", "'"):
            macro, _, rest = line[1:].strip().partition(" ")
            if macro in ("nf", "EX", "fi", "EE"):
                flush()
                fill = macro in ("fi", "EE")
                continue
            if macro in _BREAK_MACROS:
                flush()
            if macro in _TEXT_MACROS:
                text = " ".join(_macro_args(rest))
            elif macro in _ALTERNATING_MACROS:
                text = "".join(_macro_args(rest))
            else:
                continue
            text = _unescape(text).strip()
            if text:
                para.append(text)
            if macro in ("SH", "SS", "Sh", "Ss"):
                flush()
            continue
        if not line.strip() and fill:
            flush()
            continue
        para.append(_unescape(line))
    flush()
    return "\n\n".join(p for p in paragraphs if p.strip()) + "\n"


# --------------------------------------------------------------------------------------------
# corpus


def _is_heldout(rel_path: str) -> bool:
    digest = hashlib.sha256(rel_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % HELDOUT_BUCKETS == 0


def iter_documents(tree: Path):
    """Yield (group name, package-relative path, text) for every document in the unpacked tree."""
    man = tree / "usr/share/man"
    for path in sorted(man.rglob("*.gz")):
        if path.is_symlink() or not path.is_file():
            continue
        rel = path.relative_to(man)
        lang = "en" if rel.parts[0].startswith("man") else rel.parts[0]
        try:
            text = gzip.decompress(path.read_bytes()).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # a handful of legacy pages; not worth guessing their encoding
        yield f"man-{lang}", f"man/{rel}", roff_to_text(text)
    for sources in sorted(tree.glob("usr/share/doc/python3.*/html/_sources")):
        for path in sorted(sources.rglob("*.txt")):
            rel = path.relative_to(sources)
            yield "pydoc-en", f"pydoc/{rel}", path.read_text("utf-8", errors="replace")


def build_splits(tree: Path, out: Path) -> dict[str, list[int]]:
    buckets: dict[tuple[str, str], list[str]] = defaultdict(list)
    for group, rel, text in iter_documents(tree):
        split = "heldout" if _is_heldout(rel) else "train"
        buckets[(split, group)].append(text.strip() + "\n")
    sizes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for split in ("train", "heldout"):
        shutil.rmtree(out / split, ignore_errors=True)
        (out / split).mkdir(parents=True)
    for (split, group), docs in sorted(buckets.items()):
        data = "\n".join(docs)
        (out / split / f"{group}.txt").write_text(data, encoding="utf-8")
        sizes[group][split == "heldout"] += len(data.encode("utf-8"))
    return dict(sizes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/text"), help="output folder")
    args = parser.parse_args(argv)
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        sys.exit("this script needs apt-get and dpkg (a Debian or Ubuntu machine)")
    raw = args.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    download(raw)
    sizes = build_splits(raw / "root", args.out)
    print(f"{'group':<12} {'train MB':>9} {'heldout MB':>11}")
    for group, (train, held) in sorted(sizes.items()):
        print(f"{group:<12} {train / 1e6:>9.2f} {held / 1e6:>11.2f}")
    total_train = sum(v[0] for v in sizes.values())
    total_held = sum(v[1] for v in sizes.values())
    print(f"{'total':<12} {total_train / 1e6:>9.2f} {total_held / 1e6:>11.2f}")
    print(f"wrote {args.out / 'train'} and {args.out / 'heldout'}")


if __name__ == "__main__":
    main()
