"""Ray Data batch inference of the evaluation job.

Every evaluation set (clean, each corruption x severity, each OOD set, the attacked images)
is a branch of one Ray Dataset with an ``eval_set`` column: read, decode to the validation
crop, corrupt on the fly in a CPU ``map_batches`` stage, then one actor pool
(:class:`Predictor`, one GPU per actor when the cluster has GPUs) runs every model on every
row. Only per-row outcomes (top-1/top-5 hit, confidence) come back to the driver, which
computes the metrics (:mod:`raymix.eval.metrics`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray
import torch

from raymix import schema
from raymix.eval import metrics
from raymix.eval.adversarial import AttackConfig, attack
from raymix.eval.corruptions import corrupt_batch, parse_corruptions, plan_corruption_tree
from raymix.eval.job import EvalJob, parse_named
from raymix.eval.models import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, build, resolve
from raymix.ops.rng import sample_generator

__all__ = ["SET", "EvalSet", "prepare", "Predictor", "corruption_pool", "build_dataset", "collect", "evaluate"]

log = logging.getLogger(__name__)

SET = "eval_set"
VALID = "valid"


class EvalSet(dict):
    """One evaluation set: ``name``, ``kind`` (clean, corruption, ood, adversarial) and what
    describes it (``corruption``, ``severity``, ``uri``, ``indices``)."""


def prepare(batch: dict[str, np.ndarray], *, decode_size: int, image_size: int, name: str) -> dict[str, np.ndarray]:
    """Decode to the validation crop (shorter side to ``decode_size``, centre
    ``image_size`` crop) and keep what inference reads, tagged with the set ``name``."""
    from raymix.io.decode import decode_batch
    from raymix.train.transforms import center_crop

    out = decode_batch(batch, size=decode_size, resize="center_crop")
    n = len(out[schema.IMAGE])
    labels = np.array([-1 if v is None else int(v) for v in batch.get(schema.LABEL, [None] * n)], dtype=np.int64)
    reasons = np.asarray(out[schema.REASON], dtype=object)
    reasons = np.array([r or ("" if lab >= 0 else "no label") for r, lab in zip(reasons, labels)], dtype=object)
    return {
        schema.KEY: np.asarray(out[schema.KEY]).astype(object),
        schema.IMAGE: center_crop(np.asarray(out[schema.IMAGE]), image_size),
        schema.LABEL: labels,
        schema.REASON: reasons,
        SET: np.full(n, name, dtype=object),
    }


class Predictor:
    """Actor holding every model: per row and model, top-1/top-5 hit and confidence.

    Rows of a set with ``indices`` (ImageNet-R/-A) are scored on the restricted logits; rows of
    the adversarial set are attacked first, per model (white box), PGD's random start drawn
    per image from ``(seed, key)``.
    """

    def __init__(self, specs: Sequence[ModelSpec], *, sets: dict[str, dict], attack: dict | None, seed: int,
                 storage_options: dict | None = None, device: str = "auto") -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "gpu":
            device = "cuda"
        self.device = torch.device(device)
        self.models = [build(spec, storage_options).to(self.device) for spec in specs]
        self.indices = {name: torch.as_tensor(s["indices"], device=self.device)
                        for name, s in sets.items() if s.get("indices") is not None}
        self.adversarial = {name for name, s in sets.items() if s["kind"] == "adversarial"}
        self.attack = AttackConfig(**attack) if attack else None
        self.seed = seed
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def _noise(self, keys, shape) -> torch.Tensor:
        return torch.stack([torch.rand(shape[1:], generator=sample_generator(self.seed, str(k), salt="pgd"))
                            for k in keys]).to(self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sets = np.asarray(batch[SET], dtype=object)
        labels = np.asarray(batch[schema.LABEL], dtype=np.int64)
        valid = np.array([not r for r in batch[schema.REASON]], dtype=bool) & (labels >= 0)
        n = len(labels)
        x = torch.from_numpy(np.ascontiguousarray(batch[schema.IMAGE])).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255)
        y = torch.from_numpy(np.where(valid, labels, 0)).to(self.device)
        out: dict[str, np.ndarray] = {SET: sets, schema.LABEL: labels, VALID: valid}
        groups = {name: np.flatnonzero(sets == name) for name in dict.fromkeys(sets)}
        for i, model in enumerate(self.models):
            top1 = np.zeros(n, dtype=bool)
            top5 = np.zeros(n, dtype=bool)
            conf = np.zeros(n, dtype=np.float32)
            for name, rows in groups.items():
                idx = torch.as_tensor(rows, device=self.device)
                xs, ys = x[idx], y[idx]
                if name in self.adversarial and self.attack is not None:
                    noise = self._noise(np.asarray(batch[schema.KEY])[rows], xs.shape) \
                        if self.attack.kind == "pgd" and self.attack.random_start else None
                    xs = attack(model, xs, ys, self.attack, normalize=self.normalize, noise=noise)
                with torch.no_grad():
                    logits = model(self.normalize(xs)).float()
                if name in self.indices:
                    logits = metrics.restrict_logits(logits, self.indices[name].tolist())
                k = min(5, logits.shape[1])
                top = logits.topk(k, dim=1).indices
                top1[rows] = (top[:, 0] == ys).cpu().numpy()
                top5[rows] = (top == ys[:, None]).any(dim=1).cpu().numpy()
                conf[rows] = logits.softmax(dim=1).max(dim=1).values.cpu().numpy()
            out[f"top1_{i}"], out[f"top5_{i}"], out[f"conf_{i}"] = top1, top5, conf
        return out


def _read(uri: str, job: EvalJob, limit: int | None, plan=None) -> tuple[ray.data.Dataset, list[str] | None]:
    from raymix.io.readers import plan_read
    from raymix.pipeline.datasource import read_dataset

    plan = plan or plan_read(uri, layout=job.layout, storage_options=job.storage_options)
    return read_dataset(plan, limit=limit), plan.classes


def _ood_indices(name: str, ood_classes: list[str] | None, val_classes: list[str] | None,
                 num_classes: int) -> list[int] | None:
    """Which logits an OOD set is scored on: its classes' positions in --input's class list when
    they are a proper subset of it (ImageNet-R/-A), else all (``None``)."""
    if not ood_classes or not val_classes:
        return None
    missing = [c for c in ood_classes if c not in val_classes]
    if missing:
        if len(ood_classes) <= num_classes:
            log.warning("--ood %s: classes %s are not --input classes; scoring its labels as they are",
                        name, missing[:3])
            return None
        raise ValueError(f"--ood {name}: {len(missing)} classes are not among --input's (e.g. {missing[:3]})")
    idx = [val_classes.index(c) for c in ood_classes]
    return None if idx == list(range(num_classes)) else idx


def _subset_indices(value, num_classes: int, storage_options: dict | None) -> list[int]:
    """An ``--ood-subset`` value: a list of class indices, or the URI of a JSON list."""
    if isinstance(value, str):
        import json

        from raymix.io import storage

        fs, path = storage.filesystem(value, storage_options)
        value = json.loads(storage.read_text(fs, path))
    idx = [int(v) for v in value]
    if not idx or min(idx) < 0 or max(idx) >= num_classes or len(set(idx)) != len(idx):
        raise ValueError(f"--ood-subset: indices must be distinct and in [0, {num_classes}), got {len(idx)} of them")
    return idx


def corruption_pool(cluster_cpus: float, inference_actors: int, branches: int,
                    corruption_cpus: int | None = None) -> tuple[int, int]:
    """``(cores, tasks per branch)`` of the on-the-fly corruption stage.

    The corruptions are the CPU-heavy part of the evaluation (about 14 ms of CPU per 224 px
    image, ``docs/evaluation.md``): they get every CPU of the cluster but the one each
    inference actor holds, i.e. the cluster's cores per GPU less one on a GPU cluster
    (``corruption_cpus`` overrides), shared evenly by the ``branches`` (corruption x
    severity), each a Ray Data operator of its own whose concurrent tasks are capped at its
    share (at least one).
    """
    cores = corruption_cpus or max(1, int(cluster_cpus) - inference_actors)
    return cores, max(1, -(-cores // max(1, branches)))


def build_dataset(job: EvalJob, specs: Sequence[ModelSpec], *, corruption_tasks: int | None = None
                  ) -> tuple[ray.data.Dataset, dict[str, EvalSet]]:
    """The union of every evaluation set, prepared, corrupted and tagged; and the sets.
    ``corruption_tasks``: concurrent tasks of each generated corruption branch (no cap: None)."""
    image_size = job.image_size or specs[0].image_size
    ratio = job.crop_ratio or specs[0].val_crop_ratio
    decode_size = round(image_size / ratio)
    num_classes = specs[0].num_classes
    common = dict(batch_format="numpy", batch_size=job.batch_size)

    def prepared(ds, name, *, size=decode_size):
        return ds.map_batches(prepare, fn_kwargs={"decode_size": size, "image_size": image_size, "name": name},
                              **common)

    clean, val_classes = _read(job.input, job, job.limit)
    sets: dict[str, EvalSet] = {"clean": EvalSet(kind="clean", uri=job.input)}
    parts = [prepared(clean, "clean")]
    if job.corrupted:
        plans = plan_corruption_tree(job.corrupted, None if job.corruptions in ("", "all") else
                                     parse_corruptions(job.corruptions, job.severities),
                                     classes=val_classes, storage_options=job.storage_options)
        for (c, s), plan in plans.items():
            name = f"{c}/{s}"
            sets[name] = EvalSet(kind="corruption", corruption=c, severity=s, uri=plan.uri)
            ds, _ = _read(plan.uri, job, job.limit, plan=plan)
            # released images are already the crop (224 for ImageNet-C): resize to it, no larger decode
            parts.append(prepared(ds, name, size=image_size))
    elif job.corruptions:
        for c, s in parse_corruptions(job.corruptions, job.severities):
            name = f"{c}/{s}"
            sets[name] = EvalSet(kind="corruption", corruption=c, severity=s, generated=True)
            ds = prepared(_read(job.input, job, job.limit)[0], name)
            parts.append(ds.map_batches(corrupt_batch, fn_kwargs={"name": c, "severity": s, "seed": job.seed},
                                        num_cpus=1, compute=ray.data.TaskPoolStrategy(size=corruption_tasks),
                                        **common))
    for spec in job.ood:
        label, uri = parse_named(spec)
        ds, classes = _read(uri, job, job.limit)
        name = f"ood/{label}"
        if label in job.ood_subset:
            idx = _subset_indices(job.ood_subset[label], num_classes, job.storage_options)
        else:
            idx = _ood_indices(label, classes, val_classes, num_classes)
        sets[name] = EvalSet(kind="ood", uri=uri, indices=idx, classes=len(classes) if classes else None)
        parts.append(prepared(ds, name))
    if job.attack != "none":
        name = f"adversarial/{job.attack}"
        limit = job.attack_limit if job.attack_limit is not None else job.limit
        sets[name] = EvalSet(kind="adversarial", attack=job.attack, eps=job.eps,
                             **({"steps": job.steps, "step_size": job.step_size, "random_start": job.random_start}
                                if job.attack == "pgd" else {}))
        parts.append(prepared(_read(job.input, job, limit)[0], name))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    for s in sets.values():
        s.setdefault("image_size", image_size)
    return ds, sets


def _device(job: EvalJob) -> str:
    if job.device != "auto":
        return job.device
    return "gpu" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"


def collect(ds: ray.data.Dataset, n_models: int) -> dict[str, dict[str, np.ndarray]]:
    """Per set: labels, validity and each model's outcomes, gathered on the driver."""
    parts: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    columns = [VALID] + [f"{c}_{i}" for i in range(n_models) for c in ("top1", "top5", "conf")]
    for batch in ds.iter_batches(batch_format="numpy", batch_size=4096):
        sets = np.asarray(batch[SET], dtype=object)
        for name in dict.fromkeys(sets):
            rows = sets == name
            for col in columns:
                parts[name][col].append(np.asarray(batch[col])[rows])
    return {name: {col: np.concatenate(v) for col, v in cols.items()} for name, cols in parts.items()}


