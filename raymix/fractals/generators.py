"""Procedural fractal images: IFS chaos game and escape-time orbit traps.

PixMix (Hendrycks et al., 2022) and IPMix (Huang et al., 2023) blend training images with colour
fractals; LayerMix (Ahmad et al., 2025, Sec. 3.2) with grayscale ones flipped at random; DiffuseMix
(Islam et al., 2024, Sec. 3) with about 100 of them. PixMix downloaded its 14,230 fractals; this
module makes them instead, with two families of generators:

* **IFS chaos game** (Barnsley; FractalDB, Kataoka et al., ACCV 2020): a system of 2..K random
  contractive affine maps ``x -> A x + b`` chosen with probabilities proportional to ``|det A|``.
  Many points are iterated in parallel (and several systems at once); the image is the log-density
  of the attractor coloured by which maps the points went through ("flame" colouring). A system is
  kept only if its *filling rate* (FractalDB: occupied pixels / all pixels, 100,000 points on a
  512x512 canvas with a 6-pixel margin, threshold 0.2) lies in the accepted range.
* **Escape-time orbit traps** (IPMix, Sec. 4, "orbit trap" complex fractals): ``z -> z^p + c`` on a
  pixel grid (Mandelbrot: ``z0 = 0``, ``c`` = pixel; Julia: ``z0`` = pixel, ``c`` fixed near the
  Mandelbrot boundary), coloured by the smallest distance of each orbit to a trap (point, line,
  circle or cross). Near-uniform images are rejected.

Everything here is pure and batched: tensors in, tensors out, no I/O, and every random draw comes
from the ``torch.Generator`` passed in, so the same generator state gives the same images. Outputs
are ``uint8`` ``(N, 3, S, S)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "IFSParams",
    "IFSResult",
    "OrbitTrapParams",
    "OrbitTrapResult",
    "FRACTALDB_FILLING_RATE",
    "SVD_FILLING_RATE",
    "sample_ifs",
    "chaos_game",
    "render_ifs",
    "ifs_batch",
    "sample_orbit_trap",
    "render_orbit_trap",
    "orbit_trap_batch",
    "cosine_palette",
    "to_grayscale",
    "structure_stats",
    "is_structured",
]

#: FractalDB's accepted filling-rate range: its category search keeps a system when at least 20% of
#: the pixels are occupied (``--rate 0.2``) and sets no upper bound. With FractalDB's uniform
#: sampling most systems collapse to lines and dust, which this bound removes.
FRACTALDB_FILLING_RATE = (0.2, 1.0)

#: Range used with the sigma-factor sampler (the default). Its systems rarely collapse, so the same
#: measure is used to drop the two failure modes it does have, judged on contact sheets of 384
#: systems: below 4% a thin line or a few specks, above 25% mostly a space-filling cloud.
SVD_FILLING_RATE = (0.04, 0.25)

# FractalDB measures the filling rate with 100,000 points on a 512x512 canvas with a 6-pixel
# margin, the attractor stretched to fill it; we keep that point density and margin at any size.
_FILL_POINTS_PER_PIXEL = 100_000 / 512**2
_FILL_MARGIN = 6 / 512

_TRAPS = ("point", "line", "circle", "cross")


class _Rows:
    """Dataclass of tensors with one row per image: select rows."""

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, f) for f in self.__dataclass_fields__)

    def __len__(self) -> int:
        return self._fields()[0].shape[0]

    def select(self, rows):
        return type(self)(*(t[rows] for t in self._fields()))


def _uniform(shape, generator, low=0.0, high=1.0, device=None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device) * (high - low) + low


# --------------------------------------------------------------------------------------------------
# Colour


def cosine_palette(t: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Cosine colour palette ``a + b * cos(2 pi (c t + d))`` (Inigo Quilez), clipped to [0, 1].

    ``t``: ``(B, ...)`` floats; ``coeffs``: ``(B, 4, 3)`` rows ``a, b, c, d``. Returns ``(B, 3, ...)``.
    """
    shape = (coeffs.shape[0], 4, 3) + (1,) * (t.dim() - 1)
    a, b, c, d = coeffs.reshape(shape).unbind(1)
    return (a + b * torch.cos(2 * math.pi * (c * t.unsqueeze(1) + d))).clamp_(0.0, 1.0)


