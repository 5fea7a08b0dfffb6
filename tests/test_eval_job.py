"""The evaluation job: settings, checkpoint loading, and one end-to-end run on Ray."""

from __future__ import annotations

import json

import pytest
import torch

from raymix import registry
from raymix.eval.job import EvalJob, parse_named
from raymix.train.config import TrainConfig
from raymix.train.models import build_model


def _checkpoint(path, *, image_size=32, num_classes=3, seed=0):
    torch.manual_seed(seed)
    config = TrainConfig(arch="resnet18", num_classes=num_classes, image_size=image_size)
    model = build_model("resnet18", num_classes, stem="cifar" if image_size <= 64 else "imagenet")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": {}, "epoch": 1, "step": 3,
             "config": config.to_dict()}
    path.mkdir(parents=True, exist_ok=True)
    torch.save(state, path / "state.pt")
    return model


def test_parse_named():
    assert parse_named("a=s3://b/c") == ("a", "s3://b/c")
    assert parse_named("s3://b/c?x=1") == ("s3://b/c?x=1", "s3://b/c?x=1")
    assert parse_named("/data/ckpt") == ("/data/ckpt", "/data/ckpt")


def test_settings_are_checked():
    with pytest.raises(ValueError, match="checkpoint"):
        EvalJob(checkpoints=[], input="v", output="o")
    with pytest.raises(ValueError, match="repeat"):
        EvalJob(checkpoints=["a=x", "a=y"], input="v", output="o")
    with pytest.raises(ValueError, match="baseline"):
        EvalJob(checkpoints=["a=x"], baseline="b", input="v", output="o")
    with pytest.raises(ValueError):
        EvalJob(checkpoints=["a=x"], input="v", output="o", corruptions="fogg")
    job = EvalJob(checkpoints=["a=x"], input="v", output="o")
    assert job.corruptions == "common" and job.attack == "none" and job.eps == 2 / 255


def test_registered_as_a_job():
    entry = registry.job("eval")
    assert entry.load_settings() is EvalJob
    assert entry.script == "jobs/eval_robustness.py"


def test_checkpoint_loads_weights_only(tmp_path):
    from raymix.eval.models import build, load_state, resolve

    model = _checkpoint(tmp_path / "ck")
    spec = resolve("m", str(tmp_path / "ck"))  # the folder, as Ray Train writes it
    assert (spec.arch, spec.num_classes, spec.stem, spec.image_size) == ("resnet18", 3, "cifar", 32)
    rebuilt = build(spec)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model.eval()(x))
    torch.save({"model": model.state_dict(), "evil": object()}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="weights_only"):
        load_state(str(tmp_path / "bad.pt"))


def test_ood_indices():
    from raymix.eval.inference import _ood_indices

    val = ["a", "b", "c", "d"]
    assert _ood_indices("r", ["b", "d"], val, 4) == [1, 3]
    assert _ood_indices("r", val, val, 4) is None
    assert _ood_indices("r", None, val, 4) is None


def test_ood_subset_from_a_list_or_a_file(tmp_path):
    from raymix.eval.inference import _subset_indices

    (tmp_path / "idx.json").write_text("[5, 1, 7]")
    assert _subset_indices(str(tmp_path / "idx.json"), 10, None) == [5, 1, 7]
    assert _subset_indices([2, 3], 10, None) == [2, 3]
    with pytest.raises(ValueError):
        _subset_indices([2, 2], 10, None)
    with pytest.raises(ValueError):
        _subset_indices([10], 10, None)
    with pytest.raises(ValueError, match="ood-subset"):
        EvalJob(checkpoints=["a=x"], input="v", output="o", ood=["r=u"], ood_subset={"s": [1]})