def _scores(outcomes: dict[str, np.ndarray], i: int, bin_size: int) -> dict[str, Any]:
    valid = outcomes[VALID]
    top1, top5, conf = (outcomes[f"{c}_{i}"][valid] for c in ("top1", "top5", "conf"))
    n = int(valid.sum())
    return {
        "rows": n,
        "invalid": int((~valid).sum()),
        "top1_error": float(1 - top1.mean()) if n else None,
        "top5_error": float(1 - top5.mean()) if n else None,
        "rms_calibration_error": metrics.rms_calibration_error(conf, top1, bin_size=bin_size) if n else None,
    }


def evaluate(job: EvalJob) -> dict[str, Any]:
    """Run every model over every set; the report (a JSON-able dict)."""
    specs = [resolve(*parse_named(c), storage_options=job.storage_options) for c in job.checkpoints]
    classes = {s.num_classes for s in specs}
    if len(classes) > 1:
        raise ValueError(f"the checkpoints have different numbers of classes: {sorted(classes)}")
    if job.image_size is None and len({s.image_size for s in specs}) > 1:
        raise ValueError("the checkpoints were trained at different image sizes; give --image-size")
    device = _device(job)
    resources = ray.cluster_resources()
    actors = job.actors or (max(1, int(resources.get("GPU", 1))) if device == "gpu" else 1)
    branches = 0 if job.corrupted or not job.corruptions else len(parse_corruptions(job.corruptions, job.severities))
    cores, per_branch = corruption_pool(resources.get("CPU", 1), actors, branches, job.corruption_cpus)
    ds, sets = build_dataset(job, specs, corruption_tasks=per_branch if branches else None)
    if branches:
        gpus = resources.get("GPU", 0)
        log.info("corruption stage: %d CPU cores for %d branches (%d tasks each)%s", cores, branches, per_branch,
                 f", {cores / gpus:.1f} cores per GPU" if gpus else "")
    attack = None
    if job.attack != "none":
        attack = {"kind": job.attack, "eps": job.eps, "steps": job.steps, "step_size": job.step_size,
                  "random_start": job.random_start}
    started = time.perf_counter()
    ds = ds.map_batches(
        Predictor, fn_constructor_kwargs={"specs": specs, "sets": sets, "attack": attack, "seed": job.seed,
                                          "storage_options": job.storage_options, "device": device},
        batch_format="numpy", batch_size=job.batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if device == "gpu" else 0,
    )
    outcomes = collect(ds, len(specs))
    seconds = time.perf_counter() - started
    report = build_report(job, specs, sets, outcomes, device=device)
    report["throughput"] = throughput(report["sets"], len(specs), seconds, actors)
    if branches:
        report["corruption_pool"] = {"cpus": cores, "tasks_per_branch": per_branch, "branches": branches}
    return report


