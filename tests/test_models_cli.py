"""`raymix models mirror` / `resolve` against the local S3 server, and one copy per node across processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from raymix.cli import main
from raymix.io.storage import filesystem
from raymix.models.weights import COMPLETE_MARKER, MANIFEST


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A saved tiny InstructPix2Pix pipeline in full and fp16 variants, plus files never mirrored."""
    from raymix.models.random_pipelines import build_random_pipeline

    folder = tmp_path_factory.mktemp("tiny-pix2pix")
    pipe = build_random_pipeline("tiny", seed=3)
    pipe.save_pretrained(folder)
    pipe.save_pretrained(folder, variant="fp16")
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not mirrored")
    (folder / "README.md").write_text("not mirrored")
    return folder


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_mirror_then_resolve(tiny_folder, s3_bucket, tmp_path, capsys):
    mirror = f"{s3_bucket}/models/tiny"
    assert main(["models", "mirror", "--model", str(tiny_folder), "--to", mirror + "/"]) == 0
    out = capsys.readouterr().out
    assert f"use it with: --editor {mirror}\n" in out

    fs, root = filesystem(mirror)
    manifest = json.loads(fs.cat_file(f"{root}/{MANIFEST}"))
    expected = {p for p in _files(tiny_folder) if not p.endswith((".bin", ".md"))}
    assert set(manifest["files"]) == expected
    assert f"mirrored {len(expected)} files" in out

    cache = tmp_path / "cache"
    assert main(["models", "resolve", mirror, "--cache-dir", str(cache)]) == 0
    local = Path(capsys.readouterr().out.strip())
    assert local.parent == cache and _files(local) == expected | {COMPLETE_MARKER}
    assert (local / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == (
        tiny_folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()


def test_mirror_one_variant(tiny_folder, s3_bucket, capsys):
    mirror = f"{s3_bucket}/models/tiny-fp16"
    assert main(["models", "mirror", "--model", str(tiny_folder), "--to", mirror, "--variant", "fp16"]) == 0
    fs, root = filesystem(mirror)
    weights = [p for p in json.loads(fs.cat_file(f"{root}/{MANIFEST}"))["files"] if p.endswith(".safetensors")]
    assert weights and all(".fp16." in p for p in weights)
    assert "(variant fp16)" in capsys.readouterr().out


def test_resolve_prints_folders_and_hub_ids_as_jobs_load_them(tiny_folder, capsys):
    assert main(["models", "resolve", str(tiny_folder)]) == 0
    assert capsys.readouterr().out.strip() == str(tiny_folder.resolve())
    assert main(["models", "resolve", "timbrooks/instruct-pix2pix"]) == 0
    assert capsys.readouterr().out.strip() == "timbrooks/instruct-pix2pix"
    with pytest.raises(SystemExit, match="does not exist"):
        main(["models", "resolve", "./no/such/folder"])


def test_offline_mirror_never_reaches_the_hub(s3_bucket, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 (set for the test session): a model not in the cache is an error, even with --download."""
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    for extra in ([], ["--download"]):
        with pytest.raises(SystemExit, match="raymix models mirror: .*(local Hugging Face cache|outgoing traffic)"):
            main(["models", "mirror", "--model", "someone/not-cached", "--to", f"{s3_bucket}/x", *extra])
    fs, root = filesystem(f"{s3_bucket}/x")
    assert not fs.exists(root)


def test_pickle_only_model_is_refused(s3_bucket, tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(SystemExit, match="pickle"):
        main(["models", "mirror", "--model", str(tmp_path), "--to", f"{s3_bucket}/pickled"])


@pytest.mark.slow
def test_concurrent_actors_on_one_node_copy_a_mirror_once(ray_cluster, tiny_folder, s3_bucket, tmp_path):
    """Separate worker processes (as editor actors are) share one node-local copy."""
    ray = ray_cluster
    mirror = f"{s3_bucket}/models/tiny-shared"
    main(["models", "mirror", "--model", str(tiny_folder), "--to", mirror, "--variant", "fp16"])
    cache = str(tmp_path / "cache")

    @ray.remote(num_cpus=0)
    class Loader:
        def resolve(self, start_at: float) -> tuple[str, int]:
            import s3fs

            from raymix.models.weights import resolve_model

            gets = []
            original = s3fs.S3FileSystem._get_file

            async def counting_get_file(fs, rpath, lpath, **kwargs):
                gets.append(rpath)
                return await original(fs, rpath, lpath, **kwargs)

            s3fs.S3FileSystem._get_file = counting_get_file
            s3fs.S3FileSystem.clear_instance_cache()
            time.sleep(max(0.0, start_at - time.time()))  # all start together
            return resolve_model(mirror, cache_dir=cache, variant="fp16"), len(gets)

    loaders = [Loader.remote() for _ in range(3)]
    ray.get([loader.__ray_ready__.remote() for loader in loaders])
    results = ray.get([loader.resolve.remote(time.time() + 1.0) for loader in loaders])
    paths, gets = zip(*results)
    assert len(set(paths)) == 1
    local = Path(paths[0])
    files = _files(local) - {COMPLETE_MARKER}
    assert sum(gets) == len(files)  # one process copied every file, the others waited and reused it
    assert sorted(gets)[:2] == [0, 0]
    for loader in loaders:
        ray.kill(loader)