def _sample_palettes(batch: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """Random bright palettes: offset ~0.5, amplitude ~0.5, one or two cycles, random phases."""
    a = _uniform((batch, 1, 3), generator, 0.4, 0.6, device)
    b = _uniform((batch, 1, 3), generator, 0.35, 0.5, device)
    c = _uniform((batch, 1, 1), generator, 0.5, 1.5, device) * _uniform((batch, 1, 3), generator, 0.8, 1.2, device)
    d = _uniform((batch, 1, 3), generator, 0.0, 1.0, device)
    return torch.cat([a, b, c, d], dim=1)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)


def to_grayscale(images: torch.Tensor, num_output_channels: int = 1) -> torch.Tensor:
    """ITU-R 601-2 luma of ``uint8`` ``(..., 3, H, W)`` images, as torchvision's ``rgb_to_grayscale``.

    Integer arithmetic, so the result is exact and the same on every device.
    """
    if images.shape[-3] != 3:
        raise ValueError(f"expected 3 channels, got shape {tuple(images.shape)}")
    r, g, b = images.to(torch.int32).unbind(-3)
    # 0.299, 0.587, 0.114 in 1/1000ths, rounded half up.
    gray = ((r * 299 + g * 587 + b * 114 + 500) // 1000).to(torch.uint8).unsqueeze(-3)
    if num_output_channels == 3:
        return gray.expand(*gray.shape[:-3], 3, *gray.shape[-2:])
    if num_output_channels != 1:
        raise ValueError("num_output_channels must be 1 or 3")
    return gray


# --------------------------------------------------------------------------------------------------
# Structure statistics (rejecting boring images, and the tests' notion of "a real fractal")


def structure_stats(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image statistics of ``uint8`` ``(N, 3, H, W)`` images, computed on the luma.

    ``std``: standard deviation of the luma in [0, 255]. ``edge_density``: fraction of pixels whose
    horizontal or vertical neighbour differs by more than 16 levels. ``busy_tiles``: fraction of the
    4x4 tiles of the image with an edge density above 2% (low when most of it is flat).
    ``neighbour_corr``: correlation between horizontally adjacent pixels (about 0 for white noise,
    near 1 for smooth images). Sums are taken in integers, so the numbers do not depend on thread
    count or device.
    """
    y = to_grayscale(images).squeeze(-3).to(torch.int64)
    n = y.shape[-1] * y.shape[-2]
    s1 = y.sum((-2, -1))
    s2 = (y * y).sum((-2, -1))
    var = (s2 * n - s1 * s1).to(torch.float64) / (n * n)
    std = var.clamp(min=0).sqrt()
    dx = (y[..., :, 1:] - y[..., :, :-1]).abs() > 16
    dy = (y[..., 1:, :] - y[..., :-1, :]).abs() > 16
    edges = torch.zeros_like(y, dtype=torch.bool)
    edges[..., :, 1:] |= dx
    edges[..., 1:, :] |= dy
    edge_density = edges.sum((-2, -1)).to(torch.float64) / n
    H, W = y.shape[-2:]
    tiles = edges[..., : H // 4 * 4, : W // 4 * 4].reshape(*y.shape[:-2], 4, H // 4, 4, W // 4)
    busy = (tiles.sum((-3, -1)) * 50 > (H // 4) * (W // 4)).sum((-2, -1)).to(torch.float64) / 16
    left, right = y[..., :, :-1], y[..., :, 1:]
    m = left.shape[-1] * left.shape[-2]
    sl, sr = left.sum((-2, -1)), right.sum((-2, -1))
    cov = ((left * right).sum((-2, -1)) * m - sl * sr).to(torch.float64)
    vl = ((left * left).sum((-2, -1)) * m - sl * sl).to(torch.float64)
    vr = ((right * right).sum((-2, -1)) * m - sr * sr).to(torch.float64)
    corr = cov / (vl * vr).sqrt().clamp(min=1e-12)
    return {"std": std, "edge_density": edge_density, "busy_tiles": busy, "neighbour_corr": corr}


def is_structured(
    images: torch.Tensor,
    min_std: float = 10.0,
    edge_density: tuple[float, float] = (0.02, 0.6),
    min_neighbour_corr: float = 0.5,
    min_busy_tiles: float = 0.0,
) -> torch.Tensor:
    """``(N,)`` bool: not near-uniform (luma std), some but not all pixels on edges, not noise, and
    (with ``min_busy_tiles``) structure spread over the frame rather than in one corner."""
    s = structure_stats(images)
    return (
        (s["busy_tiles"] >= min_busy_tiles)
        & (s["std"] >= min_std)
        & (s["edge_density"] >= edge_density[0])
        & (s["edge_density"] <= edge_density[1])
        & (s["neighbour_corr"] >= min_neighbour_corr)
    )


# --------------------------------------------------------------------------------------------------
# IFS chaos game


@dataclass(frozen=True)
class IFSParams(_Rows):
    """A batch of ``B`` iterated function systems with up to ``K`` affine maps each.

    ``linear`` ``(B, K, 2, 2)``, ``shift`` ``(B, K, 2)``: map ``k`` sends ``x`` to
    ``linear[k] @ x + shift[k]``. ``probs`` ``(B, K)``: selection probabilities, zero for unused
    slots. ``hue`` ``(B, K)``: each map's colour coordinate in [0, 1]. ``palette`` ``(B, 4, 3)``.
    """

    linear: torch.Tensor
    shift: torch.Tensor
    probs: torch.Tensor
    hue: torch.Tensor
    palette: torch.Tensor

    @property
    def n_maps(self) -> torch.Tensor:
        return (self.probs > 0).sum(1)


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def sample_ifs(
    batch: int,
    generator: torch.Generator,
    *,
    n_maps: tuple[int, int] = (2, 4),
    sampler: str = "svd",
    device: torch.device | str | None = None,
) -> IFSParams:
    """Sample ``batch`` random contractive IFS with ``n_maps[0]..n_maps[1]`` maps each (inclusive).

    ``sampler="svd"`` (default): each map is ``R(theta) diag(s1, s2) R(phi) D`` with a random
    reflection ``D``, so its singular values ``1 > s1 >= s2 >= 0`` are drawn directly; the
    "sigma factor" ``sum_k (s1_k + 2 s2_k)`` is drawn from ``[(5 + N) / 2, (6 + N) / 2]`` for ``N``
    maps, the range in which Anderson & Farrell (WACV 2022, "Improving fractal pre-training", cited
    by IPMix) find that random systems give well-spread, non-degenerate attractors.
    ``sampler="fractaldb"``: FractalDB's sampling, all six parameters ``U(-1, 1)``, except that a map
    whose largest singular value is 1 or more is drawn again (FractalDB keeps such maps and drops
    the diverging points). Shifts are ``U(-1, 1)``; probabilities are ``|det A|`` normalised (both
    FractalDB).
    """
    lo, hi = n_maps
    if not 1 <= lo <= hi:
        raise ValueError(f"n_maps must be 1 <= low <= high, got {n_maps}")
    K = hi
    counts = torch.randint(lo, hi + 1, (batch,), generator=generator, device=device)
    used = torch.arange(K, device=device) < counts[:, None]
    if sampler == "svd":
        linear = _svd_maps(batch, K, counts, used, generator, device)
    elif sampler == "fractaldb":
        linear = _uniform_contractive_maps(batch, K, generator, device)
    else:
        raise ValueError(f"unknown IFS sampler {sampler!r}; expected 'svd' or 'fractaldb'")
    shift = _uniform((batch, K, 2), generator, -1.0, 1.0, device)
    det = torch.linalg.det(linear).abs() * used
    probs = det / det.sum(1, keepdim=True).clamp(min=1e-12)
    hue = _uniform((batch, K), generator, device=device)
    palette = _sample_palettes(batch, generator, device)
    return IFSParams(linear, shift, probs, hue, palette)


def _svd_maps(batch, K, counts, used, generator, device) -> torch.Tensor:
    # Sigma factor alpha in [(5+N)/2, (6+N)/2], split over the maps with a flat Dirichlet; a split
    # that gives one map more than 3 (= the most s1 + 2 s2 can be with s < 1) is drawn again.
    n = counts.to(torch.float32)
    alpha = (5.0 + n) / 2 + _uniform((batch,), generator, device=device)
    share = torch.empty(batch, K, device=device)
    todo = torch.ones(batch, dtype=torch.bool, device=device)
    for _ in range(1000):
        e = -torch.log(_uniform((batch, K), generator, 1e-12, 1.0, device)) * used
        w = e / e.sum(1, keepdim=True)
        s = alpha[:, None] * w
        ok = (s <= 2.97).all(1)
        share = torch.where((todo & ok)[:, None], s, share)
        todo &= ~ok
        if not todo.any():
            break
    else:  # pragma: no cover - the bound is loose (alpha/N <= 1.75 < 2.97 on average)
        share = torch.where(todo[:, None], (alpha / n)[:, None].expand(-1, K), share)
    # s1 + 2 s2 = share with 0 <= s2 <= s1 < 1  =>  s1 in [max(share/3, share - 2), min(share, 1)).
    s1_lo = torch.maximum(share / 3, share - 2)
    s1_hi = torch.minimum(share, torch.full_like(share, 0.99))
    s1 = s1_lo + (s1_hi - s1_lo).clamp(min=0) * _uniform((batch, K), generator, device=device)
    s2 = ((share - s1) / 2).clamp(0.0, 0.99)
    s2 = torch.minimum(s2, s1)
    theta = _uniform((batch, K), generator, 0.0, 2 * math.pi, device)
    phi = _uniform((batch, K), generator, 0.0, 2 * math.pi, device)
    flip = torch.where(_uniform((batch, K, 2), generator, device=device) < 0.5, -1.0, 1.0)
    sigma = torch.diag_embed(torch.stack([s1, s2], -1))
    return _rotation(theta) @ sigma @ _rotation(phi) @ torch.diag_embed(flip)


def _uniform_contractive_maps(batch, K, generator, device) -> torch.Tensor:
    linear = _uniform((batch, K, 2, 2), generator, -1.0, 1.0, device)
    for _ in range(1000):
        bad = torch.linalg.matrix_norm(linear, ord=2) >= 1.0
        if not bad.any():
            break
        fresh = _uniform((batch, K, 2, 2), generator, -1.0, 1.0, device)
        linear = torch.where(bad[..., None, None], fresh, linear)
    return linear


_CHOICE_BITS = 12  # map choices are drawn from a 4096-entry table: probabilities to 1/4096


def _choice_table(probs: torch.Tensor) -> torch.Tensor:
    """``(B * 4096,)`` int32 table of flat map indices (``b * K + k``), map ``k`` filling a share of
    its system's 4096 slots proportional to its probability."""
    B, K = probs.shape
    n = 1 << _CHOICE_BITS
    cum = probs.to(torch.float64).cumsum(1)
    cum = cum / cum[:, -1:]
    centres = (torch.arange(n, dtype=torch.float64, device=probs.device) + 0.5) / n
    local = torch.searchsorted(cum.contiguous(), centres.expand(B, n).contiguous()).clamp_(max=K - 1)
    base = (torch.arange(B, device=probs.device) * K)[:, None]
    return (local + base).to(torch.int32).reshape(-1)


def _random_slots(batch: int, n: int, generator: torch.Generator, device) -> torch.Tensor:
    """``(batch, n)`` int32 uniform on ``[0, 4096)``: four 16-bit draws per 64-bit random number."""
    words = torch.randint(-(2**63), 2**63 - 1, (batch, (n + 3) // 4), dtype=torch.int64,
                          generator=generator, device=device)
    return (words.view(torch.int16)[:, :n].to(torch.int32) & ((1 << _CHOICE_BITS) - 1))


def chaos_game(
    params: IFSParams,
    generator: torch.Generator,
    *,
    n_points: int = 2048,
    n_steps: int = 96,
    burn_in: int = 12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the chaos game for every system at once with ``n_points`` walkers each.

    Walkers start on the attractor (at the fixed point of a map chosen with the map
    probabilities), take ``burn_in`` unrecorded steps to spread out, then record ``n_steps`` steps.
    Each step picks one map per walker with the system's probabilities and moves the walker; its
    colour coordinate moves half-way to the map's hue (flame colouring). Returns ``x``, ``y`` and
    ``colour``, each ``(B, n_steps * n_points)`` in step order.
    """
    B, K = params.probs.shape
    device = params.linear.device
    table = _choice_table(params.probs)
    slot_base = (torch.arange(B, device=device, dtype=torch.int32) << _CHOICE_BITS)[:, None]

    def pick() -> torch.Tensor:
        slots = _random_slots(B, n_points, generator, device) + slot_base
        return torch.index_select(table, 0, slots.reshape(-1))  # (B * P,) flat map indices

    # One contiguous row per coefficient: x' = a x + b y + e, y' = c x + d y + f; then the hue.
    coef = torch.cat([params.linear.reshape(B, K, 4), params.shift, params.hue[..., None]], -1)
    coef = coef.reshape(B * K, 7).T.contiguous()
    eye = torch.eye(2, device=device)
    fixed = torch.linalg.solve(eye - params.linear, params.shift.unsqueeze(-1)).reshape(B * K, 2)
    start = pick()
    px = torch.index_select(fixed[:, 0].contiguous(), 0, start)
    py = torch.index_select(fixed[:, 1].contiguous(), 0, start)
    col = torch.index_select(coef[6], 0, start)
    xs = torch.empty((B, n_steps, n_points), device=device)
    ys = torch.empty_like(xs)
    cs = torch.empty_like(xs)
    for step in range(burn_in + n_steps):
        idx = pick()
        a, b, c, d, e, f, hue = (torch.index_select(row, 0, idx) for row in coef)
        px, py = a.mul_(px).addcmul_(b, py).add_(e), c.mul_(px).addcmul_(d, py).add_(f)
        col = hue.add_(col).mul_(0.5)
        if step >= burn_in:
            k = step - burn_in
            xs[:, k], ys[:, k], cs[:, k] = px.view(B, -1), py.view(B, -1), col.view(B, -1)
    return xs.view(B, -1), ys.view(B, -1), cs.view(B, -1)


def _pixel_index(x: torch.Tensor, y: torch.Tensor, size: int, margin: float, keep_aspect: bool) -> torch.Tensor:
    """Flat pixel indices ``b * S^2 + row * S + col`` of points ``(B, M)`` fitted into ``S x S``
    canvases with a ``margin`` (fraction of ``S``) on each side."""
    B = x.shape[0]
    lo = torch.stack([x.amin(1), y.amin(1)], 1)
    extent = (torch.stack([x.amax(1), y.amax(1)], 1) - lo).clamp(min=1e-9)
    inner = size * (1 - 2 * margin)
    if keep_aspect:
        scale = (inner / extent.amax(1, keepdim=True)).expand(B, 2)
        offset = (size - extent * scale) / 2  # centre along the shorter side
    else:
        scale = inner / extent
        offset = torch.full_like(extent, size * margin)
    shift = offset - lo * scale  # pixel = point * scale + shift
    col = x.mul(scale[:, :1]).add_(shift[:, :1]).clamp_(0, size - 1).to(torch.int64)
    row = y.mul(scale[:, 1:]).add_(shift[:, 1:]).clamp_(0, size - 1).to(torch.int64)
    base = (torch.arange(B, device=x.device) * (size * size))[:, None]
    return row.mul_(size).add_(col).add_(base).reshape(-1)


def render_ifs(
    params: IFSParams,
    size: int,
    generator: torch.Generator,
    *,
    n_points: int = 2048,
    n_steps: int | None = None,
    points_per_pixel: float = 3.0,
    burn_in: int = 12,
    gamma: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render systems as ``uint8`` ``(B, 3, size, size)`` images; also return their filling rates.

    The chaos game runs ``n_points`` walkers for ``n_steps`` recorded steps, by default enough for
    ``points_per_pixel`` points per pixel (96 steps at 256x256), so images look alike at any size.
    Brightness is the log-density of visits, ``log(1 + n) / log(1 + 4 * mean n)`` over the visited
    pixels, clipped to 1, then ``^(1/gamma)``;
    colour is the palette at the mean colour coordinate of the visits. The attractor is fitted into
    the square keeping its aspect ratio. The filling rate ``(B,)`` is FractalDB's: the fraction of
    occupied pixels when the first ``0.38 * size^2`` recorded points (FractalDB's 100,000 points per
    512x512) are stretched to fill the canvas with a 6/512 margin.
    """
    B = len(params)
    S = size
    if n_steps is None:
        n_steps = max(8, math.ceil(points_per_pixel * S * S / n_points))
    x, y, colour = chaos_game(params, generator, n_points=n_points, n_steps=n_steps, burn_in=burn_in)

    n_fill = min(x.shape[1], max(1, round(_FILL_POINTS_PER_PIXEL * S * S)))
    fill_idx = _pixel_index(x[:, :n_fill], y[:, :n_fill], S, _FILL_MARGIN, keep_aspect=False)
    occupied = torch.bincount(fill_idx, minlength=B * S * S).reshape(B, S * S)
    filling = (occupied > 0).sum(1).to(torch.float64) / (S * S)

    flat = _pixel_index(x, y, S, 0.04, keep_aspect=True)
    count = torch.bincount(flat, minlength=B * S * S).reshape(B, S, S)
    hue_sum = torch.bincount(flat, weights=colour.reshape(-1), minlength=B * S * S).reshape(B, S, S)
    hue = hue_sum.to(torch.float32) / count.clamp(min=1)
    countf = count.to(torch.float32)
    # Full brightness at a few times the mean density of the occupied pixels rather than at the
    # single densest pixel, so that a few hot spots do not leave the rest of the attractor dim.
    occupied = (count > 0).sum((1, 2), keepdim=True).clamp(min=1)
    peak = (countf.sum((1, 2), keepdim=True) / occupied * 4).clamp(min=1)
    value = (torch.log1p(countf) / torch.log1p(peak)).clamp_(max=1.0)
    if gamma != 1.0:
        value = value.pow_(1.0 / gamma)
    rgb = cosine_palette(hue, params.palette) * value.unsqueeze(1)
    return _to_uint8(rgb), filling


@dataclass(frozen=True)
class IFSResult:
    """Accepted images ``(N, 3, S, S)`` with their systems and filling rates, and for every
    candidate drawn (in draw order) its filling rate and whether it was accepted."""

    images: torch.Tensor
    params: IFSParams
    filling_rate: torch.Tensor
    candidate_filling_rate: torch.Tensor
    accepted: torch.Tensor


def ifs_batch(
    batch: int,
    size: int,
    generator: torch.Generator,
    *,
    filling_rate: tuple[float, float] | None = None,
    n_maps: tuple[int, int] = (2, 4),
    sampler: str = "svd",
    require_structure: bool = True,
    device: torch.device | str | None = None,
    **render_kwargs,
) -> IFSResult:
    """Draw ``batch`` systems (:func:`sample_ifs`), render them (:func:`render_ifs`) and keep those
    whose filling rate lies in ``filling_rate`` (inclusive) and, with ``require_structure``, that
    pass :func:`is_structured`.

    ``filling_rate`` defaults to :data:`SVD_FILLING_RATE` for ``sampler="svd"`` and to
    :data:`FRACTALDB_FILLING_RATE` for ``sampler="fractaldb"``.
    """
    if filling_rate is None:
        filling_rate = FRACTALDB_FILLING_RATE if sampler == "fractaldb" else SVD_FILLING_RATE
    low, high = filling_rate
    params = sample_ifs(batch, generator, n_maps=n_maps, sampler=sampler, device=device)
    images, rate = render_ifs(params, size, generator, **render_kwargs)
    ok = (rate >= low) & (rate <= high)
    if require_structure:
        ok &= is_structured(images)
    return IFSResult(images[ok], params.select(ok), rate[ok], rate, ok)


# --------------------------------------------------------------------------------------------------
# Escape-time orbit traps


@dataclass(frozen=True)
class OrbitTrapParams(_Rows):
    """A batch of ``B`` escape-time views, one row per image.

    ``family`` ``(B,)`` long: 0 Mandelbrot (``z0 = 0``, ``c`` = pixel), 1 Julia (``z0`` = pixel,
    ``c = julia_c``). ``power`` ``(B,)`` long: exponent ``p`` of ``z -> z^p + c``. ``center``,
    ``julia_c`` ``(B,)`` complex; ``scale`` ``(B,)``: half-width of the view; ``angle`` ``(B,)``.
    ``trap`` ``(B,)`` long: index into ``("point", "line", "circle", "cross")``; ``trap_center``
    ``(B,)`` complex, ``trap_angle`` and ``trap_radius`` ``(B,)``. ``falloff`` ``(B,)``: sharpness of
    the glow around the trap. ``palette`` ``(B, 4, 3)``.
    """

    family: torch.Tensor
    power: torch.Tensor
    center: torch.Tensor
    julia_c: torch.Tensor
    scale: torch.Tensor
    angle: torch.Tensor
    trap: torch.Tensor
    trap_center: torch.Tensor
    trap_angle: torch.Tensor
    trap_radius: torch.Tensor
    falloff: torch.Tensor
    palette: torch.Tensor


def _escape_counts(c: torch.Tensor, power: torch.Tensor, max_iter: int) -> torch.Tensor:
    """Iterations before ``|z| > 2`` for ``z -> z^p + c`` from ``z0 = 0`` (``max_iter`` if never).

    Escaped orbits run on to infinity (then NaN), which simply fails the ``<= 4`` test."""
    zr = torch.zeros_like(c.real)
    zi = torch.zeros_like(c.real)
    count = torch.zeros(c.shape, dtype=torch.int64, device=c.device)
    cube = power == 3
    for _ in range(max_iter):
        r2, i2 = zr * zr, zi * zi
        sr, si = r2 - i2, 2 * zr * zi
        sr, si = torch.where(cube, sr * zr - si * zi, sr), torch.where(cube, sr * zi + si * zr, si)
        zr, zi = sr + c.real, si + c.imag
        count += zr * zr + zi * zi <= 4.0
    return count


def _boundary_points(
    power: torch.Tensor, generator, *, band: tuple[int, int], max_iter: int = 200, tries: int = 256
) -> torch.Tensor:
    """One point ``c`` per entry of ``power`` whose escape count from ``z0 = 0`` lies in ``band``:
    just outside the Mandelbrot (or Multibrot) set, where both zooms and Julia sets are intricate.

    ``tries`` uniform candidates in ``[-2, 1] x [-1.3, 1.3]`` are tested per point at once (2-5%
    pass) and the first that passes is taken; the rare point with none gets a fresh round.
    """
    n, device = power.shape[0], power.device
    out = torch.zeros(n, dtype=torch.complex64, device=device)
    todo = torch.ones(n, dtype=torch.bool, device=device)
    for _ in range(100):
        cand = torch.complex(_uniform((n, tries), generator, -2.0, 1.0, device),
                             _uniform((n, tries), generator, -1.3, 1.3, device))
        k = _escape_counts(cand, power[:, None].expand(n, tries), max_iter)
        ok = (k >= band[0]) & (k < band[1])
        first = cand[torch.arange(n, device=device), ok.to(torch.int8).argmax(1)]
        found = todo & ok.any(1)
        out = torch.where(found, first, out)
        todo &= ~found
        if not bool(todo.any()):
            return out
    raise RuntimeError("no point near the Mandelbrot boundary found")  # pragma: no cover


def sample_orbit_trap(
    batch: int,
    generator: torch.Generator,
    *,
    julia_prob: float = 0.5,
    powers: tuple[int, ...] = (2, 2, 2, 3),
    device: torch.device | str | None = None,
) -> OrbitTrapParams:
    """Random views: Mandelbrot zooms centred near the set's boundary (half-width ``10^U(-2.3, -0.5)``),
    or Julia sets with ``c`` near the boundary (half-width ``U(0.6, 1.6)`` around a point near 0);
    a random rotation, trap (point, line, circle or cross near the origin) and palette."""
    if any(p not in (2, 3) for p in powers):
        raise ValueError(f"powers must be 2 or 3, got {powers}")
    family = (_uniform((batch,), generator, device=device) < julia_prob).long()
    pick = torch.randint(len(powers), (batch,), generator=generator, device=device)
    power = torch.tensor(powers, device=device)[pick]
    near = _boundary_points(power, generator, band=(25, 200))
    julia_c = _boundary_points(power, generator, band=(18, 200))
    jitter = torch.complex(*_uniform((2, batch), generator, -0.3, 0.3, device))
    center = torch.where(family == 1, jitter, near)
    mandel_scale = 10 ** _uniform((batch,), generator, -2.3, -0.5, device)
    julia_scale = _uniform((batch,), generator, 0.6, 1.6, device)
    scale = torch.where(family == 1, julia_scale, mandel_scale)
    angle = _uniform((batch,), generator, 0.0, 2 * math.pi, device)
    trap = torch.randint(len(_TRAPS), (batch,), generator=generator, device=device)
    trap_center = torch.complex(*_uniform((2, batch), generator, -0.6, 0.6, device))
    trap_angle = _uniform((batch,), generator, 0.0, math.pi, device)
    trap_radius = _uniform((batch,), generator, 0.2, 0.9, device)
    falloff = _uniform((batch,), generator, 3.0, 12.0, device)
    palette = _sample_palettes(batch, generator, device)
    return OrbitTrapParams(family, power, center, julia_c, scale, angle, trap, trap_center, trap_angle,
                           trap_radius, falloff, palette)


def _orbit_trap_distance(params: OrbitTrapParams, i: int, size: int, max_iter: int) -> torch.Tensor:
    """``(S, S)`` smallest distance of each pixel's orbit to the trap, for view ``i``.

    One image at a time with its parameters as Python scalars: the kind of trap and the power pick
    the arithmetic, and the working set (a few ``S x S`` float planes) stays in cache. Escaped
    orbits are not masked: they run to infinity and then NaN, which ``fmin`` ignores, and their
    distances beyond the escape radius never undercut the orbit's earlier, nearer points.
    """
    device = params.scale.device
    S = size
    centre, rot = complex(params.center[i]), complex(torch.polar(params.scale[i], params.angle[i]))
    axis = (torch.arange(S, device=device, dtype=torch.float32) + 0.5) / S * 2 - 1
    # Pixel (row, col) sits at centre + rot * (u + i v) with u = axis[col], v = -axis[row].
    zr = (axis[None, :] * rot.real + axis[:, None] * rot.imag + centre.real).contiguous()
    zi = (axis[None, :] * rot.imag - axis[:, None] * rot.real + centre.imag).contiguous()
    if int(params.family[i]) == 1:  # Julia: z0 = pixel, c fixed
        jc = complex(params.julia_c[i])
        cr, ci = jc.real, jc.imag
    else:  # Mandelbrot: z0 = 0, so z1 = c = pixel
        cr, ci = zr.clone(), zi.clone()
    cube = int(params.power[i]) == 3
    trap = _TRAPS[int(params.trap[i])]
    tc = complex(params.trap_center[i])
    ux, uy = math.cos(float(params.trap_angle[i])), math.sin(float(params.trap_angle[i]))
    radius = float(params.trap_radius[i])
    # Distance to the line through tc along (ux, uy): |(z - tc) x u| = |zi ux - zr uy + k|.
    k_across = tc.real * uy - tc.imag * ux
    k_along = -(tc.real * ux + tc.imag * uy)
    dist = torch.full((S, S), float("inf"), device=device)
    r2, i2, t, d = (torch.empty_like(zr) for _ in range(4))
    for step in range(max_iter):
        if step:  # z1 is the starting plane itself (z0 = 0 for Mandelbrot, z0 = pixel for Julia)
            torch.mul(zr, zr, out=r2)
            torch.mul(zi, zi, out=i2)
            if cube:  # z^3 = (x^3 - 3 x y^2) + i (3 x^2 y - y^3)
                torch.mul(i2, -3.0, out=t).add_(r2).mul_(zr)  # x (x^2 - 3 y^2)
                zi.mul_(r2.mul_(3.0).sub_(i2))  # y (3 x^2 - y^2)
                zr, t = t, zr
            else:
                zi.mul_(zr).mul_(2.0)
                torch.sub(r2, i2, out=zr)
            zr.add_(cr)
            zi.add_(ci)
        if trap == "point" or trap == "circle":
            torch.sub(zr, tc.real, out=d).square_()
            torch.sub(zi, tc.imag, out=t).square_()
            d.add_(t).sqrt_()
            if trap == "circle":
                d.sub_(radius).abs_()
        else:
            torch.mul(zi, ux, out=d).add_(zr, alpha=-uy).add_(k_across).abs_()
            if trap == "cross":
                torch.mul(zr, ux, out=t).add_(zi, alpha=uy).add_(k_along).abs_()
                torch.minimum(d, t, out=d)
        torch.fmin(dist, d, out=dist)
    return dist


def render_orbit_trap(params: OrbitTrapParams, size: int, *, max_iter: int = 48) -> torch.Tensor:
    """Render views as ``uint8`` ``(B, 3, size, size)``: every pixel's orbit of ``z -> z^p + c`` is
    iterated ``max_iter`` times, and the pixel coloured by the orbit's smallest distance ``d`` to the
    trap: palette at ``log(d) / 4``, brightness ``exp(-falloff * d)``. Vectorised over pixels."""
    B = len(params)
    dist = torch.stack([_orbit_trap_distance(params, i, size, max_iter) for i in range(B)])
    dist = torch.nan_to_num_(dist, nan=10.0, posinf=10.0)
    shade = torch.exp(-params.falloff[:, None, None] * dist)
    t = torch.log(dist + 1e-3) * 0.25
    rgb = cosine_palette(t, params.palette) * shade.unsqueeze(1)
    return _to_uint8(rgb)


@dataclass(frozen=True)
class OrbitTrapResult:
    """Accepted images ``(N, 3, S, S)`` and their views, and for every candidate drawn (in draw
    order) whether it was accepted."""

    images: torch.Tensor
    params: OrbitTrapParams
    accepted: torch.Tensor


def orbit_trap_batch(
    batch: int,
    size: int,
    generator: torch.Generator,
    *,
    julia_prob: float = 0.5,
    powers: tuple[int, ...] = (2, 2, 2, 3),
    max_iter: int = 48,
    device: torch.device | str | None = None,
) -> OrbitTrapResult:
    """Draw ``batch`` views (:func:`sample_orbit_trap`), render them (:func:`render_orbit_trap`) and
    keep those that pass :func:`is_structured` (not near-uniform, not noise) with at least half of
    the frame busy: these views fill the frame, so a mostly flat one has missed the fractal."""
    params = sample_orbit_trap(batch, generator, julia_prob=julia_prob, powers=powers, device=device)
    images = render_orbit_trap(params, size, max_iter=max_iter)
    ok = is_structured(images, min_busy_tiles=0.5)
    return OrbitTrapResult(images[ok], params.select(ok), ok)
