import json

import numpy as np
import pytest

from raymix.bench import cpu
from raymix.bench.__main__ import main


def test_cpu_suite_prints_one_json_line_per_method(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RAYMIX_CACHE_DIR", str(tmp_path))
    assert main(["cpu", "--json", "--images", "4", "--batch", "2", "--repeats", "1",
                 "--methods", "pixmix", "diffusemix", "--fractals", "generated:4"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [r["method"] for r in lines] == ["pixmix", "diffusemix"]
    assert all(r["images"] == 4 and r["batch"] == 2 and r["repeats"] == 1 for r in lines)


def test_figures_are_medians_of_cpu_time_per_variant(monkeypatch, tmp_path):
    """With a fake timer giving each variant known CPU seconds, the figures follow from them."""
    monkeypatch.setenv("RAYMIX_CACHE_DIR", str(tmp_path))
    colour, gray, _ = cpu._banks("generated:4", 0)
    rng = np.random.default_rng(0)
    jpegs = [cpu._jpeg(cpu._photo(rng, 64, 48)) for _ in range(6)]
    decoded = cpu._decode(cpu._source_rows(jpegs))
    # Timed in the order ours, baseline, codec, stage; three repeats, the middle one an outlier.
    seconds = iter([2.0, 10.0, 1.0, 1.2] + [90.0, 1.0, 50.0, 0.1] + [3.0, 12.0, 1.0, 1.5])
    monkeypatch.setattr(cpu, "_cpu_and_wall", lambda fn: (next(seconds), 1.0))
    r = cpu.bench_method("pixmix", decoded=decoded, edited=None, jpegs=jpegs, colour=colour, gray=gray,
                         colour_pil=cpu._bank_pil(colour, 4, False), gray_pil=cpu._bank_pil(gray, 4, True),
                         batch=4, repeats=3, seed=0)
    assert r["images"] == 6
    assert r["images_per_s"] == 2.0 and r["baseline_images_per_s"] == 0.6  # 6 / 3.0, 6 / 10.0
    assert r["speedup"] == 3.33 and r["stage_vs_codec"] == 1.2
    assert r["targets"] == {"speedup>=5": False, "stage_vs_codec<=1.5": True}
    assert r["wall_images_per_s"] == 6.0


@pytest.mark.parametrize("name", ["pixmix", "ipmix", "layermix", "diffusemix", "aga"])
def test_baselines_return_uint8_images_of_the_input_size(name, monkeypatch, tmp_path):
    monkeypatch.setenv("RAYMIX_CACHE_DIR", str(tmp_path))
    colour, gray, _ = cpu._banks("generated:4", 0)
    method = cpu._build(name, colour, gray, 0)
    baseline = cpu._baseline(method.method, cpu._bank_pil(colour, 4, False), cpu._bank_pil(gray, 4, True))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    for _ in range(5):
        if name == "aga":
            out = baseline(image, image[:, ::-1].copy(), cpu._ellipse_mask(224, 224))
        else:
            out = baseline(image, image[:, ::-1].copy()) if name == "diffusemix" else baseline(image)
        assert out.dtype == np.uint8 and out.shape == image.shape
