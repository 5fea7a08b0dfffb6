"""AGA's model stages on Ray Data: subject isolation, caption LLM, background generation.

Rahat et al., "AGA" (2024), Fig. 2: the subject is isolated (GroundingDINO + SAM, Sec.
4.1), an LLM writes a background caption (Sec. 4.2) and Stable Diffusion XL draws the
background (Sec. 4.3). Each stage here is a Ray Data callable class around one model wrapper
of :mod:`raymix.models`, with the conventions of :class:`raymix.pipeline.edit_stage.EditStage`:

- use it as ``ds.map_batches(Stage, fn_constructor_kwargs={...}, batch_size=B,
  num_gpus=g, compute=ray.data.ActorPoolStrategy(size=N))`` or call it on a numpy batch;
- rows whose ``reason`` is set pass through untouched (their new columns hold empty values);
- a model call that fails (out of memory, one bad input) is split in halves until the
  failing row is found, which is quarantined with this stage's ``stage`` name and the
  error as ``reason``; the other rows go on;
- randomness comes from per-row generators,
  ``sample_generator(seed, source_key, replica, salt=...)``, so a row's output does not
  depend on its batch or on the worker that runs it;
- every stage runs on the CPU (float32) where torch sees no GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from raymix import schema
from raymix.models.backgrounds import BackgroundGenerator
from raymix.models.caption_llm import CaptionLLM
from raymix.models.subjects import SubjectIsolator
from raymix.models.superclasses import load_superclasses, superclass_for
from raymix.ops.rng import sample_generator
from raymix.pipeline.edit_stage import usable_images
from raymix.pipeline.rows import column, images_to_rows, source_keys

__all__ = [
    "SubjectStage", "CaptionLLMStage", "BackgroundStage",
    "SUBJECT_MASK", "SUBJECT_BOX", "SUBJECT_SCORE", "SUBJECT_STATUS", "SUBJECT_AREA", "SUBJECT_BOXES",
    "SUPERCLASS", "CAPTION_PROMPT", "CAPTION_RAW", "CAPTION", "BACKGROUND",
    "SEGMENT_STAGE", "CAPTION_STAGE", "BACKGROUND_STAGE",
]

log = logging.getLogger(__name__)

SUBJECT_MASK = "subject_mask"      # bool (H, W) per row
SUBJECT_BOX = "subject_box"        # float64 [4], xyxy pixels; NaN when no box
SUBJECT_SCORE = "subject_score"    # detector score of the box (0 without one)
SUBJECT_STATUS = "subject_status"  # "ok" or "<case>:<action>" (raymix.models.subjects)
SUBJECT_AREA = "subject_area"      # fraction of the image SAM's mask covers
SUBJECT_BOXES = "subject_boxes"    # boxes the detector found over the thresholds
SUPERCLASS = "superclass"          # the detector's prompt
CAPTION_PROMPT = "caption_prompt"  # the LLM's input
CAPTION_RAW = "caption_raw"        # the LLM's output, unchecked
CAPTION = "caption"                # the background caption
BACKGROUND = "background"          # uint8 (H, W, 3)

SEGMENT_STAGE, CAPTION_STAGE, BACKGROUND_STAGE = "segment", "caption", "background"


def _error(stage: str, err: BaseException) -> str:
    return f"{stage}-error: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def run_split(call: Callable[[list[int]], list], rows: list[int], *, stage: str, device: torch.device
              ) -> list[tuple[object, str]]:
    """``(result, error)`` per row of ``call(rows)``; a failing call is split in halves until the
    failing row is found (its error is the result's reason)."""
    if not rows:
        return []
    try:
        return [(r, "") for r in call(rows)]
    except (RuntimeError, ValueError) as err:  # CUDA out of memory, a kernel or processor failing on an input
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if len(rows) == 1:
            log.warning("%s failed: %s", stage, err)
            return [(None, _error(stage, err))]
        half = len(rows) // 2
        return (run_split(call, rows[:half], stage=stage, device=device)
                + run_split(call, rows[half:], stage=stage, device=device))


def _quarantine_columns(batch, n: int) -> tuple[list[str], list[str]]:
    """The rows' ``stage`` and ``reason`` (empty strings where absent)."""
    return ([str(v) for v in column(batch, schema.STAGE, n, "")],
            [str(v) for v in column(batch, schema.REASON, n, "")])


def _output(batch, stage: list[str], reason: list[str], **columns: np.ndarray) -> dict[str, np.ndarray]:
    """The input columns, the stage's new ``columns``, and the updated ``stage``/``reason``."""
    return {**batch, **columns, schema.STAGE: np.array(stage, dtype=object),
            schema.REASON: np.array(reason, dtype=object)}


def _object_column(values: Sequence) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


class SubjectStage:
    """Isolate every row's subject (GroundingDINO prompted with the superclass, then SAM).

    Keywords: ``detector``, ``segmenter`` and the other fields of
    :class:`~raymix.models.aga_options.SubjectOptions`, plus those of
    :class:`~raymix.models.subjects.SubjectIsolator` (``device``, ``model_seed``,
    ``cache_dir``, ``storage_options``, ``variant``). ``superclasses``: the table (a dict),
    a path/URL of one, or ``None`` for the packaged ImageNet-1k table
    (:mod:`raymix.models.superclasses`). ``seed`` is accepted for symmetry with the other
    stages; isolation draws nothing.

    Input columns: ``image`` (uint8 HWC per row, any size), ``class_name``, ``source_key``
    (or ``key``), optionally ``stage``/``reason``. Output: the input columns plus
    ``superclass``, ``subject_mask`` (bool ``(H, W)`` per row, an object column),
    ``subject_box`` (float64 ``(N, 4)``, NaN without a box), ``subject_score``,
    ``subject_area``, ``subject_boxes``, ``subject_status``; a subject whose status ends in
    ``:quarantine`` (no box, empty or full mask, as the options say) and a row whose model
    call failed get ``stage="segment"`` and ``reason`` = the status or the error.
    """

    def __init__(self, detector: str | None = None, segmenter: str | None = None, *,
                 superclasses: Mapping[str, str] | str | None = None, seed: int = 0, **options):
        models = {k: v for k, v in (("detector", detector), ("segmenter", segmenter)) if v is not None}
        self.model = SubjectIsolator(**models, **options)
        if superclasses is None or isinstance(superclasses, str):
            superclasses = load_superclasses(superclasses, options.get("storage_options"))
        self.superclasses = dict(superclasses)
        self.seed = int(seed)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch[schema.IMAGE])
        classes = [str(c) for c in column(batch, schema.CLASS_NAME, n, "")]
        stage, reason = _quarantine_columns(batch, n)
        superclass = [superclass_for(c, self.superclasses) if c else "" for c in classes]
        images, usable = usable_images(batch[schema.IMAGE], stage, reason, SEGMENT_STAGE)
        todo = []
        for i in usable:
            if superclass[i]:
                todo.append(i)
            else:
                stage[i], reason[i] = SEGMENT_STAGE, "no-class-name: the detector needs the row's class_name"

        masks: list[np.ndarray] = [np.zeros(im.shape[:2] if im is not None else (0, 0), bool) for im in images]
        boxes = np.full((n, 4), np.nan)
        scores, areas = np.zeros(n), np.zeros(n)
        found = np.zeros(n, dtype=np.int64)
        status = [""] * n
        results = run_split(lambda rows: self.model([images[i] for i in rows], [superclass[i] for i in rows]),
                            todo, stage=SEGMENT_STAGE, device=self.model.device)
        for i, (subject, error) in zip(todo, results):
            if error:
                stage[i], reason[i], status[i] = SEGMENT_STAGE, error, "error"
                continue
            masks[i], status[i] = subject.mask, subject.status
            scores[i], areas[i], found[i] = subject.score, subject.mask_area, subject.boxes_found
            if subject.box is not None:
                boxes[i] = subject.box
            if subject.quarantined:
                stage[i], reason[i] = SEGMENT_STAGE, subject.status

        return _output(batch, stage, reason, **{
            SUPERCLASS: np.array(superclass, dtype=object), SUBJECT_MASK: _object_column(masks),
            SUBJECT_BOX: boxes, SUBJECT_SCORE: scores, SUBJECT_AREA: areas, SUBJECT_BOXES: found,
            SUBJECT_STATUS: np.array(status, dtype=object),
        })


