"""How big a run is: GPU-hours, wall time, CPU cores, network and S3 requests for a dataset.

Pure arithmetic (no torch, no Ray), behind ``raymix plan``. The inputs, and where each comes
from:

- **GPU work per output image: FLOPs counted, throughput estimated.** FLOPs were counted with
  ``torch.utils.flop_counter.FlopCounterMode`` on the real model code (diffusers,
  transformers) at the real shapes, on the meta device or on CPU with random weights;
  ``tests/test_sizing.py`` recounts the InstructPix2Pix figures from ``raymix.models.editor``.
  Time per image is FLOPs / (device peak x MFU); MFU defaults to the 40% target of the GPU
  benchmark, **an estimate until ``raymix bench gpu`` is measured on the GPU**
  (docs/performance.md). Matmuls, convolutions and attention are counted; elementwise work is
  not, as usual for MFU.
- **CPU work per output image: measured** on the 2-core development VM (AMD EPYC, one thread,
  CPU time): the method kernels from ``raymix bench cpu`` (docs/performance.md, 224x224; the
  rates are ``MethodEntry.cpu_images_per_s_224`` in :mod:`raymix.registry`) and
  decode / encode from ``raymix.io.decode`` on 500x375 JPEG sources at 224-1024. Method time
  is scaled with output pixels; decoding happens once per source image, whatever the
  replicas.
- **Bytes:** ImageNet's own JPEGs (the ILSVRC2012 train tar: 147,897,477,120 bytes for
  1,281,167 images, about 115 KB each) for the input; output JPEGs at quality 95 are
  estimated at ``output_bpp`` bits per pixel (5, as ImageNet's photos average).

Resolutions between or beyond the counted / measured ones use ``a*p + b*p**2`` in the pixel
count ``p`` (convolutions and linear layers grow with ``p``, self-attention with ``p**2``),
fitted on the two nearest known points; known points are exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from raymix import registry
from raymix.schema import DEFAULT_ROWS_PER_FILE

__all__ = [
    "GPU_METHODS",
    "CPU_METHODS",
    "SIZED_METHODS",
    "IMAGENET_TRAIN_IMAGES",
    "PlanInput",
    "Plan",
    "gpu_flops_per_output",
    "cpu_seconds_per_output",
    "make_plan",
]

IMAGENET_TRAIN_IMAGES = 1_281_167
IMAGENET_TRAIN_TAR_BYTES = 147_897_477_120
TFLOP = 1e12


class Known:
    """Values known at some resolutions; ``a*p + b*p**2`` (``p`` = pixels) between and beyond them."""

    def __init__(self, points: dict[int, float]):
        self.points = dict(sorted(points.items()))

    def at(self, resolution: int) -> float:
        if resolution in self.points:
            return self.points[resolution]
        if resolution <= 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        sides = list(self.points)
        if resolution < sides[0]:
            lo, hi = sides[0], sides[1]
        elif resolution > sides[-1]:
            lo, hi = sides[-2], sides[-1]
        else:
            hi = next(r for r in sides if r > resolution)
            lo = sides[sides.index(hi) - 1]
        (p1, f1), (p2, f2) = ((r * r, self.points[r]) for r in (lo, hi))
        det = p1 * p2 * (p2 - p1)
        a = (f1 * p2 * p2 - f2 * p1 * p1) / det
        b = (f2 * p1 - f1 * p2) / det
        p = resolution * resolution
        return a * p + b * p * p


# -- GPU: FLOPs counted with FlopCounterMode (see the module docstring) ------------------------

# InstructPix2Pix (SD1.5 UNet with 8 input channels), the editor of raymix.models.editor:
# one denoising step = the UNet on the 3 guidance branches; fixed = VAE encode + decode.
IP2P_STEP_FLOPS = Known({256: 540_390_113_280, 384: 1_269_195_386_880, 512: 2_410_103_439_360,
                         768: 6_445_002_178_560})
IP2P_FIXED_FLOPS = Known({256: 894_909_448_192, 384: 2_025_625_853_952, 512: 3_631_177_400_320,
                          768: 8_363_422_679_040})
# SDXL base (UNet 2.567e9 parameters, diffusers config of stabilityai/stable-diffusion-xl-base-1.0):
# one step = the UNet on 2 classifier-free-guidance branches; the VAE decodes once.
SDXL_STEP_FLOPS = Known({768: 7_282_417_991_680, 1024: 13_522_472_796_160})
SDXL_VAE_DECODE_FLOPS = Known({768: 5_754_304_364_544, 1024: 10_470_392_594_432})
# The two SDXL text encoders (CLIP ViT-L 123.1M + OpenCLIP bigG 694.7M parameters), 77 tokens.
SDXL_TEXT_FLOPS = 2 * 817_720_320 * 77
# SAM ViT-H (641M parameters) image encoder at 1024x1024 plus the prompt encoder and mask
# decoder for one box.
SAM_VIT_H_FLOPS = 5_964_707_533_824
# GroundingDINO-T (Swin-T + BERT-base, 172M parameters) at 800x1067 (a 4:3 ImageNet image
# after its shorter-side-800 resize), one superclass prompt. Deformable-attention sampling
# (grid_sample) is not counted.
GROUNDING_DINO_T_FLOPS = 656_944_060_672
# Llama-2-13B (AGA: Llama-2-13B-GPTQ): 2 FLOPs per parameter per token, prompt + caption.
LLAMA2_13B_PARAMS = 13_015_864_320
CAPTION_TOKENS = 64 + 64

# Steps of the DiffuseMix editor's presets (raymix.models.editor): paper 100, fast 20.
DIFFUSEMIX_PRESET_STEPS = {"paper": 100, "fast": 20}

# FLOPs per output image of each GPU model a method runs (``MethodEntry.gpu_models``), from the
# output side, the denoising steps and the replicas (models that run once per source image are
# shared by its replicas).
MODEL_FLOPS = {
    "instructpix2pix": lambda res, steps, replicas: steps * IP2P_STEP_FLOPS.at(res) + IP2P_FIXED_FLOPS.at(res),
    "grounding_dino_t": lambda res, steps, replicas: GROUNDING_DINO_T_FLOPS / replicas,
    "sam_vit_h": lambda res, steps, replicas: SAM_VIT_H_FLOPS / replicas,
    "llama2_13b_caption": lambda res, steps, replicas: 2 * LLAMA2_13B_PARAMS * CAPTION_TOKENS,
    "sdxl_background": lambda res, steps, replicas: steps * SDXL_STEP_FLOPS.at(res) + SDXL_VAE_DECODE_FLOPS.at(res)
    + SDXL_TEXT_FLOPS,
}


def plannable(name: str):
    """The registry entry of a method ``raymix plan`` can size: one with a measured CPU rate."""
    entry = registry.method(name)
    if entry.cpu_images_per_s_224 is None:
        raise ValueError(f"{name} has no measured CPU rate to size it with; choose from {', '.join(SIZED_METHODS)}")
    return entry


def gpu_flops_per_output(method: str, resolution: int, steps: int, replicas: int = 1) -> dict[str, float]:
    """FLOPs per output image, by model; empty for CPU methods."""
    return {model: MODEL_FLOPS[model](resolution, steps, replicas) for model in plannable(method).gpu_models}


# -- CPU: measured (see the module docstring) -----------------------------------------------

# raymix.io.decode on 500x375 JPEG sources, one thread, CPU time (2026-11-24): decode_batch to
# a side x side crop, and encode_batch of that crop (JPEG quality 95); milliseconds per image.
DECODE_MS = Known({224: 2.102, 256: 2.392, 512: 4.916, 1024: 11.226})
ENCODE_MS = Known({224: 0.196, 256: 0.238, 512: 0.778, 1024: 2.773})
CPU_DEFAULT_RESOLUTION = 224

#: What ``raymix plan`` sizes: methods with a measured CPU rate, GPU methods first.
GPU_METHODS = tuple(e.name for e in registry.methods(available=None) if e.gpu_models and e.cpu_images_per_s_224)
CPU_METHODS = tuple(e.name for e in registry.methods(available=None) if not e.gpu_models and e.cpu_images_per_s_224)
SIZED_METHODS = GPU_METHODS + CPU_METHODS


def cpu_seconds_per_output(method: str, resolution: int, replicas: int = 1) -> dict[str, float]:
    """CPU seconds per output image: decode (shared by the replicas of a source), method, encode."""
    rate = plannable(method).cpu_images_per_s_224
    scale = resolution * resolution / (224 * 224)
    return {
        "decode": DECODE_MS.at(resolution) / 1e3 / replicas,
        "method": scale / rate,
        "encode": ENCODE_MS.at(resolution) / 1e3,
    }


# -- the plan -------------------------------------------------------------------------------

S3_PART_BYTES = 50 * 2**20  # s3fs block size: objects above it go up as multipart uploads
S3_GET_BYTES = 50 * 2**20  # read-ahead per ranged GET of a shard (s3fs block size)


@dataclass
class PlanInput:
    """What to plan for; ``None`` fields take the method's defaults."""

    method: str = "diffusemix"
    images: int = IMAGENET_TRAIN_IMAGES
    replicas: int = 1
    resolution: int | None = None
    steps: int | None = None
    gpu: str = "H100"
    peak_tflops: float | None = None
    mfu: float = 0.40
    scales: tuple[int, ...] = ()  # GPU counts (GPU methods) or CPU cores (CPU methods)
    cpu_ms: float | None = None  # overrides the measured CPU cost per output image
    input_bytes: float = IMAGENET_TRAIN_TAR_BYTES / IMAGENET_TRAIN_IMAGES
    output_bpp: float = 5.0
    rows_per_file: int = DEFAULT_ROWS_PER_FILE
    folder_input: bool = False  # one GET per image (class folders) instead of ranged reads of shards

    def resolved(self) -> PlanInput:
        entry = plannable(self.method)
        out = PlanInput(**asdict(self))
        defaults = entry.gpu_defaults or {"resolution": CPU_DEFAULT_RESOLUTION, "steps": 0}
        out.resolution = self.resolution or defaults["resolution"]
        out.steps = self.steps if self.steps is not None else defaults["steps"]
        if not out.scales:
            out.scales = (8, 64, 256) if self.method in GPU_METHODS else (32, 256, 1024)
        if out.images < 1 or out.replicas < 1:
            raise ValueError("images and replicas must be at least 1")
        if not 0 < out.mfu <= 1:
            raise ValueError(f"mfu must be in (0, 1], got {out.mfu}")
        if out.method in GPU_METHODS and out.steps < 1:
            raise ValueError("steps must be at least 1")
        return out


