"""The "Add a method" walkthrough (docs/architecture.md), followed by a test: one new file
(tests/toy_method.py) and one registration, and the method runs in a plain DataLoader, in
`raymix preview` and in the Ray job (`raymix mix`), with no other edit."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from raymix import registry
from raymix.cli import main
from raymix.tools.sample_data import write_sample

ENTRY = registry.MethodEntry(name="toy", target="toy_method:Toy", kind="image", device="cpu",
                             title="Toy (posterize and shift)", presets=("coarse", "fine"))


@pytest.fixture
def toy():
    registry.register_method(ENTRY)
    yield ENTRY
    del registry.METHODS[ENTRY.name]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "sample"
    write_sample(str(root), format="folder", classes=3, per_class=4, size=(40, 32), seed=0)
    return str(root)


def test_registered_everywhere_a_method_is_named(toy):
    from raymix.pipeline.specs import MixJob
    from raymix.settings import settings_of
    from raymix.train.job import TrainJob

    assert "toy" in settings_of(MixJob)["method"].choices  # raymix mix --method
    assert "toy" in settings_of(TrainJob)["online"].choices  # raymix train --online
    assert "toy" in settings_of(TrainJob)["chain"].choices  # raymix train --chain
    from toy_method import Toy

    assert isinstance(registry.create("toy", seed=1, preset="fine"), Toy)
    assert registry.create("toy", preset="fine").bits == 5


def test_plain_dataloader(toy):
    method = registry.create("toy")
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    loader = torch.utils.data.DataLoader([(im, 0) for im in images], batch_size=3,
                                         collate_fn=lambda b: (torch.stack([method(im) for im, _ in b]),))
    torch.manual_seed(0)
    first = torch.cat([b[0] for b in loader])
    torch.manual_seed(0)
    again = torch.cat([b[0] for b in loader])
    assert first.shape == images.shape and torch.equal(first, again)
    assert torch.equal(first & 0x3F, torch.zeros_like(first))  # two bits kept, the rest shifted out
    assert not torch.equal(first, images & 0xC0)  # and rolled


def test_preview(toy, sample, tmp_path):
    out = tmp_path / "toy.png"
    assert main(["preview", "--method", "toy", "--input", sample, "--out", str(out), "--n", "2",
                 "--samples", "2", "--image-size", "32", "--captions"]) == 0
    from PIL import Image

    meta = json.loads(Image.open(out).info["raymix:preview"])
    assert meta["method"] == "toy" and meta["rows"] >= 2


@pytest.mark.slow
def test_ray_job(toy, sample, tmp_path, ray_cluster):
    output = tmp_path / "out"
    assert main(["mix", "--method", "toy", "--input", sample, "--output", str(output), "--replicas", "2",
                 "--image-size", "32", "--options", '{"preset": "fine"}', "--actors", "1"]) == 0
    table = pa.concat_tables(pq.read_table(f) for f in sorted(output.glob("*.parquet")))
    assert table.num_rows == 12 * 2
    keys = table.column("key").to_pylist()
    assert {k.rsplit("/", 2)[1] for k in keys} == {"toy"}
    assert {k.rsplit("/", 1)[1] for k in keys} == {"0", "1"}
    params = [json.loads(p) for p in table.column("params").to_pylist()]
    assert all(p["method"] == "toy" and p["bits"] == 5 and len(p["shift"]) == 2 for p in params)


def test_every_entry_names_its_class_presets():
    """The registry lists each method's presets without importing it: the names must be its
    module's PRESETS (a method without a ``preset=`` argument lists none)."""
    import importlib
    import inspect

    for entry in registry.methods():
        cls = entry.load()
        module = importlib.import_module(cls.__module__)
        has_presets = "preset" in inspect.signature(cls).parameters
        assert set(entry.presets) == (set(module.PRESETS) if has_presets else set()), entry.name
        assert entry.kind == "batch" or cls.name == entry.name
