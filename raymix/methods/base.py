"""What every method shares: one contract in the style of torchvision's v2 transforms, the
fractal bank and per-sample randomness.

The contract (every ``"image"`` method; ``"pair"`` methods add the ``edited`` images):

- ``method.make_params(generator, (H, W))`` -- draw every choice for one image (a small
  dataclass, e.g. ``PixMixParams``); no pixel is touched.
- ``method.apply(images, params_list)`` -- run those choices on a ``uint8`` ``(N, 3, H, W)``
  batch; nothing random happens here.
- ``method.describe(params)`` -- the provenance dict a written row keeps as its ``params``
  JSON; ``method.caption(params)`` -- the short text ``raymix preview`` prints under a tile.
- ``method.augment(images, generators)`` -- both steps, chunk by chunk:
  ``(uint8 images, [describe(params) per image])``, image ``i`` driven by ``generators[i]``.
- ``method(image)`` -- a torchvision-style transform on a PIL image, a ``uint8`` ``(C, H, W)``
  tensor or a ``(N, C, H, W)`` batch; randomness from torch's default generator (so a
  ``DataLoader``'s worker seeding applies) or ``generator=``.

Methods know nothing of Ray or of rows: :class:`raymix.pipeline.rows.MethodStage` runs any of
them over Ray Data batches (replicas, keys, provenance columns, failed rows). MiAMix, the
``"batch"`` kind, mixes a whole training batch on the device instead
(:class:`raymix.methods.miamix.MiAMix`: ``sample`` draws one ``MiAMixParams`` for the batch,
as a sample's partner is another sample; ``mix`` draws and mixes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from raymix.ops.rng import Draws, child_generator
from raymix.ops.tensors import is_channels_last, nchw_to_nhwc, nhwc, nhwc_to_nchw, to_channels_last

__all__ = ["MixingMethod", "choose_preset", "resolve_fractals", "as_draws", "as_image_batch"]

FractalSpec = Any  # a FractalBank, or a spec string for FractalBank.load (None = generated)


def resolve_fractals(spec: FractalSpec, *, size: int | None, seed: int, grayscale: bool):
    """A fractal bank from a ``FractalBank``-like object (returned as is) or a spec for
    ``raymix.fractals.FractalBank.load`` (``None``/``"generated"``/``"generated:N"``/a folder URI)."""
    if spec is not None and not isinstance(spec, str):
        if not (hasattr(spec, "sample") and hasattr(spec, "ids_for")):
            raise TypeError(f"fractals must be a FractalBank or a spec string, got {type(spec).__name__}")
        return spec
    from raymix.fractals import FractalBank
    if size is None:
        return FractalBank.load(spec, seed=seed, grayscale=grayscale)
    return FractalBank.load(spec, size=size, seed=seed, grayscale=grayscale)


def choose_preset(presets: Mapping[str, dict], preset: str, **given) -> dict:
    """The hyperparameters of a named preset (e.g. ``"imagenet"``, ``"cifar"``), with every
    ``given`` value that is not ``None`` on top (a constructor's explicit arguments)."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(presets)}")
    return {**presets[preset], **{k: v for k, v in given.items() if v is not None}}


def as_draws(source: torch.Generator | Draws) -> Draws:
    """``make_params`` takes a sample's generator or a :class:`Draws` already reading from one."""
    return source if isinstance(source, Draws) else Draws(source)


class MixingMethod:
    """Base class. Subclasses set ``name`` and implement :meth:`make_params`, :meth:`_apply` (one
    channels-last chunk), :meth:`describe` and :meth:`caption`.

    Constructor arguments shared by every method:

    - ``seed`` -- run seed: the pipeline seeds each sample
      from it with the row's key, replica and epoch (:func:`raymix.ops.rng.sample_generator`,
      salted with the method's ``salt``).
    - ``fractals`` -- a ``FractalBank`` or a spec for ``FractalBank.load``; ``None`` builds the
      method's default generated bank on first use.
    - ``fractal_size`` -- side of the bank's stored fractals (``None``: the bank's default, 256); the bank
      resizes a fractal to 8/7 of the image and crops it (PixMix's ``Resize(256)``,
      ``RandomCrop(224)``).
    - ``bank_seed`` -- seed of the generated fractal bank, fixed (0) by default and apart from the
      run seed: runs with different seeds, online or offline, draw from one bank, as the
      papers draw from one fixed fractal set.
    - ``chunk_size`` -- images processed together inside :meth:`augment` and :meth:`apply` (a
      speed knob: each op and fractal draw runs once per chunk, so larger chunks pay less fixed
      cost per image while smaller ones hold fewer augmented copies at a time; results do not
      depend on it). 32 by default, 8 for DiffuseMix, whose mixing is image by image.
    """

    name: ClassVar[str] = ""
    fractal_grayscale: ClassVar[bool] = False
    fractal_flip: ClassVar[bool] = False
    salt: ClassVar[str] = ""
    #: A ``"pair"`` method's inputs in a Ray batch (:class:`raymix.pipeline.rows.MethodStage`):
    #: the column of its second image (DiffuseMix: the edit; AGA: the background), the column of
    #: the text that made it (recorded as ``prompt``), the column of a per-row mask passed as
    #: ``masks=`` (``None``: none), and the JSON columns an earlier stage wrote, kept in the
    #: row's ``params`` under the given keys.
    pair_column: ClassVar[str] = "edited"
    prompt_column: ClassVar[str] = "prompt"
    mask_column: ClassVar[str | None] = None
    pair_provenance: ClassVar[dict[str, str]] = {"edit_params": "edit"}

    def __init__(self, *, seed: int = 0, fractals: FractalSpec = None, fractal_size: int | None = None,
                 bank_seed: int = 0, chunk_size: int = 32):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.seed = int(seed)
        self.fractal_size = None if fractal_size is None else int(fractal_size)
        self.bank_seed = int(bank_seed)
        self.chunk_size = int(chunk_size)
        self._fractal_spec = fractals
        self._bank = fractals if fractals is not None and not isinstance(fractals, str) else None

    # ------------------------------------------------------------------ configuration

    def config(self) -> dict:
        """Hyperparameters recorded in every sample's ``params``."""
        return {}

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
            self._bank = resolve_fractals(self._fractal_spec, size=self.fractal_size, seed=self.bank_seed,
                                          grayscale=self.fractal_grayscale)
        return self._bank

    def sample_fractals(self, seeds: Sequence[int], height: int, width: int, device) -> tuple[torch.Tensor, list[str]]:
        """One fractal per seed, ``uint8`` ``(n, 3, H, W)`` in channels-last memory, and their ids."""
        images, ids = self.fractals.sample([child_generator(s) for s in seeds], (height, width),
                                           flip=self.fractal_flip, channels_last=True)
        return to_channels_last(images.to(device)), [str(i) for i in ids]

    def fractal_id(self, seed: int) -> str:
        """The id of the fractal :meth:`sample_fractals` gives for ``seed`` (a params record keeps it)."""
        return str(self.fractals.ids_for([child_generator(seed)])[0])

    # ------------------------------------------------------------------ the contract

    def make_params(self, generator: torch.Generator | Draws, size: tuple[int, int]):
        """Draw every choice for one image of ``size`` ``(H, W)`` from its generator."""
        raise NotImplementedError

    def _apply(self, x: torch.Tensor, params: Sequence) -> torch.Tensor:
        """Apply ``params`` to a channels-last ``uint8`` chunk; returns the chunk's results."""
        raise NotImplementedError

    def describe(self, params) -> dict:
        """The provenance of one sample: what its row's ``params`` JSON holds."""
        raise NotImplementedError

    def caption(self, params) -> str:
        """A few short lines on one sample, for a preview tile."""
        raise NotImplementedError

    def apply(self, images: torch.Tensor, params_list: Sequence) -> torch.Tensor:
        """Apply one params record per image to a ``uint8`` ``(N, 3, H, W)`` batch; the result is
        in the input's memory format. Image ``i``'s result depends only on ``images[i]`` and
        ``params_list[i]``."""
        x = self._check_batch(images, len(params_list))
        outs = [self._apply(x[start:start + self.chunk_size], params_list[start:start + self.chunk_size])
                for start in range(0, x.shape[0], self.chunk_size)]
        return _concat(outs, like=images)

    def augment(self, images: torch.Tensor, generators: Sequence[torch.Generator]
                ) -> tuple[torch.Tensor, list[dict]]:
        """:meth:`make_params` and :meth:`apply` chunk by chunk, ``generators[i]`` driving image ``i``.

        Returns the ``uint8`` batch (in the input's memory format) and :meth:`describe` of each
        image's params. Image ``i``'s result depends only on ``images[i]`` and ``generators[i]``.
        """
        x = self._check_batch(images, len(generators))
        size = (x.shape[2], x.shape[3])
        outs, infos = [], []
        for start in range(0, x.shape[0], self.chunk_size):
            stop = start + self.chunk_size
            params = [self.make_params(Draws(g), size) for g in generators[start:stop]]
            outs.append(self._apply(x[start:stop], params))
            infos.extend(self.describe(p) for p in params)
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


def as_image_batch(image) -> torch.Tensor:
    """A PIL image or a ``uint8`` ``(3, H, W)`` / ``(N, 3, H, W)`` tensor as a ``(N, 3, H, W)`` tensor
    (a pair method's second image, given to its torchvision-style call)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).unsqueeze(0)
    batch = image.as_subclass(torch.Tensor)
    return batch.unsqueeze(0) if batch.ndim == 3 else batch


def _concat(outs: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Chunk results (channels-last) as one batch in ``like``'s memory format."""
    out = outs[0] if len(outs) == 1 else torch.cat([nhwc(o) for o in outs]).permute(0, 3, 1, 2)
    return out if is_channels_last(like) else out.contiguous()


def _generators(n: int, generator: torch.Generator | None) -> list[torch.Generator]:
    """Per-image generators seeded from ``generator`` (torch's default generator if None)."""
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    return [child_generator(s) for s in seeds]
