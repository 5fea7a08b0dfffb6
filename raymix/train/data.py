"""The Ray Data input pipeline that streams into Ray Train.

Per input (a URI read by ``raymix.pipeline.datasource.read_images``, or any Ray Dataset with
``image`` and ``label`` columns)::

    read -> tag_epoch (epoch column; per-epoch subsample / repeat for weighted inputs)
         -> prepare_images (decode bytes, or fit arrays, to a square) -> conform (common columns)

then, on the union of all inputs::

    crop_flip (CPU tasks) -> online method (CPU actor pool; or three views for JSD)
         -> finalize (image[, image_aug1, image_aug2 | image_view2], label, valid)

With MiAMix on, every row also carries ``image_view2``: a second, independently drawn
crop and flip (and online-method draw) of the same image, which MiAMix mixes partners and
self-mixes with (MiAMix section 3.2.1: "two sets of random augmentation results").

Nothing is materialised: Ray Train's ``streaming_split`` re-executes this plan once per
epoch. Rows that failed upstream (``reason`` set) keep flowing with ``valid = False`` so
the training loop can drop and count them.

How the epoch reaches the UDFs: Ray re-runs the same plan every epoch and passes nothing
to it, so the plan reads the epoch from an :class:`EpochClock` actor. Every training worker
sets the clock to ``e`` and only then asks for epoch ``e``'s data; ``streaming_split``
starts an epoch's execution only when all workers have asked for it, and a worker sets
``e + 1`` only after ``ray.train.report`` for epoch ``e``, a barrier that all workers reach
after consuming all of epoch ``e``. So every row of epoch ``e`` was produced by a task
that read ``e``, whatever the scheduling: the draws depend on (seed, key, replica, epoch)
only, and a resumed run sees the same epochs as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import ray

from raymix import registry, schema
from raymix.ops.rng import sample_seed
from raymix.pipeline.rows import MethodStage
from raymix.train.config import TrainConfig, TrainInput
from raymix.train.transforms import center_crop, crop_flip

__all__ = [
    "EpochClock",
    "create_epoch_clock",
    "build_train_dataset",
    "build_val_dataset",
    "online_stage_kwargs",
    "tag_epoch",
    "prepare_images",
    "conform",
    "crop_flip_batch",
    "finalize",
    "JSDViews",
    "SecondView",
    "VIEW2",
]

EPOCH = "epoch"
VALID = "valid"
AUG1, AUG2 = "image_aug1", "image_aug2"
VIEW2 = "image_view2"
COMMON = (schema.KEY, schema.IMAGE, schema.LABEL, schema.CLASS_NAME, schema.SOURCE, schema.STAGE, schema.REASON, EPOCH)


@ray.remote(num_cpus=0)
class EpochClock:
    """The current training epoch, set by the training workers, read by the data stage."""

    def __init__(self, epoch: int = 0) -> None:
        self._epoch = int(epoch)

    def set(self, epoch: int) -> int:
        self._epoch = int(epoch)
        return self._epoch

    def get(self) -> int:
        return self._epoch


def create_epoch_clock() -> Any:
    """A fresh :class:`EpochClock` actor owned by the calling driver."""
    return EpochClock.remote()


def current_epoch(clock: Any) -> int:
    """The epoch from a clock actor, or ``clock`` itself when it is an int (tests, benches)."""
    if isinstance(clock, (int, np.integer)):
        return int(clock)
    return int(ray.get(clock.get.remote()))


def online_stage_kwargs(config: TrainConfig, replicas: int) -> dict[str, Any]:
    """:class:`raymix.pipeline.rows.MethodStage` arguments of the online method: its registry
    entry (so a method registered at run time builds on the workers too), seed, replicas,
    epoch 0 (the batch's ``epoch`` column overrides it) and the user's ``online_options``.

    The method keeps its own fractal bank (the default generated bank of the seed, at the
    bank's own resolution), the same bank the offline job (``raymix mix``) draws from: online
    and offline runs of one method and seed see the same fractals whatever the image size.
    """
    return {"method": registry.method(config.online), "options": dict(config.online_options),
            "seed": config.seed, "replicas": replicas, "epoch": 0}


# -- per-batch functions (numpy batches) -------------------------------------------------


def tag_epoch(batch: dict[str, np.ndarray], *, clock: Any, seed: int, fraction: float | None) -> dict[str, np.ndarray]:
    """Add the ``epoch`` column; with ``fraction``, keep each row ``fraction`` times this epoch.

    ``fraction = 2.5`` keeps every row twice and a third time with probability 1/2; the
    draw depends on (seed, key, epoch), so each epoch picks a fresh subset. Repeats get
    the key suffix ``#1``, ``#2``, ... so downstream draws differ between them.
    """
    epoch = current_epoch(clock)
    keys = [str(k) for k in batch[schema.KEY]]
    n = len(keys)
    if fraction is None or fraction == 1.0:
        copies = np.ones(n, dtype=np.int64)
    else:
        whole, part = int(np.floor(fraction)), fraction - np.floor(fraction)
        u = np.array([sample_seed(seed, k, 0, epoch, salt="sample") / 2.0**63 for k in keys])
        copies = whole + (u < part).astype(np.int64)
    index = np.repeat(np.arange(n), copies)
    out = {name: np.asarray(col)[index] for name, col in batch.items()}
    if fraction is not None and fraction > 1.0:
        starts = np.repeat(np.cumsum(copies) - copies, copies)
        repeat = np.arange(len(index)) - starts
        out[schema.KEY] = np.array([k if r == 0 else f"{k}#{r}" for k, r in zip(out[schema.KEY], repeat)], dtype=object)
    out[EPOCH] = np.full(len(index), epoch, dtype=np.int64)
    return out


def prepare_images(batch: dict[str, np.ndarray], *, size: int, resize: str = "center_crop") -> dict[str, np.ndarray]:
    """Bring ``image`` to uint8 ``(N, size, size, 3)`` with ``raymix.io.decode.decode_batch``.

    Accepts encoded bytes, HF ``{bytes, path}`` structs and decoded arrays of any size;
    adds ``stage``/``reason`` (a row that fails becomes a zero image with its reason).
    """
    from raymix.io.decode import decode_batch

    return decode_batch(batch, size=size, resize=resize)


def conform(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep the common columns (filling absent ``class_name``/``source``) so inputs union cleanly."""
    n = len(batch[schema.KEY])
    out = {}
    for column in COMMON:
        if column in batch:
            out[column] = batch[column]
        elif column == EPOCH:
            out[column] = np.zeros(n, dtype=np.int64)
        else:
            out[column] = np.full(n, "", dtype=object)
    out[schema.LABEL] = np.asarray(out[schema.LABEL]).astype(np.int64)
    out[schema.KEY] = np.asarray(out[schema.KEY]).astype(object)
    return out


def crop_flip_batch(
    batch: dict[str, np.ndarray], *, size: int, crop: str, flip: bool, seed: int, views: int = 1
) -> dict[str, np.ndarray]:
    """:func:`raymix.train.transforms.crop_flip` on every row (bad rows become zero images);
    ``views=2`` adds ``image_view2``, the row's second independent crop and flip."""
    images = batch[schema.IMAGE]
    n = len(images)
    reasons = batch[schema.REASON]
    columns = (schema.IMAGE, VIEW2)[:views]
    out = {column: np.zeros((n, size, size, 3), dtype=np.uint8) for column in columns}
    for i in range(n):
        if not reasons[i]:
            for view, column in enumerate(columns):
                out[column][i] = crop_flip(images[i], size, crop, flip, seed, str(batch[schema.KEY][i]),
                                           int(batch[EPOCH][i]), view=view)
    return {**batch, **out}


def finalize(batch: dict[str, np.ndarray], *, views: int = 1, crop_to: int | None = None) -> dict[str, np.ndarray]:
    """Only what the training loop reads: image(s) (uint8 NHWC), label, valid. ``views``: 1,
    2 (``image_view2`` for MiAMix) or 3 (``image_aug1``, ``image_aug2`` for JSD)."""
    reasons = batch.get(schema.REASON)
    n = len(batch[schema.LABEL])
    valid = np.ones(n, dtype=bool) if reasons is None else np.array([not r for r in reasons], dtype=bool)
    image = batch[schema.IMAGE]
    out = {
        schema.IMAGE: center_crop(image, crop_to) if crop_to else image,
        schema.LABEL: np.asarray(batch[schema.LABEL]).astype(np.int64),
        VALID: valid,
    }
    if views == 2:
        out[VIEW2] = batch[VIEW2]
    if views == 3:
        out[AUG1] = batch[AUG1]
        out[AUG2] = batch[AUG2]
    return out


class JSDViews:
    """Clean view plus two augmented views per row, for the JSD consistency loss.

    Runs the online method's :class:`~raymix.pipeline.rows.MethodStage` (``replicas=2``,
    ``stage`` its arguments) in-process and lines its output rows up with the input rows by
    ``(source_key, replica)``; a row the stage passed through once (replica -1: failed
    upstream or in the method) keeps its ``reason``.
    """

    def __init__(self, stage: dict[str, Any]) -> None:
        self.stage = MethodStage(**stage)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = [str(k) for k in batch[schema.KEY]]
        n = len(keys)
        out = self.stage(batch)
        position = {(str(k), int(r)): i for i, (k, r) in enumerate(zip(out[schema.SOURCE_KEY], out[schema.REPLICA]))}
        failed = out[schema.REASON]
        first = np.empty(n, dtype=np.int64)
        second = np.empty(n, dtype=np.int64)
        reasons = np.asarray(batch.get(schema.REASON, np.full(n, "", dtype=object)), dtype=object).copy()
        for i, k in enumerate(keys):
            if (k, 0) in position and (k, 1) in position:
                first[i], second[i] = position[(k, 0)], position[(k, 1)]
            else:  # a row the method passed through once (failed upstream or in the method)
                first[i] = second[i] = position[(k, -1)]
            reasons[i] = reasons[i] or failed[first[i]] or failed[second[i]]
        images = np.asarray(out[schema.IMAGE])
        return {**batch, AUG1: images[first], AUG2: images[second], schema.REASON: reasons}


class SecondView:
    """The online method on both views of a row, for MiAMix: ``image`` as the plain online
    stage draws it, ``image_view2`` under the key ``KEY#view2`` (an independent draw, the
    same for the same seed, key and epoch). ``stage``: :class:`~raymix.pipeline.rows.MethodStage`
    arguments (``replicas=1``). A row that fails in either view keeps the ``reason``.
    """

    def __init__(self, stage: dict[str, Any]) -> None:
        self.stage = MethodStage(**stage)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = np.asarray(batch[schema.KEY]).astype(object)
        first = self.stage({k: v for k, v in batch.items() if k != VIEW2})
        second_keys = np.array([f"{k}#view2" for k in keys], dtype=object)
        second = self.stage({**{k: v for k, v in batch.items() if k != VIEW2},
                             schema.IMAGE: batch[VIEW2], schema.KEY: second_keys})
        # replicas=1: one output row per input row, in order (a failed row passes through once)
        if list(first[schema.SOURCE_KEY]) != list(keys) or list(second[schema.SOURCE_KEY]) != list(second_keys):
            raise RuntimeError("the online method did not return one row per input row")
        reasons = np.array([a or b for a, b in zip(first[schema.REASON], second[schema.REASON])], dtype=object)
        return {**first, VIEW2: np.asarray(second[schema.IMAGE]), schema.REASON: reasons}


# -- datasets ----------------------------------------------------------------------------


def _read(inp: TrainInput) -> ray.data.Dataset:
    if isinstance(inp.source, ray.data.Dataset):
        return inp.source.limit(inp.limit) if inp.limit else inp.source
    from raymix.pipeline.datasource import read_images

    return read_images(inp.source, layout=inp.layout, limit=inp.limit, storage_options=inp.storage_options)


def _fractions(datasets: Sequence[ray.data.Dataset], inputs: Sequence[TrainInput], epoch_size: int | None) -> list[float | None]:
    weights = [inp.weight for inp in inputs]
    if all(w is None for w in weights):
        return [None] * len(inputs)
    if any(w is None for w in weights):
        raise ValueError("give every input a weight (URI@WEIGHT or --ratio), or none")
    counts = [ds.count() for ds in datasets]
    if any(c == 0 for c, w in zip(counts, weights) if w > 0):
        raise ValueError(f"an input with a positive weight has no rows: counts {counts}")
    total = sum(weights)
    rows = epoch_size or sum(counts)
    return [(w / total) * rows / c if c else 0.0 for w, c in zip(weights, counts)]


def build_train_dataset(
    inputs: Sequence[TrainInput], config: TrainConfig, clock: Any
) -> ray.data.Dataset:
    """The streaming training dataset for ``inputs``; see the module docstring."""
    if not inputs:
        raise ValueError("at least one training input is needed")
    raw = [_read(inp) for inp in inputs]
    fractions = _fractions(raw, inputs, config.epoch_size)
    parts = []
    for ds, fraction in zip(raw, fractions):
        if fraction == 0.0:
            continue
        ds = ds.map_batches(
            tag_epoch, fn_kwargs={"clock": clock, "seed": config.seed, "fraction": fraction}, batch_format="numpy"
        )
        ds = ds.map_batches(
            prepare_images, fn_kwargs={"size": config.train_decode_size, "resize": config.train_resize},
            batch_format="numpy", batch_size=config.data_batch_size,
        )
        parts.append(ds.map_batches(conform, batch_format="numpy"))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    views = 2 if config.miamix else 1
    ds = ds.map_batches(
        crop_flip_batch,
        fn_kwargs={"size": config.image_size, "crop": config.crop, "flip": config.flip, "seed": config.seed,
                   "views": views},
        batch_format="numpy",
        batch_size=config.data_batch_size,
    )
    if config.online is not None:
        pool = ray.data.ActorPoolStrategy(size=config.data_actors)
        common = dict(batch_format="numpy", batch_size=config.data_batch_size, compute=pool, num_cpus=config.data_actor_cpus)
        if config.jsd:
            views = 3
            stage = online_stage_kwargs(config, replicas=2)
            ds = ds.map_batches(JSDViews, fn_constructor_kwargs={"stage": stage}, **common)
        elif config.miamix:
            stage = online_stage_kwargs(config, replicas=1)
            ds = ds.map_batches(SecondView, fn_constructor_kwargs={"stage": stage}, **common)
        else:
            ds = ds.map_batches(MethodStage, fn_constructor_kwargs=online_stage_kwargs(config, replicas=1), **common)
    return ds.map_batches(finalize, fn_kwargs={"views": views}, batch_format="numpy")


def build_val_dataset(source: Any, config: TrainConfig) -> ray.data.Dataset:
    """Validation: shorter side to ``image_size / val_crop_ratio``, centre ``image_size`` crop."""
    inp = source if isinstance(source, TrainInput) else TrainInput(source)
    ds = _read(inp)
    ds = ds.map_batches(
        prepare_images, fn_kwargs={"size": config.val_decode_size}, batch_format="numpy",
        batch_size=config.data_batch_size,
    )
    return ds.map_batches(finalize, fn_kwargs={"crop_to": config.image_size}, batch_format="numpy")