def build_report(job: EvalJob, specs: Sequence[ModelSpec], sets: dict[str, EvalSet],
                 outcomes: dict[str, dict[str, np.ndarray]], *, device: str = "cpu") -> dict[str, Any]:
    """The report of :func:`evaluate` from the gathered outcomes."""
    empty = {VALID: np.zeros(0, bool), **{f"{c}_{i}": np.zeros(0) for i in range(len(specs))
                                         for c in ("top1", "top5", "conf")}}
    models: dict[str, Any] = {}
    corrupt_sets = {n: s for n, s in sets.items() if s["kind"] == "corruption"}
    for i, spec in enumerate(specs):
        entry: dict[str, Any] = {"uri": spec.uri, "arch": spec.arch, "num_classes": spec.num_classes,
                                 "stem": spec.stem}
        clean = outcomes.get("clean", empty)
        entry["clean"] = _scores(clean, i, job.bin_size)
        v = clean[VALID]
        entry["clean"]["reliability"] = metrics.reliability_bins(clean[f"conf_{i}"][v], clean[f"top1_{i}"][v],
                                                                 bin_size=job.bin_size) if v.any() else []
        if corrupt_sets:
            per = {n: _scores(outcomes.get(n, empty), i, job.bin_size) for n in corrupt_sets}
            errors: dict[str, dict[int, float]] = defaultdict(dict)
            calib: dict[str, dict[int, float]] = defaultdict(dict)
            for n, s in corrupt_sets.items():
                if per[n]["top1_error"] is not None:
                    errors[s["corruption"]][s["severity"]] = per[n]["top1_error"]
                    calib[s["corruption"]][s["severity"]] = per[n]["rms_calibration_error"]
            entry["corruptions"] = _corruption_summary(job, spec, errors, calib, per)
        entry["ood"] = {n.split("/", 1)[1]: _scores(outcomes.get(n, empty), i, job.bin_size)
                        for n, s in sets.items() if s["kind"] == "ood"}
        for n, s in sets.items():
            if s["kind"] == "adversarial":
                entry["adversarial"] = {**_scores(outcomes.get(n, empty), i, job.bin_size),
                                        **{k: v for k, v in s.items() if k != "kind"}}
        models[spec.name] = entry
    if job.baseline and corrupt_sets:
        base = models[job.baseline]
        for name, entry in models.items():
            errs = entry["corruptions"]["errors"]
            berrs = base["corruptions"]["errors"]
            try:
                rel = metrics.relative_mce(_intkeys(errs), entry["clean"]["top1_error"], _intkeys(berrs),
                                           base["clean"]["top1_error"])
                ce = metrics.mean_corruption_error(_intkeys(errs), normalize=_intkeys(berrs))
            except (ValueError, ZeroDivisionError, TypeError) as err:
                entry["corruptions"]["vs_baseline"] = {"baseline": job.baseline, "error": str(err)}
                continue
            entry["corruptions"]["vs_baseline"] = {"baseline": job.baseline, "mce": ce["mce"], "ce": ce["ce"], **rel}
    counts = {n: {"rows": int(outcomes.get(n, empty)[VALID].sum()),
                  "invalid": int((~outcomes.get(n, empty)[VALID]).sum())} for n in sets}
    return {
        "settings": {k: v for k, v in vars(job).items() if k != "storage_options"},
        "device": device,
        "sets": {n: {**dict(s), **counts[n]} for n, s in sets.items()},
        "models": models,
        "summary": {name: _summary(m) for name, m in models.items()},
    }


