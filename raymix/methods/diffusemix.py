"""DiffuseMix mixing step (Islam et al., "DiffuseMix: Label-Preserving Data Augmentation with
Diffusion Models", CVPR 2024), Sec. 3 and Algorithm 1 lines 6-9.

Given an original image ``I`` and its edited (generated) counterpart ``I_gen``::

    M ~ one of the four masks, uniformly     (left/right/top/bottom half keeps the original)
    H = M * I + (1 - M) * I_gen              (Eq. 1, "concatenation")
    A = (1 - lam) * H + lam * F              (Eq. 2, F a random fractal, lam = 0.20, Sec. 4)

The editing itself (InstructPix2Pix with a prompt) is a separate, GPU stage; this class mixes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from raymix import schema
from raymix.methods.base import (
    FractalSpec,
    MixingMethod,
    _check_row_image,
    _column,
    _OutputRows,
    _reason,
    _row_meta,
    _to_chw,
    rows_to_images,
)
from raymix.ops.masks import MASKS, fractal_blend, hybrid, hybrid_fractal_blend
from raymix.ops.rng import Draws, sample_generator
from raymix.ops.tensors import is_channels_last, nchw_to_nhwc, nhwc, nhwc_to_nchw, to_channels_last

__all__ = ["DiffuseMix", "is_almost_white"]

#: The public code's variant: original always left or top, 20-pixel linear seam.
CODE_MASKS = ("left", "top")
CODE_SEAM = 20


def is_almost_white(image: torch.Tensor) -> bool:
    """The public code's filter for failed generations: over 90% of the grey levels are 255 and
    no other level covers 10% of the image."""
    r, g, b = image.reshape(3, -1).to(torch.int32)
    grey = (r * 299 + g * 587 + b * 114 + 500) // 1000  # PIL's convert("L")
    hist = torch.bincount(grey, minlength=256)
    total = grey.numel()
    return bool(hist[255] > 0.9 * total and hist[:255].max() < 0.1 * total)


class DiffuseMix(MixingMethod):
    """DiffuseMix mixing: original + edited image -> hybrid via a half mask -> fractal blend.

    Args:
        lam: fractal blending factor, 0.20 in all the paper's experiments (Sec. 4, Table 10).
        masks: mask kinds drawn uniformly; the paper's four by default. The public code uses
            :data:`CODE_MASKS` (``("left", "top")``).
        seam: width in pixels of a linear transition between the halves; 0 (binary) in the paper,
            :data:`CODE_SEAM` (20) in the public code.
        reject_white: quarantine rows whose edited image is almost all white, as the public code
            discards them (the paper does not mention it).
        keep_intermediates: in the Ray path, also output the ``generated`` and ``hybrid`` images.
        seed, replicas, epoch, fractals, size, chunk_size: see :class:`MixingMethod`. Fractals
            default to a generated colour bank. ``replicas`` is not used by the Ray path, whose
            rows arrive already expanded per replica by the editing stage.
    """

    name = "diffusemix"
    salt = "mix"

    def __init__(self, *, lam: float = 0.20, masks: Sequence[str] = MASKS, seam: int = 0,
                 reject_white: bool = False, keep_intermediates: bool = False, seed: int = 0, replicas: int = 1,
                 epoch: int = 0, fractals: FractalSpec = None, size: int | None = None, chunk_size: int = 8):
        super().__init__(seed=seed, replicas=replicas, epoch=epoch, fractals=fractals, size=size,
                         chunk_size=chunk_size)
        masks = tuple(masks)
        if not masks or any(m not in MASKS for m in masks):
            raise ValueError(f"masks must be a non-empty subset of {MASKS}, got {masks}")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        if seam < 0:
            raise ValueError(f"seam must be >= 0, got {seam}")
        self.lam = float(lam)
        self.masks = masks
        self.seam = int(seam)
        self.reject_white = bool(reject_white)
        self.keep_intermediates = bool(keep_intermediates)

    def config(self) -> dict:
        return {"lambda": self.lam, "seam": self.seam}

    def plan(self, draws: Draws) -> dict:
        return {"mask": draws.choice(self.masks), "fractal_seed": draws.seed()}

    # ------------------------------------------------------------------ core

    def mix(self, originals: torch.Tensor, edited: torch.Tensor, generators: Sequence[torch.Generator]
            ) -> tuple[torch.Tensor, list[dict]]:
        """Mix ``uint8`` ``(N, 3, H, W)`` originals with their edited images (resized to the
        original size if they differ). Returns the augmented batch and params per image."""
        out, infos, _ = self._mix_all(originals, edited, generators, keep_hybrids=False)
        return out, infos

    def augment(self, images: torch.Tensor, generators: Sequence[torch.Generator], edited: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[dict]]:
        """:meth:`mix` with the originals first; ``edited`` is required."""
        if edited is None:
            raise ValueError("DiffuseMix mixes each image with its edited version: pass edited=... "
                             "(or call mix(originals, edited, generators))")
        return self.mix(images, edited, generators)

    def _mix_all(self, originals, edited, generators, keep_hybrids: bool = True):
        """The mixed batch (in the originals' memory format), params per image and, with
        ``keep_hybrids``, the hybrids."""
        x = self._check_batch(originals, len(generators))
        g = self._check_batch(edited, len(generators)) if edited.shape[0] == x.shape[0] else None
        if g is None:
            raise ValueError(f"{edited.shape[0]} edited images for {x.shape[0]} originals")
        if g.shape[-2:] != x.shape[-2:]:
            g = to_channels_last(TF.resize(g, list(x.shape[-2:]), antialias=True))
        out, hybrids, infos = torch.empty_like(x), (torch.empty_like(x) if keep_hybrids else None), []
        for start in range(0, x.shape[0], self.chunk_size):
            stop = start + self.chunk_size
            info, hyb = self._mix(x[start:stop], g[start:stop], generators[start:stop], out[start:stop],
                                  keep_hybrids)
            if hybrids is not None:
                nhwc(hybrids)[start:stop] = nhwc(hyb)
            infos.extend(info)
        if not is_channels_last(originals):
            out = out.contiguous()
            hybrids = None if hybrids is None else hybrids.contiguous()
        return out, infos, hybrids

    def _mix(self, x, g, generators, out, keep_hybrid: bool = True):
        """Mix a chunk into ``out``; returns params per image and the hybrids (if kept)."""
        n, _, h, w = x.shape
        if self.reject_white:
            for i in range(n):
                if is_almost_white(g[i]):
                    raise ValueError("generated image is almost all white (discarded, as in the public code)")
        plans = [self.plan(Draws(gen)) for gen in generators]
        kinds = [p["mask"] for p in plans]
        fractals, ids = self.sample_fractals([p["fractal_seed"] for p in plans], h, w, x.device)
        if keep_hybrid or self.seam > 0:
            hybrids = hybrid(x, g, kinds, seam=self.seam)
            nhwc(out)[:] = nhwc(fractal_blend(hybrids, fractals, self.lam))
        else:
            hybrids = None
            hybrid_fractal_blend(x, g, fractals, kinds, self.lam, out=out)
        infos = [{"method": self.name, **self.config(), "mask": p["mask"], "fractal": fid}
                 for p, fid in zip(plans, ids, strict=True)]
        return infos, hybrids

    # ------------------------------------------------------------------ torchvision-style

    def transform(self, inpt, edited=None, generator: torch.Generator | None = None):
        """Mix one original (PIL image or ``uint8`` tensor, or a batch) with its edited version."""
        if edited is None:
            raise TypeError("DiffuseMix needs the edited image too: method(original, edited)")
        from PIL import Image

        if isinstance(edited, Image.Image):
            edited_t = torch.from_numpy(np.asarray(edited.convert("RGB")).copy()).permute(2, 0, 1).unsqueeze(0)
        else:
            edited_t = edited.as_subclass(torch.Tensor)
            edited_t = edited_t.unsqueeze(0) if edited_t.ndim == 3 else edited_t
        return self._transform(inpt, generator, lambda batch, gens: self.mix(batch, edited_t, gens)[0])

    # ------------------------------------------------------------------ Ray Data

    def map_batch(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Ray Data ``map_batches`` function over rows already expanded per replica.

        Input columns (as ``raymix.models.editor.InstructPix2PixEditor`` writes them): ``key`` (or
        ``source_key``), ``image``, ``edited``, ``replica``, ``prompt``, ``label``, ``class_name``,
        ``source``, optional ``edit_params`` (kept under ``"edit"`` in ``params``), ``stage``,
        ``reason`` and ``epoch``.
        One output row per input row; with ``keep_intermediates`` also ``generated`` and ``hybrid``.
        """
        n = len(batch[schema.KEY])
        source_keys = [str(k) for k in _column(batch, schema.SOURCE_KEY if schema.SOURCE_KEY in batch else schema.KEY,
                                               n, "")]
        images = rows_to_images(batch[schema.IMAGE])
        edited = rows_to_images(batch["edited"]) if "edited" in batch else [None] * n
        replicas = [int(r) for r in _column(batch, schema.REPLICA, n, 0)]
        prompts = [str(p) for p in _column(batch, "prompt", n, "")]
        edit_params = _column(batch, "edit_params", n, "")
        reasons = _column(batch, schema.REASON, n, "")
        stages = _column(batch, schema.STAGE, n, "")
        epochs = [self.epoch if e is None else int(e) for e in _column(batch, "epoch", n, None)]

        results: dict[int, Any] = {}
        todo: dict[tuple, list[int]] = {}
        for i in range(n):
            if reasons[i]:
                continue
            why = _check_row_image(images[i]) or (_check_row_image(edited[i]) if edited[i] is not None
                                                 else "no edited image")
            if why:
                results[i] = why
            else:
                todo.setdefault((images[i].shape, edited[i].shape), []).append(i)

        blocks = [batch[c] if isinstance(batch.get(c), np.ndarray) and batch[c].dtype != object else None
                  for c in (schema.IMAGE, "edited")]

        def run(rows, whole=False):
            gens = [sample_generator(self.seed, source_keys[i], replicas[i], epochs[i], self.salt) for i in rows]
            if whole:
                x, e = nhwc_to_nchw(blocks[0]), nhwc_to_nchw(blocks[1])
            else:
                x, e = _to_chw([images[i] for i in rows]), _to_chw([edited[i] for i in rows])
            out, infos, hyb = self._mix_all(x, e, gens, keep_hybrids=self.keep_intermediates)
            out_hwc = nchw_to_nhwc(out)
            hyb_hwc = nchw_to_nhwc(hyb) if self.keep_intermediates else [None] * len(rows)
            return dict(zip(rows, zip(out_hwc, infos, hyb_hwc, strict=True), strict=True)), out_hwc

        whole_block = None
        for rows in todo.values():
            try:
                whole = len(rows) == n and all(b is not None for b in blocks)
                mixed, out_hwc = run(rows, whole)
                results.update(mixed)
                whole_block = out_hwc if whole else None
            except Exception:  # noqa: BLE001 - retried row by row; failures are quarantined
                for i in rows:
                    try:
                        results.update(run([i])[0])
                    except Exception as err:  # noqa: BLE001
                        results[i] = _reason(err)

        extra = ("prompt", "generated", "hybrid") if self.keep_intermediates else ("prompt",)
        out = _OutputRows(extra)
        for i in range(n):
            meta = _row_meta(batch, i)
            more = {"prompt": prompts[i]}
            result = results.get(i)
            if reasons[i] or isinstance(result, str):
                stage, reason = (stages[i], reasons[i]) if reasons[i] else ("augment", result)
                if self.keep_intermediates:
                    blank = edited[i] if edited[i] is not None else images[i]
                    more.update(generated=blank, hybrid=images[i])
                out.add(images[i], source_keys[i], source_keys[i], self.name, replicas[i], "{}", self.seed, meta,
                        stage, reason, **more)
                continue
            image, info, hyb = result
            if self.keep_intermediates:
                more.update(generated=edited[i], hybrid=hyb)
            params = {**info, "prompt": prompts[i]}
            if edit_params[i]:
                params["edit"] = json.loads(edit_params[i])  # the editing stage's provenance
            out.add(image, schema.output_key(source_keys[i], self.name, replicas[i]), source_keys[i], self.name,
                    replicas[i], json.dumps(params), self.seed, meta, "", "", **more)
        return out.columns(images=whole_block)
