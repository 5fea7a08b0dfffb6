"""Where model weights come from: a Hugging Face id, a local folder, or an object-store mirror.

:func:`resolve_model` turns a user's ``--model`` value into something
``from_pretrained`` accepts:

- a Hugging Face id (``"timbrooks/instruct-pix2pix"``) is returned as it is; the hub
  client then honours ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE``;
- a local folder is checked and returned as an absolute path;
- an object-store URL (``s3://bucket/prefix``, ``gs://...``, any fsspec URL) is copied
  once per node into a local cache (``~/.cache/raymix/models/<name>-<hash>``, or
  ``$RAYMIX_MODEL_CACHE``) and the local copy's path is returned. A file lock makes
  concurrent actors on one node wait for a single copy; the copy is assembled in a
  temporary folder and renamed into place with a completion marker inside, so a
  crashed copy is never mistaken for a finished one.

Only safetensors weights, configs and tokenizer files are used. A model folder whose
weights exist only as pickle files (``.bin``, ``.pt``, ``.ckpt``, ...) is refused:
unpickling runs arbitrary code.

:func:`mirror_model` is the other half: it uploads a local folder, or a model already
in the local Hugging Face cache, to object storage (same file selection), with a
manifest written last so readers know the mirror is complete. That lets a cluster
pull weights from its own bucket instead of asking the hub once per node.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from raymix.io.storage import filesystem

__all__ = [
    "UnsafeWeightsError",
    "default_cache_dir",
    "mirror_model",
    "resolve_model",
    "select_model_files",
]

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Weights, configs (json), tokenizer vocabularies and merges (json/txt), sentencepiece models.
KEPT_SUFFIXES = (".safetensors", ".json", ".txt", ".model")
COMPLETE_MARKER = ".raymix-complete"
MANIFEST = "raymix-manifest.json"
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


class UnsafeWeightsError(ValueError):
    """A model folder holds pickle weights and no safetensors."""


def default_cache_dir() -> Path:
    """``$RAYMIX_MODEL_CACHE``, else ``~/.cache/raymix/models``."""
    return Path(os.environ.get("RAYMIX_MODEL_CACHE") or "~/.cache/raymix/models").expanduser()


def select_model_files(relpaths: Iterable[str], *, variant: str | None = None, where: str = "") -> list[str]:
    """The files of a model folder to use: safetensors weights, configs, tokenizer files.

    ``relpaths`` are paths relative to the model folder (``"unet/config.json"``).
    Hidden files and folders are skipped. With ``variant`` (e.g. ``"fp16"``), a
    folder that has ``*.fp16.safetensors`` weights keeps only those. Raises
    :class:`UnsafeWeightsError` when a folder has pickle weights but no safetensors,
    or when there are no safetensors weights at all.
    """
    paths = sorted(p for p in relpaths if not any(part.startswith(".") for part in p.split("/")))
    folders: dict[str, list[str]] = {}
    for p in paths:
        folders.setdefault(posixpath.dirname(p), []).append(posixpath.basename(p))

    for folder, names in folders.items():
        pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
        if pickles and not any(n.endswith(".safetensors") for n in names):
            shown = posixpath.join(where, folder) if where else (folder or ".")
            raise UnsafeWeightsError(
                f"{shown} holds weights only as pickle files ({', '.join(pickles[:3])}); raymix loads "
                "safetensors only, since unpickling runs arbitrary code. Convert them with "
                "`save_pretrained(..., safe_serialization=True)` on a trusted machine."
            )

    def is_variant(name: str) -> bool:
        return f".{variant}." in name or f".{variant}-" in name

    kept = []
    for p in paths:
        if not p.endswith(KEPT_SUFFIXES):
            continue
        name = posixpath.basename(p)
        if variant and name.endswith(".safetensors") and not is_variant(name):
            if any(is_variant(n) and n.endswith(".safetensors") for n in folders[posixpath.dirname(p)]):
                continue
        kept.append(p)
    if not any(p.endswith(".safetensors") for p in kept):
        raise UnsafeWeightsError(f"{where or 'the model folder'} has no .safetensors weights")
    return kept


def resolve_model(
    spec: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    storage_options: Mapping[str, Any] | None = None,
    variant: str | None = None,
) -> str:
    """What to pass to ``from_pretrained`` for ``spec``: an HF id, a local folder, or a cached mirror.

    See the module docstring. ``storage_options`` go to the object-store filesystem
    (e.g. ``{"endpoint_url": ...}`` for s3fs); ``variant`` limits a copy to one
    weight variant (``"fp16"``). Raises ``FileNotFoundError`` for a missing local
    folder or mirror and :class:`UnsafeWeightsError` for pickle-only weights.
    """
    if not spec:
        raise ValueError("empty model name")
    if "://" in spec and not spec.startswith(("file://", "local://")):
        return str(_cached_copy(spec, Path(cache_dir) if cache_dir else default_cache_dir(), storage_options, variant))

    local = Path(spec.split("://", 1)[-1]).expanduser()
    if local.is_dir():
        select_model_files(_local_listing(local), variant=variant, where=str(local))
        return str(local.resolve())
    if spec.startswith(("/", ".", "~", "file://", "local://")) or not _HF_ID.match(spec):
        raise FileNotFoundError(f"model folder {spec!r} does not exist (and it is not a Hugging Face id)")
    return spec


def mirror_model(
    src: str,
    dest_uri: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    variant: str | None = None,
    revision: str | None = None,
) -> list[str]:
    """Upload a local model folder, or a model in the local Hugging Face cache, to ``dest_uri``.

    ``src`` is a folder or a Hugging Face id already downloaded on this machine (the
    cache under ``HF_HOME``/``HF_HUB_CACHE``; nothing is downloaded here). Copies the
    files :func:`select_model_files` keeps, then writes ``raymix-manifest.json``
    (file names and sizes) last. Returns the relative paths copied.
    """
    local = Path(src).expanduser()
    if not local.is_dir():
        local = _hf_snapshot(src, revision)
    sizes = _local_listing(local)
    files = select_model_files(sizes, variant=variant, where=str(local))
    fs, root = filesystem(dest_uri, dict(storage_options or {}))
    root = root.rstrip("/")
    for rel in files:
        fs.put_file(str(local / rel), f"{root}/{rel}")
    manifest = {"source": src, "variant": variant, "files": {rel: sizes[rel] for rel in files}}
    fs.pipe_file(f"{root}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
    log.info("mirrored %d files from %s to %s", len(files), local, dest_uri)
    return files


def _local_listing(folder: Path) -> dict[str, int]:
    """Relative path -> size of every file under ``folder`` (symlinks followed, as in HF snapshots)."""
    out = {}
    for dirpath, _, names in os.walk(folder, followlinks=True):
        for name in names:
            path = Path(dirpath, name)
            out[path.relative_to(folder).as_posix()] = path.stat().st_size
    return out


def _hf_snapshot(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(
            f"{repo_id!r} is neither a folder nor a model in the local Hugging Face cache "
            f"({os.environ.get('HF_HUB_CACHE') or os.environ.get('HF_HOME') or '~/.cache/huggingface'}); "
            "download it first, e.g. `hf download " + repo_id + "`"
        ) from err


def _remote_listing(fs, root: str) -> dict[str, int]:
    """Relative path -> size under ``root``: from the mirror's manifest when present, else a listing."""
    manifest = f"{root}/{MANIFEST}"
    if fs.exists(manifest):
        return dict(json.loads(fs.cat_file(manifest))["files"])
    found = fs.find(root, detail=True)
    if not found:
        raise FileNotFoundError(f"no model files under {root!r}")
    return {path[len(root) :].lstrip("/"): int(info.get("size") or 0) for path, info in found.items()}


