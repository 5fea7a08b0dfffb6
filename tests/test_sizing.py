"""`raymix plan` arithmetic, checked by hand, and the docs tables it produces."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from raymix.cli import main
from raymix.tools.sizing import (
    IMAGENET_TRAIN_IMAGES,
    IP2P_FIXED_FLOPS,
    IP2P_STEP_FLOPS,
    Known,
    PlanInput,
    cpu_seconds_per_output,
    gpu_flops_per_output,
    make_plan,
)

ROOT = Path(__file__).resolve().parents[1]


def test_known_values_are_exact_and_the_fit_is_a_p_plus_b_p_squared():
    k = Known({1: 1.0, 2: 6.0})  # p = 1, 4: a + b = 1, 4a + 16b = 6 -> b = 1/6, a = 5/6
    assert k.at(1) == 1.0 and k.at(2) == 6.0
    assert k.at(3) == pytest.approx(5 / 6 * 9 + 1 / 6 * 81)  # 21, beyond the points
    three = Known({1: 1.0, 2: 6.0, 4: 100.0})  # 3 lies between 2 and 4: fitted on those two
    # p = 4, 16: 4a + 16b = 6, 16a + 256b = 100 -> b = (100 - 24) / 192, a = 1.5 - 4b
    b = 76 / 192
    assert three.at(3) == pytest.approx((1.5 - 4 * b) * 9 + b * 81)


def test_diffusemix_flops_match_the_gpu_benchmark_reference():
    # docs/performance.md: 11.70 TFLOP at 256 and 51.83 at 512, 20 steps.
    assert sum(gpu_flops_per_output("diffusemix", 256, 20).values()) / 1e12 == pytest.approx(11.70, abs=0.005)
    assert sum(gpu_flops_per_output("diffusemix", 512, 20).values()) / 1e12 == pytest.approx(51.83, abs=0.005)


def test_diffusemix_on_imagenet_with_nine_prompts():
    plan = make_plan(PlanInput(method="diffusemix", replicas=9))
    assert plan.outputs == 11_530_503
    # 100 steps x 0.54039 + 0.89491 = 54.934 TFLOP per edit; an H100 at 40% of 989 TFLOP/s
    # does 395.6 TFLOP/s: 0.13886 s per edit; x 11,530,503 edits = 1,601,150 s = 444.8 GPU-hours.
    assert plan.tflop_per_output["instructpix2pix"] == pytest.approx(54.934, abs=1e-3)
    assert plan.gpu_seconds_per_output == pytest.approx(0.13886, abs=1e-5)
    assert plan.gpu_hours == pytest.approx(444.76, abs=0.05)
    by_gpus = {r.workers: r for r in plan.rows}
    assert by_gpus[8].wall_hours == pytest.approx(444.76 / 8, abs=0.01)
    assert by_gpus[256].outputs_per_s == pytest.approx(256 / 0.13886, rel=1e-4)  # 1843.6
    # Input: each source feeds 9 outputs; ImageNet JPEGs average 147,897,477,120 / 1,281,167 B.
    assert by_gpus[256].input_mb_per_s == pytest.approx(1843.6 / 9 * 115_439.66 / 1e6, rel=1e-4)
    # Output: 256 x 256 x 5 bits = 40,960 B per JPEG; 1000 rows per file -> 41 MB, one PUT each.
    assert plan.output_bytes_per_image == 40_960
    assert by_gpus[256].output_mb_per_s == pytest.approx(1843.6 * 0.04096, rel=1e-4)
    assert by_gpus[256].s3_put_per_s == pytest.approx(1.8436, rel=1e-4)
    # CPU: decode 2.392 ms / 9 + mixing (256/224)^2 / 4999 s + encode 0.238 ms
    #    = 0.2658 + 0.2613 + 0.2380 = 0.7651 ms: 0.0055 cores per GPU.
    assert sum(plan.cpu_ms_per_output.values()) == pytest.approx(2.392 / 9 + (256 / 224) ** 2 / 4999 * 1e3 + 0.238,
                                                                 rel=1e-9)
    assert by_gpus[256].cpu_cores / 256 == pytest.approx(0.7651e-3 / 0.13886, rel=1e-3)


def test_fast_preset_and_other_gpus():
    fast = make_plan(PlanInput(method="diffusemix", steps=20))
    # 11.70 TFLOP / 395.6 TFLOP/s = 0.02958 s: 33.8 images/s per H100, as docs/performance.md says.
    assert 1 / fast.gpu_seconds_per_output == pytest.approx(33.8, abs=0.05)
    a100 = make_plan(PlanInput(method="diffusemix", steps=20, gpu="A100"))
    assert a100.gpu_hours == pytest.approx(fast.gpu_hours * 989 / 312, rel=1e-9)
    custom = make_plan(PlanInput(method="diffusemix", peak_tflops=100, mfu=0.5))
    assert custom.gpu_seconds_per_output == pytest.approx(54.934 / 50, rel=1e-4)


def test_aga_sums_its_models_and_shares_segmentation_between_replicas():
    one = gpu_flops_per_output("aga", 1024, 50, replicas=1)
    # SDXL: 50 x 13.5225 + 10.4704 (VAE) + 2 x 817.7M x 77 (text) = 686.72 TFLOP.
    assert one["sdxl_background"] / 1e12 == pytest.approx(50 * 13.522473 + 10.470393 + 0.125929, abs=1e-3)
    assert one["llama2_13b_caption"] / 1e12 == pytest.approx(2 * 13.0159 * 128 / 1e3, abs=1e-3)  # 3.33
    assert one["sam_vit_h"] / 1e12 == pytest.approx(5.965, abs=1e-3)
    two = gpu_flops_per_output("aga", 1024, 50, replicas=2)
    assert two["sam_vit_h"] == one["sam_vit_h"] / 2 and two["grounding_dino_t"] == one["grounding_dino_t"] / 2
    assert two["sdxl_background"] == one["sdxl_background"]
    plan = make_plan(PlanInput(method="aga"))
    total = sum(one.values()) / 1e12  # 696.67
    assert plan.gpu_hours == pytest.approx(IMAGENET_TRAIN_IMAGES * total / 395.6 / 3600, rel=1e-9)  # 626.7
    thirty = make_plan(PlanInput(method="aga", steps=30))
    assert thirty.gpu_hours / plan.gpu_hours == pytest.approx((total - 20 * 13.522473) / total, rel=1e-6)  # 0.612


def test_cpu_methods_use_the_measured_rates():
    cost = cpu_seconds_per_output("layermix", 224, replicas=2)
    assert cost == pytest.approx({"decode": 2.102e-3 / 2, "method": 1 / 1362, "encode": 0.196e-3})
    plan = make_plan(PlanInput(method="layermix", replicas=2, scales=(32,)))
    row = plan.rows[0]
    per_output = 2.102e-3 / 2 + 1 / 1362 + 0.196e-3  # 1.9812 ms
    assert row.outputs_per_s == pytest.approx(32 / per_output)  # 16,152 per second on 32 cores
    assert plan.gpu_hours is None and plan.cpu_core_hours == pytest.approx(2 * IMAGENET_TRAIN_IMAGES * per_output / 3600)
    given = make_plan(PlanInput(method="pixmix", cpu_ms=10.0, scales=(100,)))
    assert given.rows[0].outputs_per_s == pytest.approx(10_000)


def test_large_files_go_up_in_parts_and_folders_cost_a_get_per_image():
    # 1024 x 1024 x 5 bits = 655,360 B; 1000 rows = 655.4 MB = 12.5 x 50 MiB: 13 parts + create + complete.
    plan = make_plan(PlanInput(method="aga", scales=(64,), folder_input=True))
    row = plan.rows[0]
    assert row.s3_put_per_s == pytest.approx(row.files_per_s * 15)
    assert row.s3_get_per_s == pytest.approx(row.outputs_per_s)


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="unknown method"):
        make_plan(PlanInput(method="mixup"))
    with pytest.raises(ValueError, match="unknown GPU"):
        make_plan(PlanInput(gpu="Voodoo5"))
    with pytest.raises(ValueError, match="mfu"):
        make_plan(PlanInput(mfu=1.5))


def test_command_table_and_json(capsys):
    assert main(["plan", "--replicas", "9", "--gpus", "8,64"]) == 0
    text = capsys.readouterr().out
    assert "11,530,503 outputs" in text and "GPU-hours: 445" in text and "ESTIMATE" in text
    assert re.search(r"^\|\s+64 \|\s+6\.9 h \|", text, re.M)
    assert main(["plan", "--preset", "fast", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input"]["steps"] == 20 and [r["workers"] for r in data["rows"]] == [8, 64, 256]
    assert main(["plan", "--method", "ipmix", "--cpus", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][0]["workers"] == 64
    for bad in (["--method", "aga", "--preset", "fast"], ["--method", "pixmix", "--gpus", "8"],
                ["--gpu", "Voodoo5"], ["--gpus", "0"]):
        with pytest.raises(SystemExit):
            main(["plan", *bad])


def test_docs_tables_are_what_raymix_plan_prints(capsys):
    """Every ``<!-- raymix plan ARGS -->`` block in docs/scaling.md is the command's output."""
    text = (ROOT / "docs" / "scaling.md").read_text()
    blocks = re.findall(r"<!-- (raymix plan[^>]*) -->\n```text\n(.*?)```", text, re.S)
    assert len(blocks) >= 5
    for command, shown in blocks:
        assert main(shlex.split(command)[1:]) == 0
        assert capsys.readouterr().out == shown, command


@pytest.mark.parametrize("resolution", [256, 384])
def test_instructpix2pix_counts_are_the_editors(resolution):
    """Recount the constants on the meta device with the editor raymix runs (shapes only)."""
    import torch

    from raymix.bench.mfu import count_flops
    from raymix.models.editor import InstructPix2PixEditor

    def flops(steps: int) -> int:
        ed = InstructPix2PixEditor("random-sd15", device="meta", dtype="bf16", preset="fast", steps=steps,
                                   resolution=resolution)
        prompt = ed.library.text(0)
        ed.encode_prompts([prompt])
        images = torch.zeros(1, 3, resolution, resolution, dtype=torch.uint8)
        return count_flops(lambda: ed.edit(images, [prompt], [torch.Generator().manual_seed(0)]))

    one, two = flops(1), flops(2)
    assert two - one == IP2P_STEP_FLOPS.at(resolution)
    assert 2 * one - two == IP2P_FIXED_FLOPS.at(resolution)
