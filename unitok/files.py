"""File facts every layer may need without loading torch: where the bundled assets live, and a
file's sha256 (read in blocks, so a checkpoint of any size is hashed in bounded memory)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def regular_file_size(path: str | Path, error: type[Exception], what: str = "file") -> int:
    """The size of ``path`` when it is a regular file (links followed); otherwise ``error`` naming
    it. A FIFO would block a reader for ever and a device (``/dev/zero``) never ends, so special
    files are refused before anything opens them."""
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (OSError, ValueError) as e:    # ValueError: a NUL byte in the name
        raise error(f"{path}: cannot access the {what} ({getattr(e, 'strerror', None) or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(
            st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a special file"
        raise error(f"{path}: is {kind}, not a regular {what}")
    return st.st_size


def read_regular_file(path: str | Path, max_bytes: int, error: type[Exception], what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see :func:`regular_file_size`); a
    file that grows past the limit while it is read is refused too."""
    size = regular_file_size(path, error, what)
    if size > max_bytes:
        raise error(f"{path}: {size} bytes, more than a {what} may have ({max_bytes})")
    try:
        with open(path, "rb") as f:   # read(n) allocates n bytes first: ask for the size, then any growth
            data = f.read(size + 1)
            if len(data) > size:
                data += f.read(max_bytes + 1 - len(data))
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: more than {max_bytes} bytes, more than a {what} may have")
    return data


def contained(folder: str | Path, name: str, error: type[Exception], what: str = "file") -> Path:
    """``folder / name`` when it stays inside ``folder`` (links resolved): a file a checkpoint or a
    dataset names must be its own, never ``../other/`` or ``/etc/...``."""
    folder = Path(folder)
    path = folder / name
    try:
        inside = path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError, ValueError):   # a link loop, a NUL byte
        inside = False
    if not inside:
        raise error(f"{folder}: names the {what} {name!r}, which is outside the folder; a checkpoint or dataset "
                    f"may only name its own files")
    return path



def walk_files(root: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every entry under the folder ``root`` that is not a folder (special files and broken links
    included: a caller refuses them by name rather than letting them vanish), and the folders that
    could not be listed, with the reason (a path longer than PATH_MAX, no permission): one such
    folder is reported, it does not stop the listing. Links to folders are not followed, so a link
    loop cannot recurse. Unsorted."""
    files: list[Path] = []
    unlisted: list[tuple[Path, str]] = []

    def failed(e: OSError) -> None:
        unlisted.append((Path(e.filename if e.filename is not None else root), e.strerror or str(e)))

    for folder, _, names in os.walk(root, onerror=failed):
        files.extend(Path(folder, n) for n in names)
    return files, unlisted

MAX_JSON_BYTES = 256 * 1024 * 1024   # a manifest, index or config larger than this is damaged, not read


def read_json_file(path: str | Path, error: type[Exception], what: str = "JSON file",
                   max_bytes: int = MAX_JSON_BYTES):
    """The JSON in a regular file, or ``error`` naming the file: special files, oversized files,
    invalid UTF-8 or JSON, numbers of thousands of digits and nesting deeper than Python's stack
    are all refused the same way, never raised as another exception."""
    import json

    raw = read_regular_file(path, max_bytes, error, what)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:   # JSONDecodeError, UnicodeDecodeError, int digits, depth
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:300]
        raise error(f"{path}: not valid JSON ({reason}); the file is truncated or damaged") from None


def write_atomic(path: str | Path, data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary name beside it and a rename, so a reader
    sees the old file or the new one, never half of one; a failed write (a full disk, a read-only
    folder) removes its temporary file and raises. ``durable``: fsync before the rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
