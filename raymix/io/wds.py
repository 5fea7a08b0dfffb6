"""WebDataset tar conventions: member names, key encoding, building a tar in memory.

A WebDataset sample is a run of consecutive tar members sharing a key; a member's key is
its path up to the first ``.`` of its base name and the rest is the extension
(``n01440764/n01440764_10026.jpg`` -> key ``n01440764/n01440764_10026``, ext ``jpg``).

Keys may hold any character, so member names encode them: ``%``, ``.``, control
characters and everything outside ``A-Z a-z 0-9 _ - ~ /`` are percent-encoded (UTF-8),
``/`` is kept (keys become folders inside the tar, which WebDataset readers keep in
``__key__``), and a leading ``/`` is encoded so no member name is absolute. Readers
percent-decode member keys; the ``.json`` member also carries the exact key.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from urllib.parse import quote, unquote

__all__ = [
    "IMAGE_EXTENSIONS",
    "LABEL_EXTENSIONS",
    "TAR_SUFFIXES",
    "encode_key",
    "decode_key",
    "split_member",
    "build_tar",
    "iter_samples",
]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "ppm", "pgm", "bmp", "tif", "tiff", "gif", "img")
LABEL_EXTENSIONS = ("cls", "cls2", "label", "class", "target")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# A fixed mtime keeps tars byte-identical across runs (same input, same bytes).
_MTIME = 0


def encode_key(key: str) -> str:
    """A tar-safe member stem for ``key`` (see the module docstring)."""
    text = quote(key, safe="/-_~").replace(".", "%2E")
    if text.startswith("/"):
        text = "%2F" + text[1:]
    return text


def decode_key(member_key: str) -> str:
    return unquote(member_key)


def split_member(name: str) -> tuple[str, str]:
    """``(key, extension)`` of a tar member name, WebDataset style (extension lowercased)."""
    folder, base = posixpath.split(name)
    stem, dot, ext = base.partition(".")
    key = posixpath.join(folder, stem) if folder else stem
    return decode_key(key), ext.lower() if dot else ""


def build_tar(samples: Iterable[tuple[str, dict[str, bytes]]]) -> bytes:
    """A tar (bytes) holding ``{encoded key}.{ext}`` members for each ``(key, {ext: bytes})``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key, members in samples:
            stem = encode_key(key)
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{stem}.{ext}")
                info.size = len(data)
                info.mtime = _MTIME
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def iter_samples(fileobj) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream ``(key, {ext: bytes})`` samples from a tar file object (plain or gzipped).

    Members of one sample must be consecutive, as WebDataset requires. Folders, links
    and hidden members (a path part starting with ``.``) are skipped. A damaged tar raises
    :class:`tarfile.TarError` (or ``OSError``/``EOFError``) after the samples read so far.
    """
    current_key: str | None = None
    current: dict[str, bytes] = {}
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for info in tar:
            if not info.isfile() or any(p.startswith(".") for p in info.name.split("/")):
                continue
            key, ext = split_member(info.name)
            if key != current_key:
                if current_key is not None:
                    yield current_key, current
                current_key, current = key, {}
            f = tar.extractfile(info)
            current[ext] = f.read() if f is not None else b""
    if current_key is not None:
        yield current_key, current
