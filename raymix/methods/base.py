"""What every mixing method shares: the fractal bank, per-sample randomness and the three ways to
call a method.

- ``method.augment(images, generators)`` -- the core: ``uint8`` ``(N, C, H, W)`` images and one
  ``torch.Generator`` per image in, ``(uint8 images, [params dict per image])`` out.
- ``method(image)`` -- a torchvision-style transform on a PIL image, a ``uint8`` ``(C, H, W)``
  tensor or a ``(N, C, H, W)`` batch; randomness from torch's default generator (so a
  ``DataLoader``'s worker seeding applies) or ``generator=``.
- ``method(batch)`` with a ``dict`` -- a Ray Data ``map_batches`` function
  (``batch_format="numpy"``): one output row per input row and replica, randomness per row from
  ``sample_generator(seed, source_key, replica, epoch)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from raymix import schema
from raymix.ops.rng import child_generator, sample_generator
from raymix.ops.tensors import is_channels_last, nchw_to_nhwc, nhwc, nhwc_to_nchw, to_channels_last

__all__ = ["MixingMethod", "choose_preset", "resolve_fractals", "rows_to_images", "images_to_rows"]

FractalSpec = Any  # a FractalBank, or a spec string for FractalBank.load (None = generated)


def resolve_fractals(spec: FractalSpec, *, size: int | None, seed: int, grayscale: bool):
    """A fractal bank from a ``FractalBank``-like object (returned as is) or a spec for
    ``raymix.fractals.FractalBank.load`` (``None``/``"generated"``/``"generated:N"``/a folder URI)."""
    if spec is not None and not isinstance(spec, str):
        if not hasattr(spec, "sample"):
            raise TypeError(f"fractals must be a FractalBank or a spec string, got {type(spec).__name__}")
        return spec
    try:
        from raymix.fractals import FractalBank
    except ImportError as err:  # pragma: no cover - depends on the installed package
        raise ImportError("raymix.fractals is needed to build a fractal bank; pass fractals=<bank>") from err
    if size is None:
        return FractalBank.load(spec, seed=seed, grayscale=grayscale)
    return FractalBank.load(spec, size=size, seed=seed, grayscale=grayscale)


def choose_preset(presets: Mapping[str, dict], preset: str) -> dict:
    """The hyperparameters of a named preset (e.g. ``"imagenet"``, ``"cifar"``)."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(presets)}")
    return presets[preset]


def _column(batch: Mapping[str, Any], name: str, n: int, default) -> list:
    if name not in batch or batch[name] is None:
        return [default] * n
    values = batch[name]
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def rows_to_images(images) -> list[np.ndarray]:
    """The ``image`` column of a numpy batch as a list of per-row arrays (NHWC block or object array)."""
    if isinstance(images, np.ndarray) and images.dtype != object:
        return list(images)
    return [np.asarray(im) for im in images]


def images_to_rows(images: Sequence[np.ndarray]) -> np.ndarray:
    """Per-row images back to a column: one ``(N, H, W, C)`` block when all share a shape."""
    if images and all(im.shape == images[0].shape and im.dtype == images[0].dtype for im in images):
        return np.stack(images)
    column = np.empty(len(images), dtype=object)
    for i, im in enumerate(images):
        column[i] = im
    return column


