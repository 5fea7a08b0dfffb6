"""The editing stage of DiffuseMix on Ray Data: rows in, rows with their edited image out.

Islam et al., "DiffuseMix", CVPR 2024, Algorithm 1, lines 4-5: each (image, replica) row
is edited by InstructPix2Pix with a prompt drawn at random from the library. The model is
:class:`raymix.models.editor.InstructPix2PixEditor` (images, prompts and generators in,
images out); this stage does what rows need around it: each row's prompt order and noise
from its own seeded generators, retries of blank outputs with the next prompt, quarantine,
and splitting a batch whose model call fails (out of memory, a bad input) until the
failing row is found. Its output feeds :class:`raymix.pipeline.rows.MethodStage`.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import torch

from raymix import schema
from raymix.models.editor import DEFAULT_MODEL, InstructPix2PixEditor
from raymix.ops.rng import sample_generator
from raymix.pipeline.rows import EDIT_PARAMS, EDITED, PROMPT, images_to_rows, source_keys

__all__ = ["EditStage", "EDITED", "PROMPT", "EDIT_PARAMS"]

log = logging.getLogger(__name__)


class EditStage:
    """Edit every row of a batch; a Ray Data callable class.

    Use it as ``ds.map_batches(EditStage, fn_constructor_kwargs={"model": ..., "seed": ...,
    ...}, batch_size=B, num_gpus=1, compute=ray.data.ActorPoolStrategy(size=N))`` or call it
    on a dict of numpy arrays. ``model`` and every other keyword go to
    :class:`~raymix.models.editor.InstructPix2PixEditor` (preset, settings, device, speed
    options); ``seed`` is the run seed.

    Batch contract. Input columns: ``image`` (uint8 HWC per row, any size; a 4-d
    array or an object array of 3-d arrays), ``source_key`` (or ``key``), optionally
    ``replica`` (int, 0 if absent), ``stage`` and ``reason``. Rows whose ``reason``
    is set pass through untouched. Output: the input columns plus ``edited`` (uint8,
    the size of the input image; for a row that failed, a copy of its input image),
    ``prompt`` (the full prompt), ``edit_params`` (JSON) and ``stage``/``reason``
    (``"edit"`` and why, for rows that failed here; empty strings otherwise).

    Randomness. A row's prompt order is drawn from
    ``sample_generator(seed, source_key, replica, salt="prompt")`` and its noise from
    ``sample_generator(seed, source_key, replica, salt="edit")``, so a row's edit does
    not depend on which other rows share its batch or on which worker runs it.

    Blank outputs. A generated image that is near-white, near-black or near-uniform
    (:func:`raymix.ops.blank.blank_kinds`) is edited again with the next prompt of the
    row's own order and fresh noise, up to ``max_retries`` times; then the row is
    quarantined with ``stage="edit"``, ``reason="blank-output"``. ``edit_params``
    records the rejected attempts.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, seed: int = 0, **editor_options):
        self.model = InstructPix2PixEditor(model, **editor_options)
        self.seed = int(seed)

    def prompt_order(self, source_key: str, replica: int) -> list[int]:
        """The library indices a row tries, in order: first choice, then the retries."""
        k = len(self.model.library)
        if self.model.settings.prompt_choice == "cycle":
            return [(replica + j) % k for j in range(k)]
        g = sample_generator(self.seed, source_key, replica, salt="prompt")
        return torch.randperm(k, generator=g).tolist()

    def noise_generator(self, source_key: str, replica: int, attempt: int = 0) -> torch.Generator:
        """The generator of a row's noise; every retry gets a stream of its own."""
        salt = "edit" if attempt == 0 else f"edit/retry{attempt}"
        return sample_generator(self.seed, source_key, replica, salt=salt)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Edit every row of a numpy batch; see the class docstring for the contract."""
        n = len(batch[schema.IMAGE])
        keys = source_keys(batch)
        replicas = [int(r) for r in batch.get(schema.REPLICA, np.zeros(n, dtype=np.int64))]
        stage = [str(s) for s in batch.get(schema.STAGE, [""] * n)]
        reason = [str(s) for s in batch.get(schema.REASON, [""] * n)]
        prompt_text = [""] * n
        params = [""] * n
        edited: list[np.ndarray | None] = [None] * n
        images, todo = usable_images(batch[schema.IMAGE], stage, reason, "edit")

        orders = {i: self.prompt_order(keys[i], replicas[i]) for i in todo}
        rejected: dict[int, list[dict]] = {i: [] for i in todo}
        for attempt in range(self.model.settings.max_retries + 1):
            if not todo:
                break
            choice = {i: orders[i][attempt % len(orders[i])] for i in todo}
            texts = [self.model.library.text(choice[i]) for i in todo]
            gens = [self.noise_generator(keys[i], replicas[i], attempt) for i in todo]
            results = self._edit_guarded([images[i] for i in todo], texts, gens)
            retry = []
            for i, text, (image, kind, error) in zip(todo, texts, results):
                prompt_text[i] = text
                if error:
                    stage[i], reason[i] = "edit", error
                elif kind:
                    rejected[i].append({"prompt": text, "blank": kind})
                    retry.append(i)
                else:
                    edited[i] = image
                    params[i] = self._params(text, choice[i], rejected[i])
            todo = retry
        for i in todo:
            stage[i], reason[i] = "edit", "blank-output"
            params[i] = self._params(prompt_text[i], None, rejected[i])

        out = dict(batch)
        out[EDITED] = images_to_rows([e if e is not None else _fallback(batch[schema.IMAGE][i])
                                      for i, e in enumerate(edited)])
        out[PROMPT] = np.array(prompt_text, dtype=object)
        out[EDIT_PARAMS] = np.array(params, dtype=object)
        out[schema.STAGE] = np.array(stage, dtype=object)
        out[schema.REASON] = np.array(reason, dtype=object)
        return out

    def _edit_guarded(self, images, texts, gens) -> list[tuple[np.ndarray | None, str, str]]:
        """``(edited, blank kind, error)`` per row; a failing model call is split until the bad row is found."""
        fresh = [_copy_generator(g) for g in gens]  # split halves redraw the same noise
        try:
            edited, kinds = self.model.edit_images(images, texts, gens)
            return [(e, k, "") for e, k in zip(edited, kinds)]
        except RuntimeError as err:  # CUDA out of memory, a kernel failure on one odd input, ...
            if self.model.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(images) == 1:
                log.warning("edit failed: %s", err)
                return [(None, "", f"edit-error: {type(err).__name__}: {str(err).splitlines()[0][:200]}")]
            half = len(images) // 2
            gens = fresh
            return self._edit_guarded(images[:half], texts[:half], gens[:half]) + self._edit_guarded(
                images[half:], texts[half:], gens[half:]
            )

    def _params(self, prompt: str, index: int | None, rejected: list[dict]) -> str:
        s = self.model.settings
        return json.dumps(
            {
                "prompt": prompt,
                "prompt_index": index,
                "retries": len(rejected),
                "rejected": rejected,
                "model": self.model.model_name,
                "resolution": s.resolution,
                "steps": s.steps,
                "guidance_scale": s.guidance_scale,
                "image_guidance_scale": s.image_guidance_scale,
                "device": self.model.device.type,
                "dtype": str(self.model.dtype).removeprefix("torch."),
            }
        )


# ---------------------------------------------------------------------- helpers


def usable_images(column, stage: list[str], reason: list[str], name: str) -> tuple[list[np.ndarray | None], list[int]]:
    """Each row's image as uint8 HWC RGB (``None`` where not used) and the rows to process.

    Rows whose ``reason`` is set pass through; a row whose image is not usable gets
    ``stage[i] = name`` and the problem as its reason (both lists are updated in place).
    """
    images: list[np.ndarray | None] = [None] * len(column)
    todo = []
    for i in range(len(column)):
        if reason[i]:
            continue
        images[i], problem = _as_rgb_uint8(column[i])
        if problem:
            stage[i], reason[i] = name, problem
        else:
            todo.append(i)
    return images, todo


def _as_rgb_uint8(image) -> tuple[np.ndarray | None, str]:
    """The image as uint8 HWC RGB, or ``None`` and why not."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        return None, f"bad-image: expected uint8 pixels, got {image.dtype}"
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or min(image.shape[:2]) < 1:
        return None, f"bad-image: expected an HWC image with 1, 3 or 4 channels, got shape {image.shape}"
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[:, :, :3], ""


def _fallback(image) -> np.ndarray:
    """What ``edited`` holds for a row that was not edited: its input image, or an empty pixel."""
    image = np.asarray(image)
    if image.dtype == np.uint8 and image.ndim == 3:
        return image
    return np.zeros((1, 1, 3), dtype=np.uint8)


def _copy_generator(g: torch.Generator) -> torch.Generator:
    copy = torch.Generator(device=g.device)
    copy.set_state(g.get_state())
    return copy