class CaptionLLMStage:
    """Write every row's raw background caption with the caption LLM.

    Keywords: ``model`` and the other fields of
    :class:`~raymix.models.aga_options.CaptionLLMOptions`, plus those of
    :class:`~raymix.models.caption_llm.CaptionLLM`. Input: ``caption_prompt`` (str),
    ``source_key`` (or ``key``), optionally ``replica``, ``stage``/``reason``. Output: the
    input columns plus ``caption_raw`` (str; ``""`` for rows passed through or failed); a
    failed model call quarantines its row with ``stage="caption"``. A row samples from
    ``sample_generator(seed, source_key, replica, salt="caption")``; ``attempt`` > 0 (a
    retry after a rejected caption) salts it ``"caption/retryK"``.
    """

    def __init__(self, model: str | None = None, *, seed: int = 0, **options):
        self.model = CaptionLLM(**({"model": model} if model is not None else {}), **options)
        self.seed = int(seed)

    def generator(self, source_key: str, replica: int, attempt: int = 0) -> torch.Generator:
        salt = "caption" if attempt == 0 else f"caption/retry{attempt}"
        return sample_generator(self.seed, source_key, replica, salt=salt)

    def __call__(self, batch: dict[str, np.ndarray], attempt: int = 0) -> dict[str, np.ndarray]:
        n = len(batch[CAPTION_PROMPT])
        keys = source_keys(batch)
        replicas = [int(r) for r in column(batch, schema.REPLICA, n, 0)]
        prompts = [str(p) for p in batch[CAPTION_PROMPT]]
        stage, reason = _quarantine_columns(batch, n)
        todo = [i for i in range(n) if not reason[i]]
        captions = [""] * n

        def call(rows):
            return self.model([prompts[i] for i in rows], [self.generator(keys[i], replicas[i], attempt) for i in rows])

        for i, (text, error) in zip(todo, run_split(call, todo, stage=CAPTION_STAGE, device=self.model.device)):
            if error:
                stage[i], reason[i] = CAPTION_STAGE, error
            else:
                captions[i] = text
        return _output(batch, stage, reason, **{CAPTION_RAW: np.array(captions, dtype=object)})