@dataclass
class ScaleRow:
    """The run on ``workers`` GPUs (GPU methods) or CPU cores (CPU methods)."""

    workers: int
    wall_hours: float
    outputs_per_s: float
    cpu_cores: float  # CPU cores busy with decode, method and encode
    input_mb_per_s: float
    output_mb_per_s: float
    files_per_s: float
    s3_get_per_s: float
    s3_put_per_s: float


@dataclass
class Plan:
    input: PlanInput
    outputs: int
    peak_tflops: float | None
    tflop_per_output: dict[str, float]
    cpu_ms_per_output: dict[str, float]
    gpu_hours: float | None
    cpu_core_hours: float
    output_bytes_per_image: float
    output_files: int
    rows: list[ScaleRow] = field(default_factory=list)

    @property
    def gpu_seconds_per_output(self) -> float | None:
        if self.peak_tflops is None:
            return None
        return sum(self.tflop_per_output.values()) / (self.peak_tflops * self.input.mfu)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gpu_seconds_per_output"] = self.gpu_seconds_per_output
        return d


def _peak(gpu: str, override: float | None) -> float:
    if override:
        return override
    from raymix.bench.mfu import PEAK_DENSE_TFLOPS, peak_tflops

    found = peak_tflops(gpu) or peak_tflops(gpu.upper())
    if found is None:
        names = ", ".join(name for name, _ in PEAK_DENSE_TFLOPS)
        raise ValueError(f"unknown GPU {gpu!r}: give --peak-tflops, or one of {names}")
    return found


