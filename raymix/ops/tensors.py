"""Shape and dtype helpers shared by the kernels.

Kernels take ``uint8`` images shaped ``(C, H, W)`` or ``(N, C, H, W)`` (torchvision's layout) and
work on contiguous batches. Float images are ``float32`` in ``[0, 1]`` (torchvision's convention).

Some conversions take a NumPy path on the CPU because torch's are several times slower there for
``uint8`` (float -> ``uint8`` casts, NHWC <-> NCHW transposes); results are identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def as_batch(images: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(C, H, W)`` -> ``(1, C, H, W)``; returns a contiguous batch and whether a dim was added."""
    if images.ndim == 3:
        return images.unsqueeze(0).contiguous(), True
    if images.ndim == 4:
        return images.contiguous(), False
    raise ValueError(f"expected an image (C, H, W) or a batch (N, C, H, W), got shape {tuple(images.shape)}")


def unbatch(images: torch.Tensor, added: bool) -> torch.Tensor:
    return images[0] if added else images


def require_uint8(images: torch.Tensor, what: str = "images") -> None:
    if images.dtype != torch.uint8:
        raise TypeError(f"{what} must be uint8, got {images.dtype}")


def stack(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack same-shaped images into a batch."""
    return torch.stack(list(images))


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` -> ``float32`` in ``[0, 1]``; float input is returned as is."""
    if images.dtype == torch.uint8:
        return images.float().mul_(1.0 / 255.0)
    return images


def round_to_uint8(values: torch.Tensor, out: torch.Tensor | None = None, clip: bool = True) -> torch.Tensor:
    """Float in ``[0, 255]`` scale -> ``uint8`` (into ``out`` if given), rounding half up and
    clipping (``clip=False`` when the values cannot leave ``[0, 255]``). Uses ``values`` as scratch."""
    values = values.add_(0.5)
    if clip:
        values.clamp_(0.0, 255.0)
    if values.device.type != "cpu":
        return values.to(torch.uint8) if out is None else out.copy_(values)
    if out is None:
        return torch.from_numpy(values.numpy().astype(np.uint8))
    np.copyto(out.numpy(), values.numpy(), casting="unsafe")
    return out


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float in ``[0, 1]`` -> ``uint8``, rounding half up and clipping; ``uint8`` as is."""
    if images.dtype == torch.uint8:
        return images
    return round_to_uint8(images.mul(255.0))


def per_sample_list(values, n: int) -> list:
    """A scalar or ``n`` per-sample values (sequence or tensor) as a Python list of ``n``."""
    if isinstance(values, (int, float)):
        return [values] * n
    if isinstance(values, (list, tuple)):
        if len(values) == 1:
            return list(values) * n
        if len(values) != n:
            raise ValueError(f"expected {n} per-sample values, got {len(values)}")
        return list(values)
    t = torch.as_tensor(values).reshape(-1)
    if t.numel() == 1:
        return [t.item()] * n
    if t.numel() != n:
        raise ValueError(f"expected {n} per-sample values, got {t.numel()}")
    return t.tolist()


def per_sample(values: float | Sequence[float] | torch.Tensor, n: int, *, dtype=torch.float32,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """A scalar or one value per sample as an ``(N, 1, 1, 1)`` tensor that broadcasts over images."""
    t = torch.as_tensor(values, dtype=dtype, device=device)
    if t.ndim == 0:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"expected {n} per-sample values, got {t.numel()}")
    return t.reshape(n, 1, 1, 1)


def nhwc_to_nchw(images: np.ndarray) -> torch.Tensor:
    """A ``(N, H, W, C)`` array (possibly read-only) -> a new contiguous ``(N, C, H, W)`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))


def nchw_to_nhwc(images: torch.Tensor) -> np.ndarray:
    """A ``(N, C, H, W)`` tensor -> a new contiguous ``(N, H, W, C)`` array."""
    planes = images.detach().cpu().numpy()
    return np.stack([planes[:, c] for c in range(planes.shape[1])], axis=-1)
