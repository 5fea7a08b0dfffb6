"""Ray Data rows <-> a method: the one adapter between numpy batches and the method contract.

:class:`MethodStage` is the callable class every job and the training data stage hand to
``map_batches``; it builds the method through :mod:`raymix.registry`::

    ds.map_batches(MethodStage, fn_constructor_kwargs={"method": "pixmix", "options": {...},
                   "seed": 0, "replicas": 4}, batch_format="numpy",
                   compute=ray.data.ActorPoolStrategy(size=4))

What it does for every method, so that no method has to:

- replicas: an ``"image"`` method gets ``replicas`` output rows per input row, keyed
  ``{source_key}/{method}/{replica}``; a ``"pair"`` method (DiffuseMix) gets rows already
  expanded per replica by the editing stage (``source_key``, ``replica``, ``edited``) and
  gives one row per row;
- randomness: row ``(source_key, replica)`` is driven by
  ``sample_generator(seed, source_key, replica, epoch, method.salt)``, the ``epoch`` column
  overriding the stage's ``epoch``;
- failures: a row that already failed (non-empty ``reason``) passes through once, untouched,
  with replica -1 (pair rows keep their replica); a row the method cannot take, or that makes
  it raise, gets ``stage="augment"`` and the error as ``reason`` (a batch that raises is
  retried row by row, so only the culprits are quarantined);
- columns: ``image``, ``key``, ``source_key``, ``method``, ``replica``, ``params``
  (``method.describe`` as JSON), ``seed``, ``label``, ``class_name``, ``source``, ``stage``,
  ``reason`` (:data:`OUTPUT_COLUMNS`), in that order and with those dtypes.

The row helpers (:func:`column`, :func:`rows_to_images`, :func:`images_to_rows`,
:func:`error_reason`) are shared with the editing stage (:mod:`raymix.pipeline.edit_stage`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from raymix import registry, schema
from raymix.ops.rng import sample_generator
from raymix.ops.tensors import nchw_to_nhwc, nhwc_to_nchw

__all__ = ["MethodStage", "OUTPUT_COLUMNS", "expand_replicas", "column", "source_keys", "rows_to_images",
           "images_to_rows", "error_reason"]

#: The columns :class:`MethodStage` writes, in order.
OUTPUT_COLUMNS = (schema.IMAGE, schema.KEY, schema.SOURCE_KEY, schema.METHOD, schema.REPLICA, schema.PARAMS,
                  schema.SEED, schema.LABEL, schema.CLASS_NAME, schema.SOURCE, schema.STAGE, schema.REASON)

EPOCH = "epoch"
EDITED = "edited"  # the pair method's second image (raymix.pipeline.edit_stage writes it)
PROMPT = "prompt"
EDIT_PARAMS = "edit_params"


# ---------------------------------------------------------------------------------------- row helpers


def column(batch: Mapping[str, Any], name: str, n: int, default) -> list:
    """Column ``name`` of a numpy batch as a list (``default`` for every row when absent)."""
    if name not in batch or batch[name] is None:
        return [default] * n
    values = batch[name]
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def source_keys(batch: Mapping[str, Any]) -> list[str]:
    """The source key of every row of a pair-stage batch: ``source_key`` (rows already
    expanded per replica), else ``key``; these seed each row's generators."""
    for name in (schema.SOURCE_KEY, schema.KEY):
        if name in batch:
            return [str(k) for k in batch[name]]
    raise KeyError("the batch needs a 'source_key' or 'key' column to seed each row")


def rows_to_images(images) -> list[np.ndarray]:
    """The ``image`` column of a numpy batch as a list of per-row arrays (NHWC block or object array)."""
    if isinstance(images, np.ndarray) and images.dtype != object:
        return list(images)
    return [np.asarray(im) for im in images]


def images_to_rows(images: Sequence[np.ndarray]) -> np.ndarray:
    """Per-row images back to a column: one ``(N, H, W, C)`` block when all share a shape."""
    if images and all(im.shape == images[0].shape and im.dtype == images[0].dtype for im in images):
        return np.stack(images)
    out = np.empty(len(images), dtype=object)
    for i, im in enumerate(images):
        out[i] = im
    return out


