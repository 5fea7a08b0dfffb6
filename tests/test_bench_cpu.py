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
    for r in lines:
        for field in ("images_per_s", "baseline_images_per_s", "speedup", "stage_vs_codec"):
            assert r[field] > 0
        assert r["speedup"] == pytest.approx(r["images_per_s"] / r["baseline_images_per_s"], rel=0.02)


@pytest.mark.parametrize("name", ["pixmix", "ipmix", "layermix", "diffusemix"])
def test_baselines_return_uint8_images_of_the_input_size(name, monkeypatch, tmp_path):
    monkeypatch.setenv("RAYMIX_CACHE_DIR", str(tmp_path))
    colour, gray, _ = cpu._banks("generated:4", 0)
    method = cpu._build(name, colour, gray, 0)
    baseline = cpu._baseline(method, cpu._bank_pil(colour, 4, False), cpu._bank_pil(gray, 4, True))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    for _ in range(5):
        out = baseline(image, image[:, ::-1].copy()) if name == "diffusemix" else baseline(image)
        assert out.dtype == np.uint8 and out.shape == image.shape