def make_plan(request: PlanInput) -> Plan:
    """The estimate for ``request`` (see the module docstring for every figure's source)."""
    p = request.resolved()
    outputs = p.images * p.replicas
    flops = gpu_flops_per_output(p.method, p.resolution, p.steps, p.replicas)
    cpu = cpu_seconds_per_output(p.method, p.resolution, p.replicas)
    cpu_s = p.cpu_ms / 1e3 if p.cpu_ms is not None else sum(cpu.values())
    gpu_method = p.method in GPU_METHODS
    peak = _peak(p.gpu, p.peak_tflops) if gpu_method else None
    gpu_s = sum(flops.values()) / (peak * TFLOP * p.mfu) if gpu_method else None

    out_bytes = p.resolution * p.resolution * p.output_bpp / 8
    file_bytes = out_bytes * p.rows_per_file
    puts_per_file = 1 if file_bytes <= S3_PART_BYTES else math.ceil(file_bytes / S3_PART_BYTES) + 2
    plan = Plan(
        input=p, outputs=outputs, peak_tflops=peak,
        tflop_per_output={k: v / TFLOP for k, v in flops.items()},
        cpu_ms_per_output={k: v * 1e3 for k, v in cpu.items()} if p.cpu_ms is None else {"given": p.cpu_ms},
        gpu_hours=outputs * gpu_s / 3600 if gpu_method else None,
        cpu_core_hours=outputs * cpu_s / 3600,
        output_bytes_per_image=out_bytes,
        output_files=math.ceil(outputs / p.rows_per_file),
    )
    for workers in p.scales:
        rate = workers / gpu_s if gpu_method else workers / cpu_s  # outputs per second
        sources = rate / p.replicas
        files = rate / p.rows_per_file
        gets = sources if p.folder_input else sources * p.input_bytes / S3_GET_BYTES
        plan.rows.append(ScaleRow(
            workers=workers, wall_hours=outputs / rate / 3600, outputs_per_s=rate, cpu_cores=rate * cpu_s,
            input_mb_per_s=sources * p.input_bytes / 1e6, output_mb_per_s=rate * out_bytes / 1e6,
            files_per_s=files, s3_get_per_s=gets, s3_put_per_s=files * puts_per_file,
        ))
    return plan