@pytest.mark.slow
def test_end_to_end_on_ray(ray_cluster, tmp_path):
    from raymix.eval.job import run
    from raymix.tools.sample_data import write_sample

    data = tmp_path / "val"
    write_sample(str(data), format="folder", classes=3, per_class=4, size=(48, 40), seed=0)
    _checkpoint(tmp_path / "a", seed=0)
    _checkpoint(tmp_path / "b", seed=1)
    out = tmp_path / "report"
    job = EvalJob(checkpoints=[f"a={tmp_path / 'a' / 'state.pt'}", f"b={tmp_path / 'b'}"], baseline="a",
                  input=str(data), corruptions="gaussian_noise,fog", severities="2", attack="fgsm",
                  ood=[f"sub={data}"], batch_size=8, device="cpu", output=str(out))
    report = run(job)
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["summary"] == json.loads(json.dumps(report["summary"]))
    for name in ("report.md", "corruption_errors.png", "reliability.png"):
        assert (out / name).stat().st_size > 0
    assert set(report["sets"]) == {"clean", "gaussian_noise/2", "fog/2", "ood/sub", "adversarial/fgsm"}
    assert all(s["rows"] == 12 and s["invalid"] == 0 for s in report["sets"].values())
    assert set(report["models"]) == {"a", "b"}
    for m in report["models"].values():
        assert m["clean"]["rows"] == 12
        assert 0 <= m["clean"]["top1_error"] <= 1 and m["clean"]["top5_error"] == 0.0  # 3 classes
        c = m["corruptions"]
        assert set(c["errors"]) == {"gaussian_noise", "fog"} and set(c["errors"]["fog"]) == {"2"}
        assert c["mce_normalization"] == "none" and c["rows"] == 24
        assert c["mce"] == pytest.approx(50 * (c["errors"]["gaussian_noise"]["2"] + c["errors"]["fog"]["2"]))
        assert m["adversarial"]["rows"] == 12 and m["adversarial"]["attack"] == "fgsm"
        assert m["ood"]["sub"]["top1_error"] == m["clean"]["top1_error"]  # the same images and classes
        assert sum(b["count"] for b in m["clean"]["reliability"]) == 12
    assert report["models"]["a"]["corruptions"]["vs_baseline"]["baseline"] == "a"
    tp = report["throughput"]
    assert tp["images_scored"] == 5 * 12 * 2 and tp["seconds"] > 0
    assert tp["images_per_s"] == pytest.approx(tp["images_scored"] / tp["seconds"], rel=0.01)
    assert report["corruption_pool"]["branches"] == 2 and report["corruption_pool"]["cpus"] >= 1
    md = (out / "report.md").read_text()
    assert "| a |" in md and "| b |" in md and "fog" in md


def _outcomes(n, error, conf=0.9):
    import numpy as np

    i = np.arange(n)
    hit = np.floor((i + 1) * error) == np.floor(i * error)  # floor(n * error) misses, evenly spread
    return {"valid": np.ones(n, bool), "top1_0": hit, "top5_0": np.ones(n, bool), "conf_0": np.full(n, conf, np.float32)}


def test_report_alexnet_mce_markdown_and_plots(tmp_path):
    from PIL import Image

    from raymix.eval import metrics
    from raymix.eval.inference import EvalSet, build_report
    from raymix.eval.models import ModelSpec
    from raymix.eval.report import write_report

    job = EvalJob(checkpoints=["m=x"], input="v", output=str(tmp_path))
    spec = ModelSpec(name="m", uri="x", arch="resnet50", num_classes=1000, stem="imagenet")
    sets = {"clean": EvalSet(kind="clean")}
    outcomes = {"clean": _outcomes(1000, 0.25)}
    for c in metrics.CORRUPTIONS:
        for s in metrics.SEVERITIES:
            sets[f"{c}/{s}"] = EvalSet(kind="corruption", corruption=c, severity=s)
            # half AlexNet's error at every severity: CE 50 everywhere
            outcomes[f"{c}/{s}"] = _outcomes(1000, metrics.ALEXNET_ERRORS[c] / 2)
    report = build_report(job, [spec], sets, outcomes)
    c = report["models"]["m"]["corruptions"]
    assert c["mce_normalization"] == "alexnet"
    assert c["mce"] == pytest.approx(50.0, abs=0.2)  # errors rounded to 1/1000
    assert report["summary"]["m"]["clean_top1_error"] == pytest.approx(0.25)
    # 1000 samples at confidence 0.9, accuracy 0.75 in every bin: RMS calibration error 0.15
    # over the 9 of 10 bins the papers' code counts: sqrt(0.9 * 0.15^2)
    assert report["models"]["m"]["clean"]["rms_calibration_error"] == pytest.approx((0.9 ** 0.5) * 0.15, abs=1e-3)
    write_report(report, str(tmp_path))
    assert "| m | 25.00 |" in (tmp_path / "report.md").read_text()
    for name in ("corruption_errors.png", "reliability.png"):
        assert Image.open(tmp_path / name).size[0] > 100


