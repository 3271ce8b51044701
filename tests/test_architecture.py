"""The structure the design notes promise: dependencies point down, imports are plain, files stay small."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "unitok"
# the layers allowed to reach for the tokenizer hub (unitok/tokenizer.py)
HUB_USERS = {"unitok/__init__.py", "unitok/cli.py"}
HUB_USER_DIRS = ("unitok/serve/",)


def _python_files(*folders):
    for folder in folders:
        yield from sorted(p for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the unitok modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                names = [module] + [f"{module}.{a.name}" for a in node.names]
            else:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            out.update(names)
    return out


def test_only_the_cli_and_the_api_root_import_the_tokenizer_hub():
    offenders = []
    for path in _python_files("unitok"):
        name = str(path.relative_to(ROOT))
        if name in HUB_USERS or name.startswith(HUB_USER_DIRS) or name == "unitok/tokenizer.py":
            continue
        if any(m == "unitok.tokenizer" or m.startswith("unitok.tokenizer.") for m in _imported_modules(path)):
            offenders.append(name)
    assert not offenders, f"import unitok.tokenizer (use unitok.sequence / space / layout): {offenders}"


def test_sequence_is_a_leaf():
    imported = {m for m in _imported_modules(PACKAGE / "sequence.py") if m.startswith("unitok")}
    # space.MANIFEST_VERSION is read inside functions (space -> layout -> sequence would be a cycle)
    assert imported <= {"unitok.errors", "unitok.errors.ConfigError", "unitok.files", "unitok.files.read_regular_file",
                        "unitok.space", "unitok.space.MANIFEST_VERSION", "unitok.space.check_space_version"}, imported


def test_files_and_errors_import_nothing_heavy():
    """unitok.files and unitok.errors sit below everything (the CLI's fast paths use them)."""
    for name in ("files.py", "errors.py"):
        assert not {m for m in _imported_modules(PACKAGE / name) if m.split(".")[0] in ("torch", "numpy", "av")}


@pytest.mark.parametrize("folder", ["unitok", "recipes", "tests", "benchmarks", "examples"])
def test_no_sys_path_edits(folder):
    offenders = []
    for path in _python_files(folder):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("insert", "append", "extend")
                    and ast.unparse(node.func.value) == "sys.path"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize("folder, most", [("unitok", 750), ("benchmarks", 950)])
def test_files_stay_small(folder, most):
    big = {str(p.relative_to(ROOT)): n for p in _python_files(folder)
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > most}
    assert not big, f"files over {most} lines: {big}"


def test_only_media_files_need_pyav(tmp_path):
    """PyAV is imported when a media file is read or written, not before: where it cannot be
    imported, the bundled suite still codes tensors, the training code imports, and opening an
    audio file says what is missing."""
    import os
    import subprocess
    import sys
    import wave

    with wave.open(str(tmp_path / "tone.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\x00\x10" * 800)
    script = """
import sys
sys.modules["av"] = None   # `import av` raises ImportError from here on
import torch, unitok, unitok.train
tok = unitok.load()
picture = unitok.Image(torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
assert tok.decode(tok.encode(["a picture", picture]))[1].width == 64
try:
    unitok.Audio.open(sys.argv[1])
except unitok.MediaError as e:
    assert "needs PyAV" in str(e) and "pip install av" in str(e), e
else:
    raise SystemExit("opened an audio file without PyAV")
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "tone.wav")], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
