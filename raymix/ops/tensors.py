"""Shape, layout and dtype helpers shared by the kernels.

Kernels take ``uint8`` images shaped ``(C, H, W)`` or ``(N, C, H, W)`` (torchvision's layout) in
either memory format: contiguous (``NCHW`` in memory) or channels-last (``NHWC`` in memory, what
a Ray Data batch of ``(N, H, W, C)`` arrays is once permuted). Results keep the input's memory
format. The methods work channels-last throughout, so a Ray batch goes in and comes out without a
transpose. Float images are ``float32`` in ``[0, 1]`` (torchvision's convention).

Some conversions take a NumPy path on the CPU because torch's are several times slower there for
``uint8`` (float -> ``uint8`` casts, interleaving channels); results are identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def as_batch(images: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(C, H, W)`` -> ``(1, C, H, W)``; returns the batch (a view) and whether a dim was added."""
    if images.ndim == 3:
        return images.unsqueeze(0), True
    if images.ndim == 4:
        return images, False
    raise ValueError(f"expected an image (C, H, W) or a batch (N, C, H, W), got shape {tuple(images.shape)}")


def unbatch(images: torch.Tensor, added: bool) -> torch.Tensor:
    return images[0] if added else images


def require_uint8(images: torch.Tensor, what: str = "images") -> None:
    if images.dtype != torch.uint8:
        raise TypeError(f"{what} must be uint8, got {images.dtype}")


def is_channels_last(images: torch.Tensor) -> bool:
    """Whether an ``(N, C, H, W)`` batch or ``(C, H, W)`` image is ``NHWC``/``HWC`` in memory."""
    order = (0, 2, 3, 1) if images.ndim == 4 else (1, 2, 0)
    return images.permute(*order).is_contiguous()


def interleave(planes: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``(..., C, H, W)`` -> ``out`` ``(..., H, W, C)``, one channel at a time (a copy per channel is
    several times faster than NumPy's transposing copy, whose inner loop would be ``C`` long)."""
    for c in range(planes.shape[-3]):
        np.copyto(out[..., c], planes[..., c, :, :], casting="unsafe")
    return out


def repeat_channels(planes: torch.Tensor, channels: int) -> torch.Tensor:
    """A one-channel ``(1, H, W)`` image or ``(N, 1, H, W)`` batch repeated to ``channels``
    channels, channels-last in memory (CPU)."""
    batch, added = as_batch(planes)
    n, _, h, w = batch.shape
    out = torch.empty((n, h, w, channels), dtype=planes.dtype)
    src = batch[:, 0].detach().numpy()
    for c in range(channels):
        np.copyto(out.numpy()[..., c], src)
    return unbatch(out.permute(0, 3, 1, 2), added)


def nhwc(images: torch.Tensor) -> torch.Tensor:
    """A batch ``(N, C, H, W)`` as a contiguous ``(N, H, W, C)`` tensor: a view for channels-last
    batches, a copy otherwise."""
    view = images.permute(0, 2, 3, 1)
    if view.is_contiguous():
        return view
    if images.device.type != "cpu":
        return view.contiguous()
    n, c, h, w = images.shape
    out = torch.empty((n, h, w, c), dtype=images.dtype)
    interleave(images.detach().numpy(), out.numpy())
    return out


def from_nhwc(images: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """An ``(N, H, W, C)`` result as an ``(N, C, H, W)`` batch in ``like``'s memory format."""
    out = images.permute(0, 3, 1, 2)
    return out if is_channels_last(like) else out.contiguous()


def to_channels_last(images: torch.Tensor) -> torch.Tensor:
    """An ``(N, C, H, W)`` batch in channels-last memory (the batch itself when it already is)."""
    return nhwc(images).permute(0, 3, 1, 2)


def stack(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack same-shaped ``(C, H, W)`` images into a batch, channels-last when they are."""
    images = list(images)
    if images and all(is_channels_last(im) for im in images):
        return torch.stack([im.permute(1, 2, 0) for im in images]).permute(0, 3, 1, 2)
    return torch.stack(images)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` -> ``float32`` in ``[0, 1]``; float input is returned as is."""
    if images.dtype == torch.uint8:
        return images.float().mul_(1.0 / 255.0)
    return images


def round_to_uint8(values: torch.Tensor, out: torch.Tensor | None = None, clip: bool = True) -> torch.Tensor:
    """Float in ``[0, 255]`` scale -> ``uint8`` (into ``out`` if given), rounding half up and
    clipping (``clip=False`` when the values cannot leave ``[0, 255]``). Uses ``values`` as scratch.
    The result keeps ``values``' memory layout."""
    values = values.add_(0.5)
    if clip:
        values.clamp_(0.0, 255.0)
    if values.device.type != "cpu":
        return values.to(torch.uint8) if out is None else out.copy_(values)
    src = values.detach().numpy()
    if out is None:
        return torch.from_numpy(src.astype(np.uint8))
    if out.ndim in (3, 4) and is_channels_last(out) and not is_channels_last(values) and values.is_contiguous():
        # Planes into a channels-last image: cast, then interleave one channel at a time.
        order = (0, 2, 3, 1) if out.ndim == 4 else (1, 2, 0)
        interleave(src.astype(np.uint8), out.numpy().transpose(order))
    else:
        np.copyto(out.numpy(), src, casting="unsafe")
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
    """A ``(N, H, W, C)`` array -> an ``(N, C, H, W)`` channels-last tensor without a transpose.

    Shares memory with ``images`` when the array is writable and contiguous (the kernels never
    write into their inputs); read-only arrays (Ray Data's) are copied once, which is a plain
    memory copy in this layout."""
    arr = np.asarray(images)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C", copy=True)
    return torch.from_numpy(arr).permute(0, 3, 1, 2)


def nchw_to_nhwc(images: torch.Tensor) -> np.ndarray:
    """An ``(N, C, H, W)`` tensor -> an ``(N, H, W, C)`` array: a view of a channels-last tensor's
    memory, else a new array."""
    images = images.detach().cpu()
    view = images.permute(0, 2, 3, 1)
    if view.is_contiguous():
        return view.numpy()
    n, c, h, w = images.shape
    return interleave(images.numpy(), np.empty((n, h, w, c), dtype=images.numpy().dtype))
