"""Model FLOPs utilisation: FLOPs counted by PyTorch, divided by time and the device's peak.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode` on the real call
(matmuls, convolutions and attention; elementwise work is not counted, as usual for
MFU). Peaks are dense (no sparsity) bf16/fp16 tensor-core figures from the vendors'
data sheets; ``--peak-tflops`` overrides them for devices not listed. The peak table
imports without torch (``raymix plan`` uses it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["PEAK_DENSE_TFLOPS", "count_flops", "device_name", "peak_tflops"]

# Substring of torch.cuda.get_device_name() -> dense bf16/fp16 TFLOP/s. More specific names first.
PEAK_DENSE_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("V100", 125.0),  # fp16 only
    ("T4", 65.0),  # fp16 only
)


def device_name(device: torch.device | str) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def peak_tflops(name: str) -> float | None:
    """Dense bf16/fp16 peak of a device named by ``torch.cuda.get_device_name``, or None if unknown."""
    for key, value in PEAK_DENSE_TFLOPS:
        if key in name:
            return value
    return None


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs performed by ``fn()`` (it runs once)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    aten = torch.ops.aten

    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    # The CPU flash-attention kernel is not in PyTorch's table; count it like the CUDA ones.
    with FlopCounterMode(display=False, custom_mapping={aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}) as counter:
        fn()
    return counter.get_total_flops()