def test_predictor_restricts_attacks_and_does_not_depend_on_the_batch(tmp_path):
    import numpy as np

    from raymix.eval.inference import SET, Predictor
    from raymix.eval.models import resolve

    _checkpoint(tmp_path / "ck", num_classes=5)
    spec = resolve("m", str(tmp_path / "ck"))
    sets = {"clean": {"kind": "clean"}, "ood/r": {"kind": "ood", "indices": [4, 2]},
            "adversarial/pgd": {"kind": "adversarial"}}
    attack = {"kind": "pgd", "eps": 8 / 255, "steps": 2, "step_size": 4 / 255, "random_start": True}
    predictor = Predictor([spec], sets=sets, attack=attack, seed=0, device="cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)

    def batch(names, rows):
        return {"key": np.array([f"k{i}" for i in rows], dtype=object), "image": images[rows],
                "label": np.array([1, 0, 1, 1])[rows], "reason": np.array([""] * len(rows), dtype=object),
                SET: np.array(names, dtype=object)}

    out = predictor(batch(["clean", "ood/r", "adversarial/pgd", "adversarial/pgd"], [0, 1, 2, 3]))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        logits = predictor.models[0](predictor.normalize(x))
    # the OOD row is scored on classes 4 and 2 only: label 0 means class 4
    sub = logits[1, [4, 2]]
    assert out["top1_0"][1] == bool(sub[0] > sub[1])
    assert out["conf_0"][1] == pytest.approx(sub.softmax(0).max().item(), rel=1e-5)
    assert out["conf_0"][0] == pytest.approx(logits[0].softmax(0).max().item(), rel=1e-5)
    assert out["top5_0"].all()  # 5 classes (2 for the OOD row)
    # an attacked row comes out the same alone or in another batch (PGD start seeded per key)
    alone = predictor(batch(["adversarial/pgd"], [3]))
    assert alone["conf_0"][0] == pytest.approx(out["conf_0"][3], rel=1e-5)
    assert list(out["valid"]) == [True] * 4


def test_a_training_run_folder_means_its_latest_checkpoint(tmp_path):
    from raymix.eval.models import _checkpoint_path

    run = tmp_path / "run"
    for name in ("checkpoint_2026-12-06_05-38-12.877425", "checkpoint_2026-12-06_05-38-48.691028"):
        (run / name).mkdir(parents=True)
        (run / name / "state.pt").write_bytes(b"")
    (run / "checkpoint_manager_snapshot.json").write_text("{}")
    assert _checkpoint_path(str(run), None).endswith("checkpoint_2026-12-06_05-38-48.691028/state.pt")
    assert _checkpoint_path(str(run / "checkpoint_2026-12-06_05-38-12.877425"), None).endswith("12.877425/state.pt")
    with pytest.raises(ValueError, match="no state.pt and no checkpoint_"):
        _checkpoint_path(str(tmp_path), None)


def test_corruption_pool_takes_the_cores_the_inference_actors_leave():
    from raymix.eval.inference import corruption_pool

    # 8 GPUs with 24 cores each: 8 inference actors hold one core each, the 184 others corrupt
    assert corruption_pool(192, 8, 75) == (184, 3)
    assert corruption_pool(192, 8, 75, corruption_cpus=75) == (75, 1)
    assert corruption_pool(4, 2, 2) == (2, 1)
    assert corruption_pool(2, 4, 10) == (1, 1)  # never below one core, one task per branch
    with pytest.raises(ValueError, match="corruption-cpus"):
        EvalJob(checkpoints=["a"], input="x", output="o", corruption_cpus=0)
