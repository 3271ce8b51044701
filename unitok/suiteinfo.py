"""What ``unitok info`` says about a suite, and the files that let it say so without loading models.

``describe(tok, preprocess)`` gives the lines (components, tokens per item); ``write_suite_files``
saves ``suite.json`` and ``space.json`` beside a suite's components, with those lines and the
sha256 of every component file. ``cached_description(folder)`` reads them back when every file is
still the one described (checked by hashing, no torch import), so ``unitok info`` answers in a
fraction of a second; a suite whose files changed since, or one saved by an older unitok, is
loaded instead.

Regenerate the bundled suite's files after retraining a bundled component::

    python -m unitok.suiteinfo            # rewrites unitok/assets/suite.json and space.json
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError
from .files import ASSETS, file_sha256, read_json_file

#: The version of the bundled suite (``unitok/assets``): bumped whenever a retrained or replaced
#: bundled component changes the ids it produces, and with it the token-space fingerprint. Files
#: made by an earlier bundled suite are refused, with a message that names it (``RETIRED_SUITES``).
BUNDLED_SUITE_VERSION = 3

#: Token-space fingerprint of every earlier bundled suite -> (its version, the last unitok release
#: that bundled it, what changed after it). Append when bumping ``BUNDLED_SUITE_VERSION``.
RETIRED_SUITES = {
    "5f47e588828fe4eaab8cc8f960a2c7dfa4934e541b5178c1f7b5f98bcb949a8a": (
        2, "0.2.0", "its image and audio tokenizers were retrained (issue 18), so image and audio ids differ; "
                    "text and video ids did not change"),
}

SUITE_CONFIG = "suite.json"
SPACE_MANIFEST = "space.json"
COMPONENTS = ("text", "image", "video", "audio")


def token_counts(tok, preprocess) -> list[str]:
    """Tokens per picture size, per second of video and of audio, under ``preprocess`` (computed
    from the layouts; nothing is encoded), for the codecs whose headers are unitok's own."""
    lines = []
    fields = {m: set(c.header_fields) for m, c in tok.media.items()}
    if fields.get("image") == {"height", "width"}:
        stride = tok.media["image"].pixel_stride
        cells = []
        for h, w in ((256, 256), (512, 512), (1024, 1024), (3024, 4032)):
            H, W = preprocess.size(h, w, stride)
            shown = f"{w}x{h}" + (f" (as {W}x{H})" if (H, W) != (h, w) else "")
            cells.append(f"{shown}: {tok.segment_tokens('image', {'height': H, 'width': W}):,}")
        lines.append("image: " + "; ".join(cells))
    if fields.get("video") == {"frames", "height", "width", "fps_num", "fps_den"}:
        stride = tok.media["video"].pixel_stride
        H, W = preprocess.size(256, 256, stride)
        fps = min(25, preprocess.max_fps or 25)
        per = [tok.segment_tokens("video", {"frames": max(1, round(fps * s)), "height": H, "width": W,
                                            "fps_num": int(fps), "fps_den": 1}) for s in (1, 10)]
        lines.append(f"video {W}x{H} at {fps:g} fps: {per[0]:,} tokens for 1 s, {per[1]:,} for 10 s "
                     f"(~{(per[1] - per[0]) / 9:,.0f} per second)")
    if "audio" in tok.media and hasattr(tok.media["audio"], "bitrates"):
        codec = tok.media["audio"]
        cells = [f"{kbps:.3g} kbps: {(codec.frame_rate * k):,.0f}" for k, kbps in codec.bitrates.items()
                 if k in (1, codec.levels // 2, codec.levels)]
        lines.append("audio tokens per second: " + "; ".join(cells) + f" (+{2 + sum(codec.header_widths())} a part; "
                     f"{codec.sample_rate} Hz model)")
    return lines


def describe(tok, preprocess) -> list[str]:
    """The lines ``unitok info`` prints above the token-space table."""
    lines = [f"text: {tok.text!r}"]
    for m, codec in tok.media.items():
        lines.append(f"{m}: {codec.checkpoint_type}, levels {codec.codebook_sizes}, header "
                     f"{', '.join(codec.header_fields)}")
    missing = [m for m in COMPONENTS[1:] if m not in tok.media]
    if missing:
        lines.append(f"not in this suite: {', '.join(missing)}")
    lines.append("")
    lines.append("tokens per item" + (f" under {preprocess.to_json()}" if preprocess.active else "") + ":")
    lines += ["  " + line for line in token_counts(tok, preprocess)]
    return lines


def _component_files(folder: Path) -> dict[str, str]:
    """sha256 of every file of the suite's components (``text/vocab.tiktoken`` and so on)."""
    return {p.relative_to(folder).as_posix(): file_sha256(p)
            for name in COMPONENTS if (folder / name).is_dir()
            for p in sorted((folder / name).iterdir()) if p.is_file()}


def write_suite_files(tok, folder: str | Path) -> None:
    """``suite.json`` (layout options, and what ``unitok info`` prints with the digests of the
    files it describes) and the token-space manifest ``space.json``, for components already saved
    in ``folder``."""
    from .media import Preprocess

    folder = Path(folder)
    suite = {"text_group_size": tok.text_layout.k, "modalities": list(tok.media),
             "info": {"lines": describe(tok, Preprocess()), "files": _component_files(folder)}}
    (folder / SUITE_CONFIG).write_text(json.dumps(suite, indent=2) + "\n")
    tok.space.save(folder / SPACE_MANIFEST)


def cached_description(folder: str | Path):
    """``(lines, TokenSpace)`` from ``suite.json`` and ``space.json`` when they describe the files
    in ``folder`` as they are now; None when they do not (or were written by an older unitok)."""
    from .space import TokenSpace

    folder = Path(folder)
    try:
        info = read_json_file(folder / SUITE_CONFIG, ValueError, "suite configuration").get("info")
        if not isinstance(info, dict) or not isinstance(info.get("files"), dict):
            return None
        lines = info.get("lines")
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            return None
        if _component_files(folder) != info["files"]:
            return None
        return lines, TokenSpace.load(folder / SPACE_MANIFEST)
    except (OSError, ValueError, AttributeError, ConfigError):
        return None


def space_name(fingerprint: str) -> str:
    """``token space 5f47e588828f``, plus which bundled suite it was when it is a retired one."""
    retired = RETIRED_SUITES.get(fingerprint)
    name = f"token space {str(fingerprint)[:12]}"
    return name if retired is None else f"{name} (bundled suite version {retired[0]}, unitok {retired[1]})"


def retired_advice(fingerprint: str) -> str:
    """What to do with ids from an earlier bundled suite ('' for any other fingerprint)."""
    retired = RETIRED_SUITES.get(fingerprint)
    if retired is None:
        return ""
    version, release, changed = retired
    return (f". Since bundled suite version {version}, {changed}. Encode the media again with this unitok (bundled "
            f"suite version {BUNDLED_SUITE_VERSION}), or read these ids with unitok {release} "
            f"(pip install 'unitok=={release}') or with a saved copy of that suite (unitok.load(folder))")


if __name__ == "__main__":
    from . import load

    # the old manifest describes the components before retraining: set it aside while the suite
    # loads (a load checks the components against it), and put it back if the load fails
    manifest = ASSETS / SPACE_MANIFEST
    old = manifest.read_bytes() if manifest.exists() else None
    manifest.unlink(missing_ok=True)
    try:
        write_suite_files(load(ASSETS), ASSETS)
    except BaseException:
        if old is not None:
            manifest.write_bytes(old)
        raise
    print(f"wrote {ASSETS / SUITE_CONFIG} and {manifest}")