def throughput(sets: dict[str, dict], n_models: int, seconds: float, actors: int) -> dict[str, Any]:
    """The run's rate: images scored (every set's valid rows, corrupted, adversarial and OOD copies
    included, each scored by every checkpoint) per second of the whole pipeline (reading, decoding,
    corrupting, inference), overall and per inference actor (one GPU each on a GPU cluster)."""
    images = sum(s["rows"] for s in sets.values()) * n_models
    rate = images / seconds if seconds > 0 else 0.0
    return {"seconds": round(seconds, 3), "images_scored": images, "images_per_s": round(rate, 2),
            "actors": actors, "images_per_s_per_actor": round(rate / max(actors, 1), 2)}


def _intkeys(errors: dict) -> dict[str, dict[int, float]]:
    return {c: {int(s): e for s, e in sev.items()} for c, sev in errors.items()}


def _corruption_summary(job, spec, errors, calib, per) -> dict[str, Any]:
    complete = all(c in errors and sorted(errors[c]) == list(metrics.SEVERITIES) for c in metrics.CORRUPTIONS)
    mode = job.mce
    if mode == "auto":
        mode = "alexnet" if complete and spec.num_classes == 1000 else "none"
    out: dict[str, Any] = {
        "errors": {c: {str(s): e for s, e in sorted(sev.items())} for c, sev in errors.items()},
        "rms_calibration_error": {c: {str(s): e for s, e in sorted(sev.items())} for c, sev in calib.items()},
        "mean_rms_calibration_error": float(np.mean([e for sev in calib.values() for e in sev.values()]))
        if calib else None,
        "mce_normalization": mode,
        "rows": sum(p["rows"] for p in per.values()),
    }
    if errors:
        res = metrics.mean_corruption_error(dict(errors), normalize="alexnet" if mode == "alexnet" else None)
        out["mce"], out["ce"] = res["mce"], res["ce"]
        if mode == "alexnet":
            extra = [c for c in metrics.EXTRA_CORRUPTIONS if c in errors]
            if extra:
                out["extra_mean_error"] = 100 * float(np.mean([np.mean(list(errors[c].values())) for c in extra]))
    return out


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    out = {"clean_top1_error": m["clean"]["top1_error"], "clean_rms_calibration_error": m["clean"]["rms_calibration_error"]}
    if "corruptions" in m:
        out["mce"] = m["corruptions"].get("mce")
        out["mce_normalization"] = m["corruptions"]["mce_normalization"]
        out["corruption_rms_calibration_error"] = m["corruptions"]["mean_rms_calibration_error"]
        if "vs_baseline" in m["corruptions"]:
            out["relative_mce"] = m["corruptions"]["vs_baseline"].get("relative_mce")
    for name, o in m.get("ood", {}).items():
        out[f"ood/{name}_top1_error"] = o["top1_error"]
    if "adversarial" in m:
        out[f"adversarial/{m['adversarial']['attack']}_error"] = m["adversarial"]["top1_error"]
    return out