def error_reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _image_block(batch: Mapping[str, Any], name: str) -> np.ndarray | None:
    """The column as one ``(N, H, W, 3)`` array when it is one (no per-row stacking needed)."""
    values = batch.get(name)
    return values if isinstance(values, np.ndarray) and values.dtype != object else None


def _check_row_image(image: np.ndarray) -> str:
    """Why a row image cannot be mixed ("" if it can)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        return f"image must be a uint8 array, got {getattr(image, 'dtype', type(image).__name__)}"
    if image.ndim != 3 or image.shape[2] != 3:
        return f"image must be HxWx3, got shape {image.shape}"
    if image.shape[0] < 2 or image.shape[1] < 2:
        return f"image too small: {image.shape[:2]}"
    return ""


def _check_row_mask(mask: np.ndarray, size: tuple[int, int]) -> str:
    """Why a row's mask cannot be used with its image of ``size`` ("" if it can)."""
    if mask.dtype != np.bool_ or mask.shape != tuple(size):
        return f"mask must be bool {tuple(size)}, got {mask.dtype} {mask.shape}"
    return ""


def _to_chw(images: Sequence[np.ndarray]) -> torch.Tensor:
    """HWC arrays (possibly read-only) -> a new ``(N, 3, H, W)`` batch; inputs are never written."""
    return nhwc_to_nchw(np.stack(images))


def _row_meta(batch: Mapping[str, Any], i: int) -> dict:
    meta = {}
    for name, default in ((schema.LABEL, -1), (schema.CLASS_NAME, ""), (schema.SOURCE, "")):
        values = batch.get(name)
        meta[name] = default if values is None else values[i]
    return meta


class _OutputRows:
    """Accumulates output rows column by column."""

    def __init__(self, extra: Sequence[str] = ()):
        self.data: dict[str, list] = {k: [] for k in (*OUTPUT_COLUMNS, *extra)}

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
        cols: dict[str, np.ndarray] = {}
        for name, values in self.data.items():
            if name == schema.IMAGE and images is not None and len(images) == len(values):
                cols[name] = images
            elif name == schema.IMAGE or (values and isinstance(values[0], np.ndarray)):
                cols[name] = images_to_rows(values)
            elif name == schema.REPLICA:
                cols[name] = np.asarray(values, dtype=np.int32)
            elif name in (schema.SEED, schema.LABEL):
                cols[name] = np.asarray(values, dtype=np.int64)
            else:
                cols[name] = np.asarray(values, dtype=object)
        return cols


def expand_replicas(batch: Mapping[str, Any], *, replicas: int, method: str) -> dict[str, np.ndarray]:
    """``replicas`` rows per input row, keyed ``{source_key}/{method}/{replica}``, every column
    kept (what a pair method's model stage edits, one row per replica).

    Rows that already failed pass once, with ``replica`` -1 (they stand for the whole
    input row in the quarantine counts).
    """
    keys = np.asarray(batch[schema.KEY], dtype=object)
    reasons = np.asarray(batch.get(schema.REASON, np.full(len(keys), "", dtype=object)), dtype=object)
    ok = np.array([not r for r in reasons], dtype=bool)
    copies = np.where(ok, replicas, 1)
    index = np.repeat(np.arange(len(keys)), copies)
    replica = np.concatenate([np.arange(c) if good else [schema.WHOLE_ROW] for c, good in zip(copies, ok)]
                             ).astype(np.int32) if len(keys) else np.zeros(0, np.int32)
    out = {name: np.asarray(col)[index] for name, col in batch.items()}
    out[schema.SOURCE_KEY] = keys[index]
    out[schema.REPLICA] = replica
    out[schema.KEY] = np.array(
        [schema.output_key(k, method, r) if r >= 0 else k for k, r in zip(keys[index], replica)], dtype=object
    )
    return out


def _retry_rows(run, rows: list[int]) -> dict:
    """``run(rows)`` -> ``{row: result}``; if it raises, each row alone, a failing row's result
    being its error text (quarantined with it)."""
    results = {}
    for i in rows:
        try:
            results.update(run([i]))
        except Exception as err:  # noqa: BLE001 - quarantined with its message
            results[i] = error_reason(err)
    return results


# ---------------------------------------------------------------------------------------- the stage


