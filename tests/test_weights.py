"""Model weights from a local folder, an S3 mirror (a local moto server) and the local HF cache."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from raymix.models.weights import (
    COMPLETE_MARKER,
    MANIFEST,
    UnsafeWeightsError,
    mirror_model,
    resolve_model,
    select_model_files,
)


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 and the storage options that reach it through s3fs."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
    import s3fs

    s3fs.S3FileSystem(**options).mkdir("models")
    yield options
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


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


def test_s3_mirror_is_copied_once_per_node(s3, tiny_folder, tmp_path, monkeypatch, request):
    import s3fs

    copied = mirror_model(str(tiny_folder), "s3://models/tiny", storage_options=s3)
    assert "unet/diffusion_pytorch_model.bin" not in copied and "README.md" not in copied
    remote = s3fs.S3FileSystem(**s3)
    assert json.loads(remote.cat_file(f"models/tiny/{MANIFEST}"))["files"].keys() == set(copied)

    gets = []
    original = s3fs.S3FileSystem._get_file  # the coroutine behind S3FileSystem.get_file

    async def counting_get_file(self, rpath, lpath, **kwargs):
        gets.append(rpath)
        return await original(self, rpath, lpath, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_get_file", counting_get_file)
    s3fs.S3FileSystem.clear_instance_cache()  # instances bind their sync methods when created
    request.addfinalizer(s3fs.S3FileSystem.clear_instance_cache)
    cache = tmp_path / "cache"
    paths = []
    threads = [
        threading.Thread(
            target=lambda: paths.append(resolve_model("s3://models/tiny", cache_dir=cache, storage_options=s3))
        )
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

    assert resolve_model("s3://models/tiny", cache_dir=cache, storage_options=s3) == str(local)
    assert len(gets) == len(copied)  # the finished copy is reused

    from raymix.models.editor import InstructPix2PixEditor

    kwargs = dict(preset="fast", steps=2, resolution=64, cache_dir=str(cache), storage_options=s3)
    from_s3 = InstructPix2PixEditor("s3://models/tiny", **kwargs)
    from_folder = InstructPix2PixEditor(str(tiny_folder), **kwargs)
    import torch

    images = torch.full((1, 3, 64, 64), 128, dtype=torch.uint8)
    prompt = [from_s3.library.text(0)]
    a = from_s3.edit(images, prompt, [torch.Generator().manual_seed(0)])
    b = from_folder.edit(images, prompt, [torch.Generator().manual_seed(0)])
    assert torch.equal(a, b)


def test_unfinished_copy_is_not_used(s3, tiny_folder, tmp_path):
    mirror_model(str(tiny_folder), "s3://models/tiny2", storage_options=s3)
    cache = tmp_path / "cache"
    local = Path(resolve_model("s3://models/tiny2", cache_dir=cache, storage_options=s3))
    (local / COMPLETE_MARKER).unlink()
    (local / "model_index.json").unlink()  # as if a copy had died half way
    again = Path(resolve_model("s3://models/tiny2", cache_dir=cache, storage_options=s3))
    assert again == local and (local / "model_index.json").is_file() and (local / COMPLETE_MARKER).is_file()


def test_s3_prefix_with_only_pickle_weights_is_refused(s3, tmp_path):
    import s3fs

    remote = s3fs.S3FileSystem(**s3)
    remote.pipe_file("models/pickled/unet/config.json", b"{}")
    remote.pipe_file("models/pickled/unet/diffusion_pytorch_model.bin", b"\x80\x02")
    with pytest.raises(UnsafeWeightsError):
        resolve_model("s3://models/pickled", cache_dir=tmp_path, storage_options=s3)
    assert not list(tmp_path.glob("pickled-*/*"))


def test_mirror_from_the_local_hf_cache(s3, tiny_folder, tmp_path, monkeypatch):
    """An HF id already in the hub cache (HF_HUB_CACHE layout: refs/main -> snapshots/<commit>)."""
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--someone--tiny-pix2pix"
    snapshot = repo / "snapshots" / commit
    for rel in _files(tiny_folder):
        (snapshot / rel).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / rel).symlink_to(tiny_folder / rel)  # the hub cache links snapshots to blobs
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    import huggingface_hub.constants

    # What HF_HUB_CACHE=... in the environment sets when the hub client is imported.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    copied = mirror_model("someone/tiny-pix2pix", "s3://models/from-hub", storage_options=s3)
    local = Path(resolve_model("s3://models/from-hub", cache_dir=tmp_path / "cache", storage_options=s3))
    assert _files(local) == set(copied) | {COMPLETE_MARKER}
    assert (local / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == (
        tiny_folder / "unet" / "diffusion_pytorch_model.safetensors"
    ).read_bytes()
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        mirror_model("someone/not-downloaded", "s3://models/x", storage_options=s3)
