"""``unitok convert``: original-format weights that are pickles (``.pth``, ``.th``, ``.ckpt``,
``.bin``) become safetensors, explicitly and once. Each file is read with
``torch.load(weights_only=True)`` (tensors and plain containers only, no code) in a separate
process, so that even a loader bug cannot touch this one; plain loading still refuses pickle.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import ConfigError

PICKLES = (".bin", ".pt", ".pth", ".th", ".ckpt", ".pkl")
KEEP = (".json", ".txt", ".model", ".tiktoken", ".md")


def _state_dict(obj) -> dict:
    """The tensors of a loaded checkpoint: a flat state dict, or one under "state_dict" / "model"."""
    import torch
    for _ in range(3):
        if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
            return obj
        if isinstance(obj, dict):
            obj = obj.get("state_dict", obj.get("model", obj.get("module")))
    raise ValueError("no state dict of tensors found (looked at the top level, 'state_dict', 'model', 'module')")


def _worker(src: str, dst: str) -> None:
    """In the child process: one pickle -> one safetensors file."""
    import torch
    from safetensors.torch import save_file
    state = _state_dict(torch.load(src, map_location="cpu", weights_only=True))
    # shared storage (tied weights) cannot be saved as is: every tensor gets its own copy
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, dst, metadata={"format": "pt"})


def convert_pickles(folder, out) -> list[Path]:
    """Copy ``folder``'s configs to ``out`` and write each pickle weight file as safetensors
    (``model.safetensors`` for a single one). Returns the files written."""
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder")
    pickles = sorted(p for p in folder.iterdir() if p.suffix.lower() in PICKLES and p.is_file())
    if not pickles:
        raise ConfigError(f"{folder}: no pickle weights ({', '.join(PICKLES)}) to convert")
    out.mkdir(parents=True, exist_ok=True)
    for p in folder.iterdir():
        if p.is_file() and p.suffix.lower() in KEEP:
            shutil.copyfile(p, out / p.name)
    written = []
    for p in pickles:
        dst = out / ("model.safetensors" if len(pickles) == 1 else p.with_suffix(".safetensors").name)
        run = subprocess.run([sys.executable, "-m", "unitok.adapters.convert", str(p), str(dst)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            why = (run.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise ConfigError(f"{p}: cannot be converted with torch.load(weights_only=True): {why}")
        written.append(dst)
    return written


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
