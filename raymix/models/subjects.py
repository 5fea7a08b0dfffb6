"""Subject isolation: GroundingDINO finds the subject's box, SAM cuts its mask, a whole batch per call.

Rahat et al., "AGA" (2024), Sec. 4.1 and Fig. 3: GroundingDINO (Liu et al., 2023) is
prompted with the class's *superclass* ("bird" rather than "water ouzel", which it
handles poorly) and gives a bounding box; SAM (Kirillov et al., ICCV 2023) prompted with
that box gives the segmentation mask; the masked image is the subject that AGA pastes on
generated backgrounds.

The models are the transformers classes: ``GroundingDinoForObjectDetection`` with its
processor (boxes from ``post_process_grounded_object_detection``) and ``SamModel`` with
``SamProcessor`` (masks from ``post_process_masks``); a SAM 2 checkpoint (``Sam2Model``)
loads the same way. Any of them comes from a Hugging Face id, a local folder or an
object-store mirror (:func:`raymix.models.weights.resolve_model`), or is built with random
weights in-process (``"tiny"``, ``"random-full"``: :mod:`raymix.models.random_models`).

The paper does not say what to do when the detector finds nothing, finds several boxes,
or SAM returns an empty or an all-covering mask. Each case has an option
(:class:`raymix.models.aga_options.SubjectOptions`) and the case and the action taken are
the subject's :attr:`Subject.status` (``"ok"`` or ``"<case>:<action>"``), which the job
writes into each row's provenance:

- no box: ``"no-box:quarantine"`` (default) or ``"no-box:whole-image"``;
- several boxes: the largest (``"several-boxes:largest"``, default) or the highest-scoring;
- a mask under ``min_mask_area`` or over ``max_mask_area`` of the image:
  ``"empty-mask:..."``/``"full-mask:..."`` with ``quarantine`` (default) or ``whole-image``.

This module is the models only: images and prompts in, subjects out; no Ray and no rows
(:class:`raymix.pipeline.aga_stages.SubjectStage` is the Ray Data stage).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from raymix.models.aga_options import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, SubjectOptions
from raymix.models.editor import choose_device, choose_dtype
from raymix.models.random_models import build_random_detector, build_random_segmenter, random_size
from raymix.models.weights import resolve_model

__all__ = ["Subject", "SubjectIsolator", "detector_prompt", "choose_box", "load_detector", "load_segmenter"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subject:
    """One image's subject.

    ``mask``: bool ``(H, W)``, the subject's pixels (all ``True`` for a whole-image subject,
    all ``False`` for a quarantined one); ``box``: the box SAM was prompted with, ``(x0, y0,
    x1, y1)`` in pixels, ``None`` when none was found; ``score``: its detector score (0 when
    none); ``boxes_found``: boxes over the thresholds; ``mask_area``: the fraction of the
    image SAM's mask covers (before any whole-image fallback; 0 without a box);
    ``status``: ``"ok"`` or ``"<case>:<action>"`` (module docstring).
    """

    mask: np.ndarray
    box: tuple[float, float, float, float] | None
    score: float
    boxes_found: int
    mask_area: float
    status: str

    @property
    def quarantined(self) -> bool:
        return self.status.endswith(":quarantine")


def detector_prompt(text: str) -> str:
    """GroundingDINO's text format: lower case, ending with a period (GroundingDINO README)."""
    text = " ".join(text.lower().replace("_", " ").split())
    return text if text.endswith(".") else text + "."


def choose_box(boxes: np.ndarray, scores: np.ndarray, rule: str) -> int:
    """Index of the box to segment among several: ``"largest"`` area or ``"highest-score"``."""
    if rule == "largest":
        areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
        return int(np.argmax(areas))
    if rule == "highest-score":
        return int(np.argmax(scores))
    raise ValueError(f"unknown box rule {rule!r}")


def load_detector(model: str = DEFAULT_DETECTOR, *, device="cpu", dtype=torch.float32, seed: int = 0,
                  cache_dir: str | None = None, storage_options: Mapping[str, Any] | None = None,
                  variant: str | None = None):
    """``(GroundingDinoForObjectDetection, processor)`` on ``device``; ``model`` as in the module docstring."""
    size = random_size(model)
    if size:
        net, processor = build_random_detector(size, seed=seed, device=device)
        return net.to(dtype), processor
    from transformers import AutoProcessor, GroundingDinoForObjectDetection

    path = resolve_model(model, cache_dir=cache_dir, storage_options=storage_options, variant=variant)
    net = GroundingDinoForObjectDetection.from_pretrained(path, dtype=dtype, use_safetensors=True, variant=variant)
    return net.to(device).eval(), AutoProcessor.from_pretrained(path)


def load_segmenter(model: str = DEFAULT_SEGMENTER, *, device="cpu", dtype=torch.float32, seed: int = 0,
                   cache_dir: str | None = None, storage_options: Mapping[str, Any] | None = None,
                   variant: str | None = None):
    """``(SamModel or Sam2Model, processor)`` on ``device``; the config's ``model_type`` picks SAM or SAM 2
    (``"tiny-sam2"``: a random tiny SAM 2)."""
    if model == "tiny-sam2":
        net, processor = build_random_segmenter("tiny", seed=seed, device=device, family="sam2")
        return net.to(dtype), processor
    size = random_size(model)
    if size:
        net, processor = build_random_segmenter(size, seed=seed, device=device)
        return net.to(dtype), processor
    from transformers import AutoConfig, AutoProcessor, SamModel

    path = resolve_model(model, cache_dir=cache_dir, storage_options=storage_options, variant=variant)
    cls = SamModel
    if AutoConfig.from_pretrained(path).model_type.startswith("sam2"):
        from transformers import Sam2Model

        cls = Sam2Model
    net = cls.from_pretrained(path, dtype=dtype, use_safetensors=True, variant=variant)
    return net.to(device).eval(), AutoProcessor.from_pretrained(path)


