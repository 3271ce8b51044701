"""The JSON wire format of the service, shared by the server's workers and the client.

A document is ``{"parts": [part, ...]}``; a part is one of:

- ``{"text": "..."}`` (a ``str``; JSON escapes carry lone surrogates, so any ``str`` round-trips) or
  ``{"text_base64": "..."}`` (a ``bytes`` text part);
- ``{"image" | "video" | "audio" | "media": {"file": "<base64 of a media file>"}}``: the worker
  opens it with ``unitok.media.open_media`` under the server's ``MediaLimits`` (``"media"``: any
  kind, sniffed from the content; the others must hold that kind);
- ``{"image": {"array": "<base64>", "shape": [C, H, W]}}`` (uint8), ``{"audio": {"array": ...,
  "shape": [C, N], "sample_rate": R}}`` (float32), ``{"video": {"array": ..., "shape": [T, 3, H,
  W], "fps": [num, den], "audio": {...}}}``: the exact values of an in-memory ``Image`` / ``Audio``
  / ``Video``, so the server encodes what a local ``encode`` would;
- ``{"<kind>": {"upload": "name"}}`` in a multipart request: the bytes of the uploaded file
  ``name`` (the server turns it into ``{"file": ...}`` before the worker sees it).

Decoded parts come back the same way (arrays, never files), so a client rebuilds bit-identical
``Image``, ``Video`` and ``Audio`` objects. Nothing here ever opens a path.
"""

from __future__ import annotations

import base64
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import MediaError

