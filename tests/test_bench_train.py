import json

import pytest

from raymix.bench.__main__ import main


@pytest.mark.slow
def test_train_bench_reports_every_figure(ray_cluster, capsys):
    argv = ["train", "--json", "--arch", "resnet18", "--image-size", "32", "--batch-size", "4", "--steps", "1",
            "--warmup", "1", "--rounds", "1", "--images", "8", "--online", "augmix", "--data-actors", "1"]
    assert main(argv) == 0
    records = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.strip().splitlines())}
    assert set(records) == {"synthetic_step_s", "miamix_step_s", "miamix_overhead", "miamix_mix_s",
                            "streaming_step_s", "ingest_ratio"}
    assert records["synthetic_step_s"]["value"] > 0 and records["ingest_ratio"]["value"] > 0
    assert records["ingest_ratio"]["online"] == "augmix" and records["ingest_ratio"]["device"] == "cpu"
