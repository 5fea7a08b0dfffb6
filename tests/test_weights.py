"""Model weights from a local folder, an S3 mirror and the local HF cache.

S3 is moto's server on 127.0.0.1 (``s3_bucket`` from conftest), reached through s3fs with
the endpoint from the standard AWS environment, as users reach a real store.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from raymix.io.storage import filesystem
from raymix.models.weights import (
    COMPLETE_MARKER,
    MANIFEST,
    UnsafeWeightsError,
    mirror_model,
    resolve_model,
    select_model_files,
)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A saved tiny InstructPix2Pix pipeline, with a stray pickle file next to its safetensors."""
    from raymix.models.random_pipelines import build_random_pipeline

    folder = tmp_path_factory.mktemp("tiny-pix2pix")
    build_random_pipeline("tiny", seed=3).save_pretrained(folder)
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not loaded")
    (folder / "README.md").write_text("not copied")
    return folder


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_select_model_files_keeps_safetensors_configs_and_tokenizer():
    files = [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        ".gitattributes",
        ".cache/huggingface/x.json",
        "README.md",
    ]
    kept = select_model_files(files)
    assert "unet/diffusion_pytorch_model.bin" not in kept
    assert {"unet/diffusion_pytorch_model.safetensors", "tokenizer/merges.txt", "model_index.json"} <= set(kept)
    assert not any(p.startswith(".") or p.endswith(".md") for p in kept)
    fp16 = select_model_files(files, variant="fp16")
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in fp16
    assert "unet/diffusion_pytorch_model.safetensors" not in fp16


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        resolve_model(str(tmp_path))


def test_local_folder_and_hf_id(tiny_folder, tmp_path):
    assert resolve_model(str(tiny_folder)) == str(tiny_folder.resolve())
    assert resolve_model("timbrooks/instruct-pix2pix") == "timbrooks/instruct-pix2pix"
    with pytest.raises(FileNotFoundError):
        resolve_model(str(tmp_path / "missing"))


def test_s3_mirror_is_copied_once_per_node(s3_bucket, s3_server, tiny_folder, tmp_path, monkeypatch, request):
    import s3fs

    mirror = f"{s3_bucket}/models/tiny"
    copied = mirror_model(str(tiny_folder), mirror)
    assert "unet/diffusion_pytorch_model.bin" not in copied and "README.md" not in copied
    remote, root = filesystem(mirror)
    assert json.loads(remote.cat_file(f"{root}/{MANIFEST}"))["files"].keys() == set(copied)

    gets = []
    original = s3fs.S3FileSystem._get_file  # the coroutine behind S3FileSystem.get_file

    async def counting_get_file(self, rpath, lpath, **kwargs):
        gets.append(rpath)
        return await original(self, rpath, lpath, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_get_file", counting_get_file)
    s3fs.S3FileSystem.clear_instance_cache()  # instances bind their sync methods when created
    request.addfinalizer(s3fs.S3FileSystem.clear_instance_cache)
    cache = tmp_path / "cache"
    options = {"endpoint_url": s3_server}  # explicit options reach s3fs too
    paths = []
    threads = [
        threading.Thread(target=lambda: paths.append(resolve_model(mirror, cache_dir=cache, storage_options=options)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 1 and len(paths) == 4
    local = Path(paths[0])
    assert len(gets) == len(copied)  # four concurrent callers, one copy
    assert _files(local) == set(copied) | {COMPLETE_MARKER}
    assert not [p for p in cache.iterdir() if ".partial-" in p.name]

    assert resolve_model(mirror, cache_dir=cache) == str(local)
    assert len(gets) == len(copied)  # the finished copy is reused

    import torch

    from raymix.models.editor import InstructPix2PixEditor

    kwargs = dict(preset="fast", steps=2, resolution=64, cache_dir=str(cache))
    from_s3 = InstructPix2PixEditor(mirror, **kwargs)
    from_folder = InstructPix2PixEditor(str(tiny_folder), **kwargs)
    images = torch.full((1, 3, 64, 64), 128, dtype=torch.uint8)
    prompt = [from_s3.library.text(0)]
    a = from_s3.edit(images, prompt, [torch.Generator().manual_seed(0)])
    b = from_folder.edit(images, prompt, [torch.Generator().manual_seed(0)])
    assert torch.equal(a, b)


def test_unfinished_copy_is_not_used(s3_bucket, tiny_folder, tmp_path):
    mirror = f"{s3_bucket}/models/tiny"
    mirror_model(str(tiny_folder), mirror)
    cache = tmp_path / "cache"
    local = Path(resolve_model(mirror, cache_dir=cache))
    (local / COMPLETE_MARKER).unlink()
    (local / "model_index.json").unlink()  # as if a copy had died half way
    again = Path(resolve_model(mirror, cache_dir=cache))
    assert again == local and (local / "model_index.json").is_file() and (local / COMPLETE_MARKER).is_file()


def test_s3_prefix_with_only_pickle_weights_is_refused(s3_bucket, tmp_path):
    remote, root = filesystem(f"{s3_bucket}/models/pickled")
    remote.pipe_file(f"{root}/unet/config.json", b"{}")
    remote.pipe_file(f"{root}/unet/diffusion_pytorch_model.bin", b"\x80\x02")
    with pytest.raises(UnsafeWeightsError):
        resolve_model(f"{s3_bucket}/models/pickled", cache_dir=tmp_path)
    assert not list(tmp_path.glob("pickled-*/*"))


def test_mirror_from_the_local_hf_cache(s3_bucket, tiny_folder, tmp_path, monkeypatch):
    """An HF id already in the hub cache (HF_HUB_CACHE layout: refs/main -> snapshots/<commit>)."""
    import huggingface_hub.constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--someone--tiny-pix2pix"
    snapshot = repo / "snapshots" / commit
    for rel in _files(tiny_folder):
        (snapshot / rel).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / rel).symlink_to(tiny_folder / rel)  # the hub cache links snapshots to blobs
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    # What HF_HUB_CACHE=... in the environment sets when the hub client is imported.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    copied = mirror_model("someone/tiny-pix2pix", f"{s3_bucket}/from-hub")
    local = Path(resolve_model(f"{s3_bucket}/from-hub", cache_dir=tmp_path / "cache"))
    assert _files(local) == set(copied) | {COMPLETE_MARKER}
    assert (local / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == (
        tiny_folder / "unet" / "diffusion_pytorch_model.safetensors"
    ).read_bytes()
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        mirror_model("someone/not-downloaded", f"{s3_bucket}/x")