class BackgroundStage:
    """Generate every row's background from its caption (Stable Diffusion XL by default).

    Keywords: ``model`` and the other fields of
    :class:`~raymix.models.aga_options.BackgroundOptions`, plus those of
    :class:`~raymix.models.backgrounds.BackgroundGenerator`. ``size``: ``(H, W)`` of every
    background; ``None``: each row's own ``image`` size when the batch has an ``image``
    column (the compositing size), else the model resolution.

    Input: ``caption`` (str), ``source_key`` (or ``key``), ``replica``, optionally
    ``image``, ``stage``/``reason``. Output: the input columns plus ``background`` (uint8
    ``(H, W, 3)``; an empty ``(0, 0, 3)`` array for rows passed through or failed) and
    ``stage="background"`` for a failed call. Noise:
    ``sample_generator(seed, source_key, replica, salt="background")``.
    """

    def __init__(self, model: str | None = None, *, seed: int = 0, size: tuple[int, int] | None = None,
                 **options):
        self.model = BackgroundGenerator(**({"model": model} if model is not None else {}), **options)
        self.seed = int(seed)
        self.size = tuple(size) if size is not None else None

    def generator(self, source_key: str, replica: int) -> torch.Generator:
        return sample_generator(self.seed, source_key, replica, salt="background")

    def _sizes(self, batch, n: int) -> list[tuple[int, int] | None]:
        if self.size is not None or schema.IMAGE not in batch:
            return [self.size] * n
        return [tuple(np.asarray(im).shape[:2]) if np.asarray(im).ndim >= 2 else None for im in batch[schema.IMAGE]]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch[CAPTION])
        keys = source_keys(batch)
        replicas = [int(r) for r in column(batch, schema.REPLICA, n, 0)]
        captions = [str(c) for c in batch[CAPTION]]
        stage, reason = _quarantine_columns(batch, n)
        sizes = self._sizes(batch, n)
        backgrounds = [np.zeros((0, 0, 3), np.uint8)] * n
        todo = [i for i in range(n) if not reason[i]]

        def call(rows):
            return self.model([captions[i] for i in rows], [self.generator(keys[i], replicas[i]) for i in rows],
                              size=[sizes[i] for i in rows])

        for i, (image, error) in zip(todo, run_split(call, todo, stage=BACKGROUND_STAGE, device=self.model.device)):
            if error:
                stage[i], reason[i] = BACKGROUND_STAGE, error
            else:
                backgrounds[i] = image
        return _output(batch, stage, reason, **{BACKGROUND: images_to_rows(backgrounds)})
