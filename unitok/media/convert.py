"""Conversions shared by the value types: numpy arrays or tensors to CPU tensors, integer and
float pixels to uint8, the channel axis to ``[C, H, W]``, alpha compositing, and which decoded
frame formats carry alpha."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import MediaError
from ._av import av


def _composite(rgba: torch.Tensor, background: tuple[int, int, int]) -> torch.Tensor:
    """``rgba: [..., 4, H, W]`` uint8 -> ``[..., 3, H, W]`` uint8, alpha-blended over ``background``."""
    rgb = rgba[..., :3, :, :].to(torch.int32)
    alpha = rgba[..., 3:, :, :].to(torch.int32)
    bg = torch.tensor(background, dtype=torch.int32).view(3, 1, 1)
    out = (rgb * alpha + bg * (255 - alpha) + 127) // 255
    return out.to(torch.uint8)


def _frame_has_alpha(fmt: av.VideoFormat) -> bool:
    # Palettes (GIF) may carry transparency; decode them with alpha and check.
    return fmt.has_palette or any(c.is_alpha for c in fmt.components)


def _to_uint8(x: torch.Tensor, what: str) -> torch.Tensor:
    """Integer arrays with values 0..255, or float arrays in [0, 1] -> uint8."""
    if x.dtype == torch.uint8:
        return x
    if x.dtype == torch.bool or x.is_complex():
        raise MediaError(f"{what}: dtype {x.dtype} is not supported; pass uint8 or float in [0, 1]")
    if x.is_floating_point():
        if x.numel() and not torch.isfinite(x).all():
            raise MediaError(f"{what}: float pixels contain NaN or infinity")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise MediaError(f"{what}: float pixels must lie in [0, 1], got "
                             f"[{x.min().item():.4g}, {x.max().item():.4g}]")
        return (x.to(torch.float32) * 255).round_().to(torch.uint8)
    if x.numel() and (x.min() < 0 or x.max() > 255):
        raise MediaError(f"{what}: integer pixels must lie in 0..255, got {x.min().item()}..{x.max().item()}; "
                         f"convert 16-bit data first")
    return x.to(torch.uint8)


def _as_tensor(x, what: str) -> tuple[torch.Tensor, bool]:
    """``(tensor on CPU, came_from_numpy)``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.uint16, torch.uint32, torch.uint64):   # few torch ops take these: widen
            x = x.to(torch.int64)
        return x, False
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint16:  # torch has limited uint16 support: widen before checking range
            x = x.astype(np.int32)
        try:
            return torch.from_numpy(np.ascontiguousarray(x)), True
        except TypeError as e:
            raise MediaError(f"{what}: unsupported numpy dtype {x.dtype}") from e
    raise MediaError(f"{what}: expected a numpy array or torch tensor, got {type(x).__name__}")


def _channels_first(x: torch.Tensor, channels_last: bool | None, from_numpy: bool,
                    what: str, allowed=(1, 3, 4)) -> torch.Tensor:
    """``[..., H, W, C]`` or ``[..., C, H, W]`` -> ``[..., C, H, W]``.

    When both readings are possible (e.g. a 3x3x3 array) and ``channels_last`` is None, numpy
    arrays are taken as channels-last and tensors as channels-first, their usual conventions.
    """
    first_ok, last_ok = x.shape[-3] in allowed, x.shape[-1] in allowed
    if channels_last is None:
        if first_ok and last_ok:
            channels_last = from_numpy
        elif first_ok or last_ok:
            channels_last = last_ok
        else:
            raise MediaError(f"{what}: cannot find the channel axis in shape {tuple(x.shape)}; "
                             f"expected {allowed} channels first or last")
    if channels_last:
        if not last_ok:
            raise MediaError(f"{what}: shape {tuple(x.shape)} has {x.shape[-1]} channels last, "
                             f"expected one of {allowed}")
        return x.movedim(-1, -3).contiguous()
    if not first_ok:
        raise MediaError(f"{what}: shape {tuple(x.shape)} has {x.shape[-3]} channels first, "
                         f"expected one of {allowed}")
    return x.contiguous()