def _check_row_image(image: np.ndarray) -> str:
    """Why a row image cannot be mixed ("" if it can)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        return f"image must be a uint8 array, got {getattr(image, 'dtype', type(image).__name__)}"
    if image.ndim != 3 or image.shape[2] != 3:
        return f"image must be HxWx3, got shape {image.shape}"
    if image.shape[0] < 2 or image.shape[1] < 2:
        return f"image too small: {image.shape[:2]}"
    return ""


def _to_chw(images: Sequence[np.ndarray]) -> torch.Tensor:
    """HWC arrays (possibly read-only) -> a new ``(N, 3, H, W)`` batch; inputs are never written."""
    return nhwc_to_nchw(np.stack(images))


class MixingMethod:
    """Base class. Subclasses set ``name`` and implement :meth:`_augment`.

    Constructor arguments shared by every method:

    - ``seed`` -- run seed; with the row key, replica and epoch it seeds each sample.
    - ``replicas`` -- augmented copies per input row in the Ray path.
    - ``epoch`` -- mixed into the seed (a row's ``epoch`` column overrides it).
    - ``fractals`` -- a ``FractalBank`` or a spec for ``FractalBank.load``; ``None`` builds the
      method's default generated bank on first use.
    - ``size`` -- side of the bank's stored fractals (``None``: the bank's default, 256); the bank
      resizes a fractal to 8/7 of the image and crops it (PixMix's ``Resize(256)``,
      ``RandomCrop(224)``).
    - ``chunk_size`` -- images processed together inside :meth:`augment` (a speed knob: each op
      and fractal draw runs once per chunk, so larger chunks pay less fixed cost per image while
      smaller ones hold fewer augmented copies at a time; results do not depend on it). 32 by
      default, 8 for DiffuseMix, whose mixing is image by image.
    """

    name: ClassVar[str] = ""
    fractal_grayscale: ClassVar[bool] = False
    fractal_flip: ClassVar[bool] = False
    salt: ClassVar[str] = ""

    def __init__(self, *, seed: int = 0, replicas: int = 1, epoch: int = 0, fractals: FractalSpec = None,
                 size: int | None = None, chunk_size: int = 32):
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.seed = int(seed)
        self.replicas = int(replicas)
        self.epoch = int(epoch)
        self.size = None if size is None else int(size)
        self.chunk_size = int(chunk_size)
        self._fractal_spec = fractals
        self._bank = fractals if fractals is not None and not isinstance(fractals, str) else None

    # ------------------------------------------------------------------ configuration

    def config(self) -> dict:
        """Hyperparameters recorded in every sample's ``params``."""
        return {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def __getstate__(self):
        state = self.__dict__.copy()
        if self._fractal_spec is None or isinstance(self._fractal_spec, str):
            state["_bank"] = None  # rebuilt from the spec where the method is unpickled
        return state

    # ------------------------------------------------------------------ fractals

    @property
    def fractals(self):
        """The fractal bank (built on first use from the ``fractals`` spec)."""
        if self._bank is None:
            self._bank = resolve_fractals(self._fractal_spec, size=self.size, seed=self.seed,
                                          grayscale=self.fractal_grayscale)
        return self._bank

    def sample_fractals(self, seeds: Sequence[int], height: int, width: int, device) -> tuple[torch.Tensor, list[str]]:
        """One fractal per seed, ``uint8`` ``(n, 3, H, W)`` in channels-last memory, and their ids."""
        images, ids = self.fractals.sample([child_generator(s) for s in seeds], (height, width),
                                           flip=self.fractal_flip, channels_last=True)
        return to_channels_last(images.to(device)), [str(i) for i in ids]

    # ------------------------------------------------------------------ core

    def _augment(self, images: torch.Tensor, generators: Sequence[torch.Generator]
                 ) -> tuple[torch.Tensor, list[dict]]:
        raise NotImplementedError

    def augment(self, images: torch.Tensor, generators: Sequence[torch.Generator]
                ) -> tuple[torch.Tensor, list[dict]]:
        """Augment a ``uint8`` ``(N, 3, H, W)`` batch, ``generators[i]`` driving image ``i``.

        Returns the ``uint8`` batch (in the input's memory format) and one params dict per image.
        Image ``i``'s result depends only on ``images[i]`` and ``generators[i]``.
        """
        x = self._check_batch(images, len(generators))
        outs, infos = [], []
        for start in range(0, x.shape[0], self.chunk_size):
            stop = start + self.chunk_size
            out, info = self._augment(x[start:stop], generators[start:stop])
            outs.append(out)
            infos.extend(info)
        return _concat(outs, like=images), infos

    @staticmethod
    def _check_batch(images: torch.Tensor, n_generators: int) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a uint8 tensor, got {type(images).__name__}")
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8, got {images.dtype}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
        if images.shape[0] != n_generators:
            raise ValueError(f"{n_generators} generators for {images.shape[0]} images")
        # Kernels work channels-last (a Ray batch's own layout); results do not depend on it.
        return to_channels_last(images)

    # ------------------------------------------------------------------ torchvision-style

    def __call__(self, inpt, *args, **kwargs):
        if isinstance(inpt, Mapping):
            return self.map_batch(inpt)
        return self.transform(inpt, *args, **kwargs)

    def transform(self, inpt, generator: torch.Generator | None = None):
        """Augment one PIL image, ``(C, H, W)`` tensor or ``(N, C, H, W)`` tensor; same type out."""
        return self._transform(inpt, generator, lambda batch, gens: self.augment(batch, gens)[0])

    @staticmethod
    def _transform(inpt, generator, run):
        from PIL import Image

        if isinstance(inpt, Image.Image):
            batch = nhwc_to_nchw(np.asarray(inpt.convert("RGB"))[None])
            out = run(batch, _generators(1, generator))
            return Image.fromarray(nchw_to_nhwc(out)[0])
        if not isinstance(inpt, torch.Tensor):
            raise TypeError(f"expected a PIL image or a uint8 tensor, got {type(inpt).__name__}")
        single = inpt.ndim == 3
        batch = inpt.unsqueeze(0) if single else inpt
        out = run(batch.as_subclass(torch.Tensor), _generators(batch.shape[0], generator)).contiguous()
        out = out[0] if single else out
        if type(inpt) is not torch.Tensor:
            from torchvision import tv_tensors

            out = tv_tensors.wrap(out, like=inpt)
        return out

    # ------------------------------------------------------------------ Ray Data

    def map_batch(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Ray Data ``map_batches`` function: ``replicas`` augmented rows per input row.

        Rows with a non-empty ``reason`` pass through once, untouched. A row whose image cannot
        be mixed gets ``stage="augment"`` and the error as ``reason`` (once, not per replica).
        """
        n = len(batch[schema.KEY])
        keys = [str(k) for k in _column(batch, schema.KEY, n, "")]
        images = rows_to_images(batch[schema.IMAGE])
        reasons = _column(batch, schema.REASON, n, "")
        stages = _column(batch, schema.STAGE, n, "")
        epochs = [self.epoch if e is None else int(e) for e in _column(batch, "epoch", n, None)]

        block = batch[schema.IMAGE]
        block = block if isinstance(block, np.ndarray) and block.dtype != object else None
        results: dict[int, tuple[np.ndarray, list[dict]] | str] = {}
        todo: dict[tuple, list[int]] = {}
        for i in range(n):
            if reasons[i]:
                continue
            why = _check_row_image(images[i])
            if why:
                results[i] = why
            else:
                todo.setdefault(images[i].shape, []).append(i)
        whole = None  # the output image block when every row was mixed in one piece
        for rows in todo.values():
            mixed, whole = self._mix_rows(rows, keys, images, epochs, block if len(rows) == n else None)
            results.update(mixed)

        out = _OutputRows()
        for i in range(n):
            meta = _row_meta(batch, i)
            if reasons[i]:
                out.add(images[i], keys[i], keys[i], self.name, -1, "{}", self.seed, meta, stages[i], reasons[i])
                continue
            result = results[i]
            if isinstance(result, str):
                out.add(images[i], keys[i], keys[i], self.name, -1, "{}", self.seed, meta, "augment", result)
                continue
            for r, (image, info) in enumerate(zip(*result)):
                out.add(image, schema.output_key(keys[i], self.name, r), keys[i], self.name, r,
                        json.dumps(info), self.seed, meta, "", "")
        return out.columns(images=whole)

    def _mix_rows(self, rows: list[int], keys, images, epochs, block: np.ndarray | None = None
                  ) -> tuple[dict, np.ndarray | None]:
        """Augment ``replicas`` copies of each row; isolate failures to the rows that raise.

        Returns per-row results and, when the whole batch was mixed in one piece, the output
        images as one ``(rows * replicas, H, W, 3)`` block."""
        m = self.replicas

        def run(subset, whole_block=None):
            if whole_block is not None:
                x = nhwc_to_nchw(np.repeat(whole_block, m, axis=0) if m > 1 else whole_block)
            else:
                x = _to_chw([images[i] for i in subset for _ in range(m)])
            gens = [sample_generator(self.seed, keys[i], r, epochs[i], self.salt) for i in subset for r in range(m)]
            out, infos = self.augment(x, gens)
            hwc = nchw_to_nhwc(out)
            return {i: (hwc[j * m:(j + 1) * m], infos[j * m:(j + 1) * m]) for j, i in enumerate(subset)}, hwc

        try:
            results, hwc = run(rows, block)
            return results, (hwc if block is not None else None)
        except Exception as err:  # noqa: BLE001 - retried row by row to find the culprits
            if len(rows) == 1:
                return {rows[0]: _reason(err)}, None
        results = {}
        for i in rows:
            try:
                results.update(run([i])[0])
            except Exception as err:  # noqa: BLE001 - quarantined with its message
                results[i] = _reason(err)
        return results, None


def _concat(outs: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Chunk results (channels-last) as one batch in ``like``'s memory format."""
    out = outs[0] if len(outs) == 1 else torch.cat([nhwc(o) for o in outs]).permute(0, 3, 1, 2)
    return out if is_channels_last(like) else out.contiguous()


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _generators(n: int, generator: torch.Generator | None) -> list[torch.Generator]:
    """Per-image generators seeded from ``generator`` (torch's default generator if None)."""
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    return [child_generator(s) for s in seeds]


def _row_meta(batch: Mapping[str, Any], i: int) -> dict:
    meta = {}
    for name, default in ((schema.LABEL, -1), (schema.CLASS_NAME, ""), (schema.SOURCE, "")):
        values = batch.get(name)
        meta[name] = default if values is None else values[i]
    return meta


class _OutputRows:
    """Accumulates output rows column by column."""

    NAMES = (schema.IMAGE, schema.KEY, schema.SOURCE_KEY, schema.METHOD, schema.REPLICA, schema.PARAMS,
             schema.SEED, schema.LABEL, schema.CLASS_NAME, schema.SOURCE, schema.STAGE, schema.REASON)

    def __init__(self, extra: Sequence[str] = ()):
        self.data: dict[str, list] = {k: [] for k in (*self.NAMES, *extra)}

    def add(self, image, key, source_key, method, replica, params, seed, meta, stage, reason, **extra):
        d = self.data
        d[schema.IMAGE].append(image)
        d[schema.KEY].append(key)
        d[schema.SOURCE_KEY].append(source_key)
        d[schema.METHOD].append(method)
        d[schema.REPLICA].append(replica)
        d[schema.PARAMS].append(params)
        d[schema.SEED].append(seed)
        for name in (schema.LABEL, schema.CLASS_NAME, schema.SOURCE):
            d[name].append(meta[name])
        d[schema.STAGE].append(stage)
        d[schema.REASON].append(reason)
        for name, value in extra.items():
            d[name].append(value)

    def columns(self, images: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The columns; ``images``, when given, is the image column already stacked in row order."""
        d = self.data
        cols: dict[str, np.ndarray] = {}
        for name, values in d.items():
            if name == schema.IMAGE and images is not None and len(images) == len(values):
                cols[name] = images
            elif name == schema.IMAGE or (values and isinstance(values[0], np.ndarray)):
                cols[name] = images_to_rows(values)
            elif name in (schema.REPLICA,):
                cols[name] = np.asarray(values, dtype=np.int32)
            elif name in (schema.SEED, schema.LABEL):
                cols[name] = np.asarray(values, dtype=np.int64)
            else:
                cols[name] = np.asarray(values, dtype=object)
        return cols
