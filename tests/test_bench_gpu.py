"""`raymix bench gpu`: the CPU smoke path, and the FLOP count of the SD1.5-size model."""

from __future__ import annotations

import json

import pytest
import torch

from raymix.bench.mfu import count_flops, peak_tflops


def test_gpu_bench_smoke_on_cpu(capsys):
    from raymix.bench.__main__ import main

    argv = ["gpu", "--json", "--model", "tiny", "--resolution", "64", "--steps", "2", "--sweep", "1,2"]
    assert main(argv + ["--baseline-images", "1", "--iters", "1", "--peak-tflops", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["kind"], r["batch_size"]) for r in lines[:2]] == [("sweep", 1), ("sweep", 2)]
    result = lines[-1]
    assert result["kind"] == "result" and result["resolution"] == 64 and result["device"] == "cpu"
    assert result["images_per_s"] == max(r["images_per_s"] for r in lines[:2])
    # FLOPs grow with the batch: per image they are the same at batch 1 and 2.
    assert lines[0]["tflop_per_image"] == pytest.approx(lines[1]["tflop_per_image"], rel=1e-6)
    assert result["mfu"] == pytest.approx(result["achieved_tflops"] / 2)  # against --peak-tflops


@pytest.mark.parametrize("resolution,reference_tflop", [(256, 11.7), (512, 51.8)])
def test_random_sd15_flops_per_image(resolution, reference_tflop):
    """FLOPs of one image at 20 steps, counted on the meta device (shapes only, no compute).

    Text embeddings are cached per prompt, so the count is UNet x 3 branches x steps
    plus VAE encode and decode; the reference figures are the benchmark's targets.
    """
    from raymix.models.editor import InstructPix2PixEditor

    def flops(steps: int) -> int:
        ed = InstructPix2PixEditor(
            "random-sd15", device="meta", dtype="bf16", preset="fast", steps=steps, resolution=resolution
        )
        prompt = ed.library.text(0)
        ed.encode_prompts([prompt])  # warm the prompt cache, as the benchmark does
        images = torch.zeros(1, 3, resolution, resolution, dtype=torch.uint8)
        return count_flops(lambda: ed.edit(images, [prompt], [torch.Generator().manual_seed(0)]))

    one, two = flops(1), flops(2)
    per_step, fixed = two - one, 2 * one - two
    assert 20 * per_step > 10 * fixed  # the UNet dominates
    assert (fixed + 20 * per_step) / 1e12 == pytest.approx(reference_tflop, rel=0.01)


def test_peak_table():
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("NVIDIA L4") == 121.0
    assert peak_tflops("cpu") is None