def _cache_name(uri: str) -> str:
    uri = uri.rstrip("/")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    base = re.sub(r"[^\w.\-]", "_", uri.rsplit("/", 1)[-1])[:64] or "model"
    return f"{base}-{digest}"


def _cached_copy(uri: str, cache_dir: Path, storage_options, variant: str | None) -> Path:
    from filelock import FileLock

    dest = cache_dir / _cache_name(uri if not variant else f"{uri}#{variant}")
    if (dest / COMPLETE_MARKER).is_file():
        return dest
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{dest}.lock"):
        if (dest / COMPLETE_MARKER).is_file():  # another process finished the copy while we waited
            return dest
        fs, root = filesystem(uri, dict(storage_options or {}))
        root = root.rstrip("/")
        sizes = _remote_listing(fs, root)
        files = select_model_files(sizes, variant=variant, where=uri)
        partial = Path(tempfile.mkdtemp(prefix=f"{dest.name}.partial-", dir=cache_dir))
        try:
            for rel in files:
                target = partial / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(f"{root}/{rel}", str(target))
                if sizes[rel] and target.stat().st_size != sizes[rel]:
                    raise OSError(f"{uri}/{rel}: copied {target.stat().st_size} bytes, expected {sizes[rel]}")
            (partial / COMPLETE_MARKER).write_text(json.dumps({"source": uri, "files": files}))
            if dest.exists():  # a folder left by hand or by an older layout; never a finished copy
                shutil.rmtree(dest)
            os.rename(partial, dest)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    log.info("copied %d model files from %s to %s", len(files), uri, dest)
    return dest
