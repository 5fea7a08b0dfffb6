"""The settings record of an output folder: which settings produced the rows in it.

A rerun of a job into the folder it wrote before resumes: it skips the rows already there.
That is right only if the rerun would write the same rows; a rerun with another method,
seed, options or input would add rows made another way beside the first ones, or
(worse) find every input "already finished" and write nothing. So the first run writes
``OUT/.raymix/settings.json`` before it writes any row, and every later run compares its
own settings with it:

- the same: resume;
- different: refuse, naming the settings that differ, unless ``write_beside`` is set:
  then the job writes to ``OUT-{digest}`` beside it (``digest``: 8 hex digits of a hash of
  the recorded settings, so the same other settings find the same folder again).

Recorded are the settings that decide what a row holds (:data:`RECORDED`); the ones that
only decide how the job runs (:data:`RUN_ONLY`: pool, batch and GPU-share sizes, files'
size, ``limit``, where Ray runs or an LLM is served, output printing, the editor's speed
options) may change between runs. A folder written before this record existed is checked against the
settings of its run record (``OUT/.raymix/summary.json``) when it has one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Any, TypeVar

from raymix.io.retry import DEFAULT_POLICY
from raymix.io.storage import atomic_write, filesystem, join, read_text
from raymix.settings import settings_of

__all__ = ["SETTINGS_RECORD", "RECORDED", "RUN_ONLY", "OutputSettingsMismatch", "recorded_settings", "claim_output"]

log = logging.getLogger(__name__)
J = TypeVar("J")

SETTINGS_RECORD = ".raymix/settings.json"
_RUN_RECORD = ".raymix/summary.json"

#: Settings (by key, as in config files) that decide the rows: recorded and compared.
RECORDED = frozenset({
    "input", "format", "replicas", "seed",
    # mix
    "method", "image_size", "fractals", "options",
    # diffusemix
    "lam", "public_code_masks", "keep_intermediates",
    "editor", "preset", "prompts", "steps", "resolution", "guidance_scale", "image_guidance_scale", "variant",
    "dtype",
    # aga
    "detector", "segmenter", "box_threshold", "text_threshold", "on_no_box", "on_several_boxes", "min_mask_area",
    "max_mask_area", "on_bad_mask", "subject_dtype", "superclasses", "instructions", "backgrounds", "temporal",
    "llm", "llm_engine", "llm_max_new_tokens", "llm_temperature", "llm_top_p", "llm_dtype",
    "background_model", "background_steps", "background_guidance", "background_resolution", "background_dtype",
    "background_variant", "flip_p", "max_angle", "scale_min", "scale_max", "max_shift", "feather",
})
#: Settings that only decide how a run goes: free to change between runs of one folder.
RUN_ONLY = frozenset({
    "output", "write_beside", "limit", "rows_per_file", "storage_options", "address", "json", "verbose",
    "actors", "batch_size", "gpus_per_actor", "edit_actors", "mix_actors",
    "edit_batch_size", "vae_batch", "channels_last", "fuse_qkv", "compile", "compile_vae",
    "subject_gpus", "subject_actors", "subject_batch_size", "llm_url", "llm_gpus", "llm_actors", "llm_batch_size",
    "background_gpus", "background_actors", "background_batch_size", "background_model_batch", "composite_actors",
})


class OutputSettingsMismatch(ValueError):
    """The output folder holds rows made with other settings."""


def recorded_settings(job) -> dict[str, Any]:
    """The :data:`RECORDED` settings of ``job`` by key (nested settings flattened)."""
    out = {}
    for key, setting in settings_of(type(job)).items():
        if key not in RECORDED:
            continue
        value = job
        for name in setting.path:
            value = getattr(value, name)
        out[key] = value
    return out


def _from_run_record(job, record: dict) -> dict[str, Any] | None:
    """The recorded settings found in an older run record (``dataclasses.asdict`` of the job)."""
    settings = record.get("settings")
    if not isinstance(settings, dict):
        return None
    out = {}
    for key, setting in settings_of(type(job)).items():
        if key not in RECORDED:
            continue
        value: Any = settings
        for name in setting.path:
            if not isinstance(value, dict) or name not in value:
                break
            value = value[name]
        else:
            out[key] = value
    return out


def _canonical(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _digest(settings: dict) -> str:
    return hashlib.sha256(_canonical(settings).encode()).hexdigest()[:8]


def _differences(there: dict, here: dict) -> list[str]:
    """The settings both records hold that differ (a record written before a setting
    existed does not hold it: it is not compared)."""
    return [f"--{k.replace('_', '-')} {json.dumps(there[k], default=str)} there, "
            f"{json.dumps(here[k], default=str)} here"
            for k in sorted(there.keys() & here.keys()) if _canonical({k: there[k]}) != _canonical({k: here[k]})]


def _read_json(fs, path: str) -> dict | None:
    def read():
        try:
            return json.loads(read_text(fs, path))
        except FileNotFoundError:
            return None

    try:
        return DEFAULT_POLICY.call(read, what=f"read {path}")
    except ValueError:  # not JSON: a record cut short by hand; treat as absent
        log.warning("%s is not valid JSON; ignoring it", path)
        return None


def claim_output(job: J) -> J:
    """Check ``job.output`` against its settings record and write the record if it has
    none; returns the job to run (with ``output`` moved beside when ``job.write_beside``
    and the settings differ). Raises :class:`OutputSettingsMismatch` otherwise."""
    mine = recorded_settings(job)
    fs, root = filesystem(job.output, job.storage_options)
    fs.invalidate_cache()
    record = _read_json(fs, join(root, SETTINGS_RECORD))
    found = record if isinstance(record, dict) and isinstance(record.get("settings"), dict) else None
    there = found["settings"] if found else None
    if there is None:
        older = _read_json(fs, join(root, _RUN_RECORD))
        there = _from_run_record(job, older) if isinstance(older, dict) else None
        found = older if there is not None else None
    differences = _differences(there, mine) if there is not None else []
    other_job = found is not None and found.get("job") not in (None, type(job).__name__)
    if other_job:
        differences.insert(0, f"written by {found['job']}, this is {type(job).__name__}")
    if differences:
        beside = f"{job.output.rstrip('/')}-{_digest({'job': type(job).__name__, **mine})}"
        if getattr(job, "write_beside", False):
            log.warning("%s holds rows made with other settings; writing to %s", job.output, beside)
            print(f"other settings than {job.output}'s: writing beside it to {beside}", flush=True)
            return claim_output(dataclasses.replace(job, output=beside))
        raise OutputSettingsMismatch(
            f"{job.output} holds rows made with other settings ({'; '.join(differences)}); resuming would mix "
            f"the two. Use another --output, or --write-beside to write to {beside}")
    if record is None:
        doc = {"job": type(job).__name__, "settings": mine}
        DEFAULT_POLICY.call(atomic_write, fs, join(root, SETTINGS_RECORD),
                            json.dumps(doc, indent=2, sort_keys=True, default=str).encode(),
                            what=f"write {SETTINGS_RECORD}")
    return job
