"""Writing the evaluation report: ``report.json``, ``report.md`` (the checkpoints side by side)
and two PNG plots drawn with Pillow (error per corruption per checkpoint; reliability diagram)."""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image, ImageDraw

from raymix.eval.metrics import ALL_CORRUPTIONS
from raymix.io import storage

__all__ = ["write_report", "markdown", "corruption_plot", "reliability_plot", "REPORT_FILES"]

REPORT_FILES = ("report.json", "report.md", "corruption_errors.png", "reliability.png")
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127)]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """The checkpoints side by side: summary table, then error per corruption (mean over severities)."""
    models = report["models"]
    names = list(models)
    lines = ["# Robustness evaluation", ""]
    cols = ["checkpoint", "clean top-1 err %", "clean top-5 err %", "clean RMS calib %"]
    first = models[names[0]]
    has_c = "corruptions" in first
    if has_c:
        cols += [f"mCE ({first['corruptions']['mce_normalization']})", "corrupted RMS calib %"]
        if "vs_baseline" in first["corruptions"]:
            cols += [f"relative mCE (vs {first['corruptions']['vs_baseline']['baseline']})"]
    oods = list(first.get("ood", {}))
    cols += [f"{o} top-1 err %" for o in oods]
    if "adversarial" in first:
        cols += [f"{first['adversarial']['attack'].upper()} err %"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, m in models.items():
        row = [name, _pct(m["clean"]["top1_error"]), _pct(m["clean"]["top5_error"]),
               _pct(m["clean"]["rms_calibration_error"])]
        if has_c:
            c = m["corruptions"]
            row += [_num(c.get("mce")), _pct(c.get("mean_rms_calibration_error"))]
            if "vs_baseline" in first["corruptions"]:
                row += [_num(c.get("vs_baseline", {}).get("relative_mce"))]
        row += [_pct(m["ood"][o]["top1_error"]) for o in oods]
        if "adversarial" in first:
            row += [_pct(m["adversarial"]["top1_error"])]
        lines.append("| " + " | ".join(row) + " |")
    if has_c:
        corr = [c for c in ALL_CORRUPTIONS if c in first["corruptions"]["errors"]]
        lines += ["", "## Top-1 error per corruption (%, mean over severities)", "",
                  "| corruption | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        for c in corr:
            vals = []
            for n in names:
                sev = models[n]["corruptions"]["errors"].get(c, {})
                vals.append(_pct(sum(sev.values()) / len(sev)) if sev else "-")
            lines.append(f"| {c} | " + " | ".join(vals) + " |")
    lines += ["", "## Sets", "", "| set | rows | invalid |", "|---|---|---|"]
    for n, s in report["sets"].items():
        lines.append(f"| {n} | {s['rows']} | {s['invalid']} |")
    return "\n".join(lines) + "\n"


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def corruption_plot(report: dict[str, Any], width: int = 900, height: int = 420) -> bytes | None:
    """Grouped bars: top-1 error per corruption (mean over severities), one bar per checkpoint."""
    models = report["models"]
    names = list(models)
    if "corruptions" not in models[names[0]]:
        return None
    corr = [c for c in ALL_CORRUPTIONS if c in models[names[0]]["corruptions"]["errors"]]
    if not corr:
        return None
    im = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(im)
    left, right, top, bottom = 50, width - 10, 30, height - 90
    d.line([(left, top), (left, bottom), (right, bottom)], fill="black")
    for t in range(0, 101, 20):
        y = bottom - (bottom - top) * t / 100
        d.line([(left - 4, y), (left, y)], fill="black")
        d.text((5, y - 6), f"{t}%", fill="black")
    group = (right - left) / len(corr)
    bar = group * 0.8 / len(names)
    for ci, c in enumerate(corr):
        x0 = left + ci * group + group * 0.1
        for mi, n in enumerate(names):
            sev = models[n]["corruptions"]["errors"].get(c, {})
            if not sev:
                continue
            err = sum(sev.values()) / len(sev)
            y = bottom - (bottom - top) * err
            d.rectangle([x0 + mi * bar, y, x0 + (mi + 1) * bar - 1, bottom], fill=_COLOURS[mi % len(_COLOURS)])
        label = c.replace("_", " ")[:12]
        d.text((x0, bottom + 5 + 12 * (ci % 2)), label, fill="black")
    for mi, n in enumerate(names):
        y = height - 40 + 0 * mi
        x = left + mi * 160
        d.rectangle([x, y, x + 10, y + 10], fill=_COLOURS[mi % len(_COLOURS)])
        d.text((x + 14, y - 1), n[:22], fill="black")
    d.text((left, 8), "top-1 error per corruption (mean over severities)", fill="black")
    return _png(im)


def reliability_plot(report: dict[str, Any], size: int = 420) -> bytes:
    """Reliability diagram of the clean set: accuracy against mean confidence per adaptive bin."""
    im = Image.new("RGB", (size + 60, size + 80), "white")
    d = ImageDraw.Draw(im)
    left, top = 45, 25
    right, bottom = left + size, top + size

    def xy(conf: float, acc: float) -> tuple[float, float]:
        return left + conf * size, bottom - acc * size

    d.rectangle([left, top, right, bottom], outline="black")
    d.line([xy(0, 0), xy(1, 1)], fill=(160, 160, 160))
    for t in range(0, 11, 2):
        d.text((left - 28, bottom - size * t / 10 - 6), f"{t / 10:.1f}", fill="black")
        d.text((left + size * t / 10 - 8, bottom + 4), f"{t / 10:.1f}", fill="black")
    for mi, (name, m) in enumerate(report["models"].items()):
        colour = _COLOURS[mi % len(_COLOURS)]
        points = [xy(b["confidence"], b["accuracy"]) for b in m["clean"].get("reliability", [])]
        if len(points) > 1:
            d.line(points, fill=colour, width=2)
        for x, y in points:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        d.rectangle([left + mi * 150, bottom + 24, left + mi * 150 + 10, bottom + 34], fill=colour)
        d.text((left + mi * 150 + 14, bottom + 23), name[:20], fill="black")
    d.text((left, 6), "clean reliability: accuracy vs confidence (adaptive bins)", fill="black")
    d.text((left, bottom + 44), "x: mean confidence, y: accuracy", fill="black")
    return _png(im)


def write_report(report: dict[str, Any], output: str, *, storage_options: dict | None = None) -> list[str]:
    """Write the report files under ``output``; returns their URIs."""
    fs, root = storage.filesystem(output, storage_options)
    fs.makedirs(root, exist_ok=True)
    files = {
        "report.json": json.dumps(report, indent=1, default=str).encode(),
        "report.md": markdown(report).encode(),
        "reliability.png": reliability_plot(report),
    }
    plot = corruption_plot(report)
    if plot is not None:
        files["corruption_errors.png"] = plot
    written = []
    for name, data in files.items():
        storage.atomic_write(fs, storage.join(root, name), data)
        written.append(storage.join(output, name))
    return written