#: The benchmark that measures a GPU method's stages (its figures replace the MFU estimate).
GPU_BENCH = {"diffusemix": "raymix bench gpu", "aga": "raymix bench aga"}


def _hours(h: float) -> str:
    if h >= 48:
        return f"{h / 24:.1f} d"
    if h >= 1:
        return f"{h:.1f} h"
    if h >= 1 / 60:
        return f"{h * 60:.0f} min"
    return f"{h * 3600:.0f} s"


def format_plan(plan: Plan) -> str:
    """The plan as the text ``raymix plan`` prints."""
    p = plan.input
    gpu_method = p.method in GPU_METHODS
    lines = [f"{p.method}: {p.images:,} images x {p.replicas} replica{'s' * (p.replicas != 1)} = {plan.outputs:,} outputs at "
             f"{p.resolution}x{p.resolution}" + (f", {p.steps} steps" if gpu_method else "")]
    if gpu_method:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in plan.tflop_per_output.items())
        total = sum(plan.tflop_per_output.values())
        lines += [
            f"GPU work per output: {total:.2f} TFLOP ({parts}) [counted]",
            f"GPU time per output: {plan.gpu_seconds_per_output:.3f} s on {p.gpu} ({plan.peak_tflops:g} TFLOP/s "
            f"dense bf16) at MFU {p.mfu:.2f} [ESTIMATE until {GPU_BENCH.get(p.method, 'raymix bench gpu')} "
            "is measured]",
            f"GPU-hours: {plan.gpu_hours:,.0f}",
        ]
    cpu_parts = ", ".join(f"{k} {v:.2f}" for k, v in plan.cpu_ms_per_output.items())
    lines += [
        f"CPU per output: {sum(plan.cpu_ms_per_output.values()):.2f} ms ({cpu_parts}) "
        f"[{'given' if p.cpu_ms is not None else 'measured on the 2-core dev VM'}]; "
        f"{plan.cpu_core_hours:,.0f} core-hours",
        f"output: {plan.output_files:,} files of {p.rows_per_file} rows, "
        f"{plan.output_bytes_per_image / 1e3:.0f} KB per image ({plan.outputs * plan.output_bytes_per_image / 1e12:.2f} TB)",
        "",
    ]
    head = ["GPUs" if gpu_method else "cores", "wall time", "outputs/s", "CPU cores" if gpu_method else "",
            "cores/GPU" if gpu_method else "",
            "in MB/s", "out MB/s", "files/s", "S3 GET/s", "S3 PUT/s"]
    table = [[str(r.workers), _hours(r.wall_hours), f"{r.outputs_per_s:,.1f}", f"{r.cpu_cores:,.1f}",
              f"{r.cpu_cores / r.workers:.2f}" if gpu_method else "", f"{r.input_mb_per_s:,.1f}",
              f"{r.output_mb_per_s:,.1f}", f"{r.files_per_s:.2f}", f"{r.s3_get_per_s:,.1f}", f"{r.s3_put_per_s:.2f}"]
             for r in plan.rows]
    keep = [i for i, h in enumerate(head) if h]
    rows = [[head[i] for i in keep]] + [[row[i] for i in keep] for row in table]
    widths = [max(len(r[i]) for r in rows) for i in range(len(keep))]
    md = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    md.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines + md)