class SubjectIsolator:
    """GroundingDINO + SAM on a batch: uint8 HWC images (any sizes) and detector prompts in,
    one :class:`Subject` per image out.

    ``prompts`` are what GroundingDINO looks for, the superclass in AGA
    (:func:`raymix.models.superclasses.superclass_for`); they are put in its format by
    :func:`detector_prompt`. Keywords: the fields of
    :class:`~raymix.models.aga_options.SubjectOptions` (models, thresholds, policies,
    dtype), plus ``device`` (default: CUDA if torch sees one, else the CPU), ``model_seed``
    (the random weights of ``"tiny"``/``"random-full"``), ``cache_dir``,
    ``storage_options`` and ``variant`` (weight loading, :func:`resolve_model`).
    ``detector_model``/``segmenter_model``: ``(model, processor)`` pairs already built
    (benchmarks, tests). Inference is deterministic: no random draws.
    """

    def __init__(
        self,
        detector: str = DEFAULT_DETECTOR,
        segmenter: str = DEFAULT_SEGMENTER,
        *,
        device: str | None = None,
        model_seed: int = 0,
        cache_dir: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        variant: str | None = None,
        detector_model=None,
        segmenter_model=None,
        **options,
    ):
        self.options = SubjectOptions(detector=detector, segmenter=segmenter, **options)
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.options.dtype, self.device)
        if self.device.type == "cpu" and not torch.cuda.is_available():
            log.warning("CUDA is not available: subject isolation on the CPU in float32")
        load = dict(device=self.device, dtype=self.dtype, seed=model_seed, cache_dir=cache_dir,
                    storage_options=storage_options, variant=variant)
        self.detector, self.detector_processor = detector_model or load_detector(detector, **load)
        self.segmenter, self.segmenter_processor = segmenter_model or load_segmenter(segmenter, **load)
        for net in (self.detector, self.segmenter):
            net.eval().requires_grad_(False)

    # ------------------------------------------------------------------ the two models

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """GroundingDINO boxes over the thresholds: per image ``(boxes (K, 4) xyxy pixels, scores (K,))``."""
        texts = [detector_prompt(p) for p in prompts]
        inputs = self.detector_processor(images=list(images), text=texts, return_tensors="pt", padding=True)
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items()}
        outputs = self.detector(**inputs)
        outputs.logits, outputs.pred_boxes = outputs.logits.float(), outputs.pred_boxes.float()
        results = self.detector_processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.options.box_threshold,
            text_threshold=self.options.text_threshold, target_sizes=[im.shape[:2] for im in images],
        )
        return [(r["boxes"].cpu().numpy().astype(np.float64), r["scores"].cpu().numpy().astype(np.float64))
                for r in results]

    @torch.inference_mode()
    def segment(self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]) -> list[np.ndarray]:
        """SAM masks, bool ``(H, W)`` per image, each prompted with one box (one mask per box, as SAM
        is run for an unambiguous prompt)."""
        inputs = self.segmenter_processor(images=list(images), input_boxes=[[list(map(float, b))] for b in boxes],
                                          return_tensors="pt")
        sizes = {k: inputs.pop(k) for k in ("original_sizes", "reshaped_input_sizes") if k in inputs}
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items()}
        outputs = self.segmenter(**inputs, multimask_output=False)
        masks = self.segmenter_processor.post_process_masks(outputs.pred_masks.float().cpu(), *sizes.values())
        return [m[0, 0].numpy().astype(bool) for m in masks]

    # ------------------------------------------------------------------ the policy

    def __call__(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Subject]:
        """Isolate the subject of every image (uint8 HWC RGB, any sizes); see the module docstring."""
        if len(images) != len(prompts):
            raise ValueError("images and prompts must have the same length")
        if not len(images):
            return []
        detections = self.detect(images, prompts)
        chosen: dict[int, tuple[tuple[float, ...], float, int, str]] = {}
        subjects: list[Subject | None] = [None] * len(images)
        for i, (boxes, scores) in enumerate(detections):
            if not len(boxes):
                subjects[i] = self._no_box(images[i])
                continue
            j = choose_box(boxes, scores, self.options.on_several) if len(boxes) > 1 else 0
            status = f"several-boxes:{self.options.on_several}" if len(boxes) > 1 else "ok"
            chosen[i] = (tuple(float(v) for v in boxes[j]), float(scores[j]), len(boxes), status)
        if chosen:
            rows = list(chosen)
            masks = self.segment([images[i] for i in rows], [chosen[i][0] for i in rows])
            for i, mask in zip(rows, masks):
                subjects[i] = self._check_mask(mask, *chosen[i])
        return subjects

    def _no_box(self, image: np.ndarray) -> Subject:
        action = self.options.on_no_box
        mask = np.full(image.shape[:2], action == "whole-image")
        return Subject(mask, None, 0.0, 0, 0.0, f"no-box:{action}")

    def _check_mask(self, mask: np.ndarray, box, score: float, found: int, status: str) -> Subject:
        area = float(mask.mean())
        case = "empty-mask" if area < self.options.min_mask_area else (
            "full-mask" if area > self.options.max_mask_area else "")
        if not case:
            return Subject(mask, box, score, found, area, status)
        action = self.options.on_bad_mask
        return Subject(np.full(mask.shape, action == "whole-image"), box, score, found, area, f"{case}:{action}")