KINDS = ("image", "video", "audio", "media")
_DTYPES = {"image": np.uint8, "video": np.uint8, "audio": np.float32}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text, what: str) -> bytes:
    if not isinstance(text, str):
        raise MediaError(f"{what}: expected a base64 string, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as e:
        raise MediaError(f"{what}: not valid base64 ({e})") from None


# -- the client side: objects -> JSON ------------------------------------------------------------

def array_field(tensor, **extra) -> dict:
    a = np.ascontiguousarray(tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else tensor)
    return {"array": b64(a.tobytes()), "shape": list(a.shape), **extra}


def media_field(item) -> tuple[str, dict]:
    """An ``Image``, ``Video`` or ``Audio`` -> (kind, its array field)."""
    from ..media import Audio, Image, Video

    if isinstance(item, Image):
        return "image", array_field(item.pixels)
    if isinstance(item, Audio):
        return "audio", array_field(item.samples, sample_rate=item.sample_rate)
    if isinstance(item, Video):
        extra = {"fps": [item.fps.numerator, item.fps.denominator]}
        if item.audio is not None:
            extra["audio"] = media_field(item.audio)[1]
        return "video", array_field(item.frames, **extra)
    raise MediaError(f"cannot send an object of type {type(item).__name__}; expected str, bytes, Image, Video, "
                     f"Audio or a pathlib.Path to a media file")


def dump_part(item) -> dict:
    """One document part as the client sends it. A ``Path`` is read here, on the client: the
    server never opens a path."""
    if isinstance(item, str):
        return {"text": item}
    if isinstance(item, (bytes, bytearray)):
        return {"text_base64": b64(bytes(item))}
    if isinstance(item, Path):
        try:
            return {"media": {"file": b64(item.read_bytes())}}
        except OSError as e:
            raise MediaError(f"cannot read ({e.strerror or e})", item) from None
    kind, field = media_field(item)
    return {kind: field}


def dump_document(x) -> dict:
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    return {"parts": [dump_part(item) for item in items]}


# -- the worker side: JSON -> objects, under the server's limits ---------------------------------

def _array(field: dict, kind: str, what: str) -> np.ndarray:
    shape = field.get("shape")
    if not (isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise MediaError(f"{what}: 'shape' must be a list of positive integers, got {shape!r:.80}")
    data = unb64(field.get("array"), what)
    dtype = np.dtype(_DTYPES[kind])
    if len(data) != int(np.prod(shape, dtype=object)) * dtype.itemsize:
        raise MediaError(f"{what}: {len(data)} bytes do not hold a {dtype.name} array of shape {shape}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _checked(item, limits, what: str):
    """The limits a file reader checks, applied to an array sent as it is."""
    from ..media import Audio, Image
    from ..media.limits import _check_audio_format, _check_picture_size, _check_seconds

    if isinstance(item, Image):
        _check_picture_size(item.width, item.height, limits, what)
    elif isinstance(item, Audio):
        _check_audio_format(item.sample_rate, item.num_channels, limits, what)
        _check_seconds(item.duration, limits, what, "audio")
    else:
        _check_picture_size(item.width, item.height, limits, what)
        if item.num_frames > limits.max_frames:
            raise MediaError(f"video has {item.num_frames} frames, over the limit of {limits.max_frames} "
                             f"(MediaLimits.max_frames)", what)
        _check_seconds(item.duration, limits, what, "video")
        if item.audio is not None:
            _checked(item.audio, limits, what)
    return item


def _from_array(kind: str, field: dict, limits, what: str):
    import torch

    from ..media import Audio, Image, Video

    if kind == "image":
        return _checked(Image(torch.from_numpy(_array(field, kind, what))), limits, what)
    if kind == "audio":
        return _checked(Audio(torch.from_numpy(_array(field, kind, what)), field.get("sample_rate")), limits, what)
    if kind == "video":
        fps = field.get("fps")
        if not (isinstance(fps, list) and len(fps) == 2 and all(isinstance(v, int) for v in fps) and fps[1] > 0):
            raise MediaError(f"{what}: 'fps' must be [numerator, denominator], got {fps!r:.80}")
        sound = field.get("audio")
        audio = _from_array("audio", sound, limits, f"{what} (sound)") if isinstance(sound, dict) else None
        return _checked(Video(torch.from_numpy(_array(field, kind, what)), Fraction(*fps), audio), limits, what)
    raise MediaError(f"{what}: an array part must be an image, video or audio, not {kind!r}")


def load_part(part, limits, index: int):
    """One part of a request -> ``str``/``bytes``/``Image``/``Video``/``Audio``."""
    what = f"part {index}"
    if not isinstance(part, dict) or len(part) != 1:
        raise MediaError(f"{what}: expected an object with one key (text, text_base64, {', '.join(KINDS)})")
    (kind, value), = part.items()
    if kind == "text":
        if not isinstance(value, str):
            raise MediaError(f"{what}: 'text' must be a string")
        return value
    if kind == "text_base64":
        return unb64(value, what)
    if kind not in KINDS or not isinstance(value, dict):
        raise MediaError(f"{what}: unknown part {kind!r}; expected text, text_base64 or one of {', '.join(KINDS)} "
                         f"with a 'file' or 'array' field")
    if "file" in value:
        from ..media import open_media

        data = value["file"]   # bytes: a multipart upload the server put here; str: base64 in JSON
        data = data if isinstance(data, bytes) else unb64(data, what)   # its errors name the part already
        try:
            item = open_media(data, limits=limits)
        except MediaError as e:
            raise MediaError(e.reason, what) from None
        actual = type(item).__name__.lower()
        if kind != "media" and actual != kind:
            raise MediaError(f"sent as {kind}, but the file holds {'an' if actual[0] in 'aeiou' else 'a'} {actual}",
                             what)
        return item
    if "array" in value:
        return _from_array(kind, value, limits, what)
    raise MediaError(f"{what}: a {kind} part needs a 'file' (base64 of a media file) or an 'array' field")


def load_document(body, limits) -> list:
    from ..media import check_document_bytes

    parts = body.get("parts") if isinstance(body, dict) else None
    if not isinstance(parts, list):
        raise MediaError("the request must be a JSON object with a 'parts' list")
    out, total = [], 0
    for i, part in enumerate(parts):
        item = load_part(part, limits, i)
        if not isinstance(item, (str, bytes)):
            total = check_document_bytes(total, item, limits, f"part {i}")
        out.append(item)
    return out


# -- decoded parts, both ways --------------------------------------------------------------------

def dump_decoded(decoded) -> dict:
    parts = []
    for item in decoded:
        parts.append({"text": item} if isinstance(item, str) else dict([media_field(item)]))
    repairs = [{"position": r.position, "action": r.action, "reason": r.reason} for r in decoded.repairs]
    return {"parts": parts, "repairs": repairs}


def load_decoded(body: dict):
    """The JSON of ``/v1/decode`` -> a ``Decoded`` of ``str``/``Image``/``Video``/``Audio``."""
    from ..media import MediaLimits
    from ..sequence import Decoded, Repair

    # the server decoded these under its own limits: the client takes what it was sent
    trusting = MediaLimits(max_pixels=2**62, max_side=2**62, max_frames=2**62, max_seconds=2.0**62,
                           max_decoded_bytes=2**62, max_channels=2**31)
    items = [p["text"] if "text" in p else load_part(p, trusting, i) for i, p in enumerate(body["parts"])]
    return Decoded(items, [Repair(int(r["position"]), r["action"], r["reason"]) for r in body.get("repairs", [])])
