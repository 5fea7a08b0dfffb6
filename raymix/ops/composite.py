"""AGA's compositing kernels: move the masked subject (flip, rotation, scale, shift) and paste it
on a new background (Rahat et al., AGA, Sec. 4.3 and Fig. 5).

Images are ``uint8`` ``(3, H, W)`` tensors, masks ``bool`` ``(H, W)`` (``True`` on the subject).
The subject's transform is about the centre of its bounding box (the mask's pixels), so it
stays where it was unless shifted; what leaves the frame is cut.

**Exactness.** Without rotation and scaling the subject's pixels are only moved, never
resampled: the identity copies them, a flip mirrors them inside their box and a shift moves them
by whole pixels, so every subject pixel of the result equals a pixel of the input. Rotation and
scaling resample with bilinear interpolation on premultiplied colour (the colour weighted by the
mask), so the old background around the subject does not bleed into its edge; the transformed
mask is cut at one half. ``feather`` > 0 softens the paste inward from the mask's edge (a
Gaussian of that sigma in pixels), leaving the outside of the mask all background.
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF

__all__ = ["subject_box", "transform_subject", "paste", "composite"]


def subject_box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` of the mask's pixels, inclusive; ``None`` for an empty mask."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``x`` (``(..., H, W)``) moved by whole pixels, zeros where nothing moved in."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src_y, dst_y = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
    out[..., dst_y, dst_x] = x[..., src_y, src_x]
    return out


def transform_subject(image: torch.Tensor, mask: torch.Tensor, *, flip: bool = False, angle: float = 0.0,
                      scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The subject of ``image`` (``uint8`` ``(3, H, W)``) under ``mask`` (``bool`` ``(H, W)``)
    flipped left-right, rotated by ``angle`` degrees (counter-clockwise), scaled by ``scale``
    about its box centre, then shifted by ``shift`` = ``(dx, dy)`` pixels.

    Returns the moved image (``uint8``; only its pixels under the returned mask matter) and the
    moved mask (``bool``). Without rotation and scaling nothing is resampled (shifts round to
    whole pixels)."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be uint8 (3, H, W), got {image.dtype} {tuple(image.shape)}")
    if mask.shape != image.shape[1:] or mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool {tuple(image.shape[1:])}, got {mask.dtype} {tuple(mask.shape)}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    box = subject_box(mask)
    if box is None:
        return image, mask
    x0, y0, x1, y1 = box
    if flip:  # mirror inside the box: column x goes to x0 + x1 - x
        cols = torch.arange(image.shape[2])
        cols[x0:x1 + 1] = torch.arange(x1, x0 - 1, -1)
        image, mask = image[:, :, cols], mask[:, cols]
    if angle == 0 and scale == 1:
        dx, dy = round(shift[0]), round(shift[1])
        if dx or dy:
            image, mask = _shift(image, dx, dy), _shift(mask, dx, dy)
        return image, mask
    # Pixel i covers [i, i + 1): the box centre is the middle of its outer edges.
    cx, cy = (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2
    # Work on the part of the frame the subject comes from or can land in: the box, and the disc
    # its corners sweep (half its diagonal, scaled) around the shifted centre; 2 pixels of margin.
    h, w = mask.shape
    reach = math.hypot(x1 + 1 - x0, y1 + 1 - y0) / 2 * scale + 2
    tx, ty = cx + shift[0], cy + shift[1]
    rx0, ry0 = max(0, min(x0, math.floor(tx - reach))), max(0, min(y0, math.floor(ty - reach)))
    rx1, ry1 = min(w, max(x1 + 1, math.ceil(tx + reach))), min(h, max(y1 + 1, math.ceil(ty + reach)))
    alpha = mask[ry0:ry1, rx0:rx1].to(torch.float32).unsqueeze(0)
    premultiplied = torch.cat([image[:, ry0:ry1, rx0:rx1].to(torch.float32) * alpha, alpha])
    moved = TF.affine(premultiplied, angle=-float(angle), translate=[float(shift[0]), float(shift[1])],
                      scale=float(scale), shear=[0.0, 0.0], interpolation=TF.InterpolationMode.BILINEAR,
                      center=[cx - rx0, cy - ry0])
    weight = moved[3]
    out_image, out_mask = torch.zeros_like(image), torch.zeros_like(mask)
    out_image[:, ry0:ry1, rx0:rx1] = (moved[:3] / weight.clamp_min(1e-6)).round_().clamp_(0, 255).to(torch.uint8)
    out_mask[ry0:ry1, rx0:rx1] = weight >= 0.5
    return out_image, out_mask


def paste(subject: torch.Tensor, mask: torch.Tensor, background: torch.Tensor, *, feather: float = 0.0
          ) -> torch.Tensor:
    """``subject`` where ``mask`` is set, ``background`` elsewhere (all ``uint8`` ``(3, H, W)``,
    mask ``bool`` ``(H, W)``). With ``feather`` > 0 the subject fades into the background over
    about ``2 * feather`` pixels inside the mask's edge; without, the subject's pixels are copied
    exactly."""
    if subject.shape != background.shape:
        raise ValueError(f"subject {tuple(subject.shape)} and background {tuple(background.shape)} differ in shape")
    if feather <= 0:
        return torch.where(mask.unsqueeze(0), subject, background)
    hard = mask.to(torch.float32).unsqueeze(0)
    radius = max(1, int(round(3 * feather)))
    alpha = TF.gaussian_blur(hard, kernel_size=[2 * radius + 1] * 2, sigma=[float(feather)] * 2) * hard
    alpha = torch.where(alpha > 1 - 1e-4, torch.ones_like(alpha), alpha)  # the inside stays exact
    mixed = alpha * subject.to(torch.float32) + (1 - alpha) * background.to(torch.float32)
    return mixed.round_().clamp_(0, 255).to(torch.uint8)


def composite(image: torch.Tensor, mask: torch.Tensor, background: torch.Tensor, *, flip: bool = False,
              angle: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0),
              feather: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`transform_subject` then :func:`paste`: the augmented image and the pasted mask.
    ``background`` is resized to the image's size first if it differs (antialiased)."""
    if background.shape[1:] != image.shape[1:]:
        background = TF.resize(background, list(image.shape[1:]), antialias=True)
    subject, moved = transform_subject(image, mask, flip=flip, angle=angle, scale=scale, shift=shift)
    return paste(subject, moved, background, feather=feather), moved
