"""PyAV, imported when a media file is first read or written, not when ``unitok`` is.

Tokenizers, their training recipes and the token-level tools (layouts, datasets, the model side)
work on tensors and arrays and never open a file through FFmpeg, so they run where PyAV is absent
(a training machine fed with arrays) and start without its import. Where PyAV is not installed,
the first use says so instead of ``import unitok`` failing.
"""

from __future__ import annotations

import importlib

from ..errors import MediaError


class _PyAV:
    """Stands for the ``av`` module: the first attribute looked up imports it."""

    _module = None

    def __getattr__(self, name: str):
        if _PyAV._module is None:
            try:
                _PyAV._module = importlib.import_module("av")
            except ImportError as e:
                raise MediaError(f"reading and writing media files needs PyAV, which cannot be imported here ({e}): "
                                 f"pip install av") from None
        return getattr(_PyAV._module, name)


av = _PyAV()


def lib_errors() -> tuple[type[BaseException], ...]:
    """What PyAV, torchvision and the OS raise for a bad file; the readers turn these into
    ``MediaError`` and let anything else (a bug) propagate. ``except lib_errors():`` evaluates it
    only once something was raised, so no handler imports PyAV."""
    found = (OSError, RuntimeError, ValueError, EOFError, UnicodeError)
    try:
        return (av.error.FFmpegError, *found)
    except MediaError:   # no PyAV: nothing of it can have raised
        return found
