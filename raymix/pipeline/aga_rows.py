"""AGA's CPU row steps between its model stages: the subject's provenance, each replica's caption.

Rahat et al., AGA (2024). :func:`subject_params` keeps what the subject stage found (Sec. 4.1)
as JSON for the written row. Captions (Sec. 4.2): :class:`raymix.methods.aga_captions.CaptionEngine` draws
an instruction, a background and a temporal entry per sample; this module does it per row
(``sample_generator(seed, source_key, replica, salt="caption-draw")``), writes the LLM prompt
and the template caption, and after the LLM stage checks its answer against the words to
avoid, falling back to the template caption. Both are plain functions of a numpy batch (CPU
tasks); the user's set files are read here (any URI).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from raymix import schema
from raymix.methods.aga_captions import SET_NAMES, CaptionEngine, CaptionSets, default_sets, parse_set
from raymix.ops.rng import sample_generator
from raymix.pipeline.aga_stages import (
    CAPTION, CAPTION_PROMPT, CAPTION_RAW, SUBJECT_AREA, SUBJECT_BOX, SUBJECT_BOXES, SUBJECT_SCORE, SUBJECT_STATUS,
    SUPERCLASS,
)
from raymix.pipeline.rows import column, source_keys

__all__ = ["SUBJECT_PARAMS", "CAPTION_PARAMS", "subject_params", "read_caption_sets", "draw_captions",
           "choose_captions"]

SUBJECT_PARAMS = "subject_params"  # JSON provenance of the subject stage, kept in each row's params
CAPTION_PARAMS = "caption_params"  # JSON provenance: the draw, the source, the LLM's raw answer


def subject_params(batch: dict) -> dict:
    """Add ``subject_params``: each row's subject provenance as JSON (the superclass prompted, the
    box ``[x0, y0, x1, y1]`` or ``None``, its score, the boxes found, the mask's area fraction and
    the status, e.g. ``"ok"`` or ``"no-box:whole-image"``); the composite keeps it under ``"subject"``."""
    n = len(batch[schema.KEY])
    reasons = batch.get(schema.REASON, [""] * n)
    out = []
    for i in range(n):
        if reasons[i]:
            out.append("")
            continue
        box = np.asarray(batch[SUBJECT_BOX][i], dtype=np.float64)
        out.append(json.dumps({
            "superclass": str(batch[SUPERCLASS][i]),
            "box": None if np.isnan(box).any() else [round(float(v), 1) for v in box],
            "score": round(float(batch[SUBJECT_SCORE][i]), 4),
            "boxes_found": int(batch[SUBJECT_BOXES][i]),
            "mask_area": round(float(batch[SUBJECT_AREA][i]), 4),
            "status": str(batch[SUBJECT_STATUS][i]),
        }))
    return {**batch, SUBJECT_PARAMS: np.array(out, dtype=object)}


def read_caption_sets(instructions: str | None = None, backgrounds: str | None = None, temporal: str | None = None,
                      *, storage_options: dict | None = None) -> CaptionSets:
    """The three sets: raymix's, with any set given as a file URI (one entry per line) replacing its own."""
    from raymix.io.storage import filesystem, read_text

    given = {"instructions": instructions, "backgrounds": backgrounds, "temporal": temporal}
    sets = {}
    for name in SET_NAMES:
        uri = given[name]
        if uri is None:
            sets[name] = getattr(default_sets(), name)
            continue
        fs, path = filesystem(uri, storage_options)
        sets[name] = parse_set(read_text(fs, path), f"{name} ({uri})")
    return CaptionSets(**sets)


def draw_captions(batch: Mapping, *, engine: CaptionEngine, seed: int, descriptions: Mapping[str, str] | None = None
                  ) -> dict:
    """Add ``caption_prompt``, ``caption`` (the template) and ``caption_params`` to every row
    (one row per replica); rows already failed get empty strings."""
    n = len(batch[schema.KEY])
    keys = source_keys(batch)
    replicas = [int(r) for r in column(batch, schema.REPLICA, n, 0)]
    reasons = column(batch, schema.REASON, n, "")
    classes = [str(c) for c in column(batch, schema.CLASS_NAME, n, "")]
    supers = [str(c) for c in column(batch, SUPERCLASS, n, "")]
    descriptions = descriptions or {}
    prompts, captions, params = [""] * n, [""] * n, [""] * n
    for i in range(n):
        if reasons[i]:
            continue
        own = [w for w in (classes[i], descriptions.get(classes[i], ""), supers[i]) if w]
        draw = engine.draw(sample_generator(seed, keys[i], replicas[i], salt="caption-draw"), own=own)
        prompts[i], captions[i] = draw.prompt, draw.template
        params[i] = json.dumps({**draw.describe(), "source": "template", "template": draw.template})
    out = dict(batch)
    out[CAPTION_PROMPT] = np.array(prompts, dtype=object)
    out[CAPTION] = np.array(captions, dtype=object)
    out[CAPTION_PARAMS] = np.array(params, dtype=object)
    return out


def choose_captions(batch: Mapping, *, engine: CaptionEngine) -> dict:
    """After the LLM stage: each row's caption is its LLM answer (``caption_raw``) when that
    passes the check, else the template (``caption_params`` says which, and why)."""
    n = len(batch[schema.KEY])
    reasons = column(batch, schema.REASON, n, "")
    raw = [str(r) for r in column(batch, CAPTION_RAW, n, "")]
    captions = [str(c) for c in column(batch, CAPTION, n, "")]
    params = list(column(batch, CAPTION_PARAMS, n, ""))
    for i in range(n):
        if reasons[i] or not params[i]:
            continue
        info = json.loads(params[i])
        caption, source, why = engine.choose(info["template"], raw[i])
        captions[i] = caption
        info.update(source=source, llm_output=raw[i], **({"rejected": why} if why else {}))
        params[i] = json.dumps(info)
    out = dict(batch)
    out[CAPTION] = np.array(captions, dtype=object)
    out[CAPTION_PARAMS] = np.array(params, dtype=object)
    return out

