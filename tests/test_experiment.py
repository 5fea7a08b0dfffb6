"""The small experiment (raymix experiment, docs/results.md) on a tiny setting, and training in one process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from raymix.tools.small_experiment import ExperimentSettings, markdown_table, run_experiment, summarize, train_config


def test_digits_export_is_stratified_and_readable(tmp_path):
    from raymix.io.readers import plan_read
    from raymix.tools.digits import write_digits

    out = write_digits(str(tmp_path), limit=60)
    assert out["rows"] == {"train": 40, "test": 20}
    plan = plan_read(out["test"])
    assert plan.layout == "folder" and plan.classes == [str(d) for d in range(10)] and plan.num_rows == 20


def test_local_training_is_reproducible_and_writes_a_train_checkpoint(tmp_path):
    from raymix.eval.models import build, resolve
    from raymix.tools.digits import write_digits
    from raymix.train.local import local_fit

    data = write_digits(str(tmp_path / "data"), limit=40)
    settings = ExperimentSettings(out=str(tmp_path), epochs=1, batch_size=8)
    # MiAMix brings the second view through the data stage (the online methods' own path is
    # test_train_data.py's Ray-vs-local test)
    config = train_config(settings, "none", seed=3).replace(miamix=True)
    a = local_fit(data["train"], config, str(tmp_path / "a"))
    b = local_fit(data["train"], config, str(tmp_path / "b"))
    assert a["train_rows"] == 26 and a["step"] == 4 and np.isfinite(a["train_loss"])
    wa, wb = (torch.load(r["checkpoint"], weights_only=True)["model"] for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # same seed, same weights
    spec = resolve("a", a["checkpoint"])
    assert (spec.arch, spec.num_classes, spec.image_size, spec.stem) == ("wrn10_1", 10, 32, "cifar")
    assert build(spec)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_summary_is_mean_and_sample_std_over_seeds():
    settings = ExperimentSettings(out="x", methods=["none"], seeds=[0, 1])
    runs = {"none-s0": {"clean_top1_error": 0.10, "mce": 30.0}, "none-s1": {"clean_top1_error": 0.20, "mce": 40.0}}
    summary = summarize({"summary": runs}, settings)
    clean = summary["methods"]["none"]["clean_top1_error"]
    assert clean["mean"] == pytest.approx(15.0) and clean["std"] == pytest.approx(7.0710678)
    assert summary["methods"]["none"]["mce"]["mean"] == pytest.approx(35.0)
    assert summary["methods"]["none"]["adversarial/pgd_error"]["mean"] is None
    assert "| none | 15.0 ± 7.1 | 35.0 ± 7.1 | - | - | - |" in markdown_table(summary)


def test_command_line():
    from raymix.cli import build_parser

    args = build_parser().parse_args(["experiment", "--out", "o", "--methods", "none,augmix", "--seeds", "0,2"])
    assert (args.methods, args.seeds, args.epochs) == (["none", "augmix"], [0, 2], ExperimentSettings.epochs)
    with pytest.raises(ValueError, match="unknown methods"):
        ExperimentSettings(out="o", methods=["cutout"])


@pytest.mark.slow
def test_tiny_experiment_end_to_end(ray_cluster, tmp_path):
    settings = ExperimentSettings(out=str(tmp_path), methods=["none", "augmix"], seeds=[0], epochs=1,
                                  limit=40, corruptions="gaussian_noise", severities="1", attack_limit=4,
                                  eval_actors=1, jobs=1)
    summary = run_experiment(settings)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert set(on_disk["methods"]) == {"none", "augmix"}
    for entry in on_disk["methods"].values():
        assert 0 <= entry["clean_top1_error"]["mean"] <= 100 and len(entry["clean_top1_error"]["values"]) == 1
        assert 0 <= entry["adversarial/pgd_error"]["mean"] <= 100 and entry["mce"]["mean"] is not None
    table = (tmp_path / "results.md").read_text()
    assert "| none |" in table and "| augmix |" in table
    for name in ("measures.png", "corruption_errors.png", "eval/report.json"):
        assert (tmp_path / name).stat().st_size > 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert set(report["models"]) == {"none-s0", "augmix-s0"}
    assert report["sets"]["clean"]["rows"] == 14 and report["sets"]["adversarial/pgd"]["rows"] == 4
    assert summary["timing_s"]["total"] > 0