class MethodStage:
    """A registered ``"image"`` or ``"pair"`` method over Ray Data numpy batches.

    Args:
        method: a name from :mod:`raymix.registry`, or its entry (jobs pass the entry, so a
            method registered at run time in the driver also builds on the workers).
        options: the method's own constructor arguments (preset, fractals, lam, ...).
        seed: the run seed (the method's, and each row's generator's).
        replicas: output rows per input row of an ``"image"`` method.
        epoch: mixed into every row's generator unless the batch has an ``epoch`` column.
        keep_intermediates: a ``"pair"`` method also outputs ``generated`` (the edited image)
            and ``hybrid`` (DiffuseMix Eq. 1) columns.
    """

    def __init__(self, method: str, options: Mapping[str, Any] | None = None, *, seed: int = 0, replicas: int = 1,
                 epoch: int = 0, keep_intermediates: bool = False):
        entry = registry.method(method)
        if entry.kind not in ("image", "pair"):
            raise ValueError(f"{method} is a {entry.kind!r} method: it mixes a training batch, not rows")
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        self.kind = entry.kind
        self.method = entry.load()(seed=seed, **dict(options or {}))
        self.seed = int(seed)
        self.replicas = int(replicas)
        self.epoch = int(epoch)
        self.keep_intermediates = bool(keep_intermediates)
        if self.keep_intermediates and not hasattr(self.method, "apply_with_hybrids"):
            raise ValueError(f"{entry.name} has no intermediates to keep")

    def __repr__(self) -> str:
        return f"MethodStage({self.method!r}, replicas={self.replicas}, seed={self.seed})"

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if self.kind == "pair":
            return self._pair_rows(batch)
        return self._image_rows(batch)

    def _generator(self, source_key: str, replica: int, epoch: int) -> torch.Generator:
        return sample_generator(self.seed, source_key, replica, epoch, self.method.salt)

    def _epochs(self, batch: Mapping[str, Any], n: int) -> list[int]:
        return [self.epoch if e is None else int(e) for e in column(batch, EPOCH, n, None)]

    # ------------------------------------------------------------------ image methods

    def _image_rows(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``replicas`` augmented rows per input row; failed rows once, replica -1."""
        method, name = self.method, self.method.name
        n = len(batch[schema.KEY])
        keys = [str(k) for k in column(batch, schema.KEY, n, "")]
        images = rows_to_images(batch[schema.IMAGE])
        reasons = column(batch, schema.REASON, n, "")
        stages = column(batch, schema.STAGE, n, "")
        epochs = self._epochs(batch, n)

        block = _image_block(batch, schema.IMAGE)
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
                out.add(images[i], keys[i], keys[i], name, -1, "{}", self.seed, meta, stages[i], reasons[i])
                continue
            result = results[i]
            if isinstance(result, str):
                out.add(images[i], keys[i], keys[i], name, -1, "{}", self.seed, meta, "augment", result)
                continue
            for r, (image, info) in enumerate(zip(*result)):
                out.add(image, schema.output_key(keys[i], name, r), keys[i], name, r,
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
            gens = [self._generator(keys[i], r, epochs[i]) for i in subset for r in range(m)]
            out, infos = self.method.augment(x, gens)
            hwc = nchw_to_nhwc(out)
            return {i: (hwc[j * m:(j + 1) * m], infos[j * m:(j + 1) * m]) for j, i in enumerate(subset)}, hwc

        try:
            results, hwc = run(rows, block)
            return results, (hwc if block is not None else None)
        except Exception as err:  # noqa: BLE001 - retried row by row to find the culprits
            if len(rows) == 1:
                return {rows[0]: error_reason(err)}, None
        return _retry_rows(lambda subset: run(subset)[0], rows), None

    # ------------------------------------------------------------------ pair methods

    def _pair_rows(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """One mixed row per (original, edited) row, as the editing stage expanded them.

        Input columns: ``key`` (or ``source_key``), ``image``, the method's second image
        (``method.pair_column``: ``edited`` for DiffuseMix, ``background`` for AGA), its mask
        column if it has one (``method.mask_column``, AGA's ``subject_mask``; bool ``HxW``),
        ``replica``, the text that made the second image (``method.prompt_column``: ``prompt``,
        AGA's ``caption``; output as ``prompt``), ``label``, ``class_name``, ``source``, optional
        JSON provenance columns of earlier stages (``method.pair_provenance``: DiffuseMix's
        ``edit_params`` is kept under ``"edit"`` in ``params``), ``stage``, ``reason`` and
        ``epoch``. Output:
        :data:`OUTPUT_COLUMNS` and ``prompt`` (with ``keep_intermediates``: ``generated``,
        ``hybrid``).
        """
        method, name, keep = self.method, self.method.name, self.keep_intermediates
        n = len(batch[schema.KEY])
        keys = source_keys(batch)
        images = rows_to_images(batch[schema.IMAGE])
        second = method.pair_column
        edited = rows_to_images(batch[second]) if second in batch else [None] * n
        mask_column = method.mask_column if method.mask_column in batch else None
        masks = [np.asarray(m) for m in batch[mask_column]] if mask_column else [None] * n
        replicas = [int(r) for r in column(batch, schema.REPLICA, n, 0)]
        prompts = [str(p) for p in column(batch, method.prompt_column, n, "")]
        provenance = {key: column(batch, col, n, "") for col, key in method.pair_provenance.items()}
        reasons = column(batch, schema.REASON, n, "")
        stages = column(batch, schema.STAGE, n, "")
        epochs = self._epochs(batch, n)

        results: dict[int, Any] = {}
        todo: dict[tuple, list[int]] = {}
        for i in range(n):
            if reasons[i]:
                continue
            why = _check_row_image(images[i]) or (_check_row_image(edited[i]) if edited[i] is not None
                                                 else f"no {second} image")
            if not why and mask_column:
                why = _check_row_mask(masks[i], images[i].shape[:2])
            if why:
                results[i] = why
            else:
                todo.setdefault((images[i].shape, edited[i].shape), []).append(i)

        blocks = [_image_block(batch, schema.IMAGE), _image_block(batch, second)]

        def run(rows, whole=False):
            if whole:
                x, e = nhwc_to_nchw(blocks[0]), nhwc_to_nchw(blocks[1])
            else:
                x, e = _to_chw([images[i] for i in rows]), _to_chw([edited[i] for i in rows])
            params = [method.make_params(self._generator(keys[i], replicas[i], epochs[i]), x.shape[-2:])
                      for i in rows]
            mask_arg = {"masks": torch.from_numpy(np.stack([masks[i] for i in rows]))} if mask_column else {}
            if keep:
                out, hyb = method.apply_with_hybrids(x, params, e)
                hyb_hwc = nchw_to_nhwc(hyb)
            else:
                out, hyb_hwc = method.apply(x, params, e, **mask_arg), [None] * len(rows)
            out_hwc = nchw_to_nhwc(out)
            infos = [method.describe(p) for p in params]
            return dict(zip(rows, zip(out_hwc, infos, hyb_hwc, strict=True), strict=True)), out_hwc

        whole_block = None
        for rows in todo.values():
            try:
                whole = len(rows) == n and all(b is not None for b in blocks)
                mixed, out_hwc = run(rows, whole)
                results.update(mixed)
                whole_block = out_hwc if whole else None
            except Exception:  # noqa: BLE001 - retried row by row; failures are quarantined
                results.update(_retry_rows(lambda subset: run(subset)[0], rows))

        extra = (PROMPT, "generated", "hybrid") if keep else (PROMPT,)
        out = _OutputRows(extra)
        for i in range(n):
            meta = _row_meta(batch, i)
            more = {PROMPT: prompts[i]}
            result = results.get(i)
            if reasons[i] or isinstance(result, str):
                stage, reason = (stages[i], reasons[i]) if reasons[i] else ("augment", result)
                if keep:
                    blank = edited[i] if edited[i] is not None else images[i]
                    more.update(generated=blank, hybrid=images[i])
                out.add(images[i], keys[i], keys[i], name, replicas[i], "{}", self.seed, meta,
                        stage, reason, **more)
                continue
            image, info, hyb = result
            if keep:
                more.update(generated=edited[i], hybrid=hyb)
            params = {**info, PROMPT: prompts[i]}
            for key, values in provenance.items():
                if values[i]:
                    params[key] = json.loads(values[i])  # an earlier stage's provenance (the edit, ...)
            out.add(image, schema.output_key(keys[i], name, replicas[i]), keys[i], name,
                    replicas[i], json.dumps(params), self.seed, meta, "", "", **more)
        return out.columns(images=whole_block)
