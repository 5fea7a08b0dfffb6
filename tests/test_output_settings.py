"""The settings record of an output folder, without Ray: the first run records, the same
settings resume, other settings are refused (or written beside), run-only settings may
change, older folders are checked against their run record."""

from __future__ import annotations

import json

import pytest

from raymix.pipeline.output_settings import SETTINGS_RECORD, OutputSettingsMismatch, claim_output
from raymix.pipeline.specs import DiffuseMixJob, MixJob


def mix_job(out, **kw):
    return MixJob(**{"input": "/data/in", "output": str(out), "method": "pixmix", **kw})


def test_record_resume_refuse_and_write_beside(tmp_path):
    out = tmp_path / "out"
    assert claim_output(mix_job(out)).output == str(out)
    record = json.loads((out / SETTINGS_RECORD).read_text())
    assert record["job"] == "MixJob" and record["settings"]["method"] == "pixmix" and "limit" not in record["settings"]

    # Run-only settings may change; the record stays as it was.
    assert claim_output(mix_job(out, limit=5, batch_size=8, actors=1, rows_per_file=10)).output == str(out)

    with pytest.raises(OutputSettingsMismatch, match=r"--seed 0 there, 1 here.*--write-beside") as err:
        claim_output(mix_job(out, seed=1))
    assert "--method" not in str(err.value)
    with pytest.raises(OutputSettingsMismatch, match=r"--options \{\} there, \{\"preset\": \"cifar\"\} here"):
        claim_output(mix_job(out, method_options={"preset": "cifar"}))
    with pytest.raises(OutputSettingsMismatch, match="written by MixJob, this is DiffuseMixJob"):
        claim_output(DiffuseMixJob(input="/data/in", output=str(out)))

    beside = claim_output(mix_job(out, seed=1, write_beside=True))
    assert beside.output.startswith(str(out) + "-") and (tmp_path / beside.output.rsplit("/", 1)[1] / SETTINGS_RECORD).exists()
    assert claim_output(mix_job(out, seed=1, write_beside=True)).output == beside.output  # found again


def test_an_older_folder_is_checked_against_its_run_record(tmp_path):
    out = tmp_path / "old"
    (out / ".raymix").mkdir(parents=True)
    settings = {"input": "/data/in", "output": str(out), "method": "layermix", "seed": 0, "replicas": 1}
    (out / ".raymix" / "summary.json").write_text(json.dumps({"job": "MixJob", "settings": settings}))
    with pytest.raises(OutputSettingsMismatch, match="--method \"layermix\" there, \"pixmix\" here"):
        claim_output(mix_job(out))
    assert claim_output(mix_job(out, method="layermix")).output == str(out)
    assert (out / SETTINGS_RECORD).exists()
