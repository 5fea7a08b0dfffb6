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

import gzip
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
    "scan_tar",
    "read_samples",
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


#: ``problem`` of a sample from :func:`read_samples` next to bytes that could not be read,
#: or that the archive's end cut short.
DAMAGED = "damaged"
#: ``problem`` of an entry from :func:`read_samples` that stands for lost bytes no sample
#: claims (``key`` is the byte offset where they start, as text).
LOST = "lost"
#: ``problem`` of the entry from :func:`read_samples` saying the archive stops before its
#: end-of-archive marker: whatever followed is gone, and how much is unknown.
ENDS_EARLY = "ends-early"
_BLOCK = tarfile.BLOCKSIZE
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


def _blocks(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _pax_records(data: bytes) -> dict[str, str]:
    """The ``key=value`` records of a PAX extended header (``"%d %s=%s\n"`` each)."""
    out, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            break
        if length <= 0:
            break
        record = data[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def scan_tar(fileobj) -> Iterator[tuple[str, object, int]]:
    """The members of a tar, read header by header so that damage is not the end:
    yields ``("file", (name, bytes), offset)`` for each regular file, ``("damaged", None,
    offset)`` where headers that fail their checksum start (the scan moves on one block at
    a time to the next valid header, as GNU tar's ``--ignore-zeros`` does), ``("cut", name,
    offset)`` when the data ends inside a member (``name`` None inside a header) and
    ``("no-end", None, offset)`` when it ends without the end-of-archive marker.

    Python's ``tarfile`` stops at the first bad header as if the archive ended there;
    everything after it would vanish without a trace. PAX (``x``) and GNU long-name
    (``L``) headers are applied to the next member; links, folders and other types are
    skipped."""
    offset = 0
    zeros = 0
    damaged_from: int | None = None
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        header = fileobj.read(_BLOCK)
        if not header:
            if damaged_from is not None:
                yield "damaged", None, damaged_from
                if zeros < 2:  # (after an end marker, the bytes that follow are all that is lost)
                    yield "no-end", None, offset
            elif zeros == 0:  # (an empty file is no tar either)
                yield "no-end", None, offset
            return
        if len(header) < _BLOCK:
            if damaged_from is not None:
                yield "damaged", None, damaged_from
            yield "cut", None, offset
            return
        try:
            info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        except tarfile.EOFHeaderError:  # a zero block: the end marker, or padding
            zeros += 1
            offset += _BLOCK
            continue
        except tarfile.HeaderError:
            if damaged_from is None:
                damaged_from = offset
            offset += _BLOCK
            continue
        if damaged_from is not None:
            yield "damaged", None, damaged_from
            damaged_from = None
        zeros = 0
        here = offset
        size = int(pax.get("size", info.size)) if info.type in _FILE_TYPES else info.size
        data = fileobj.read(size) if size else b""
        if len(data) < size:
            yield "cut", long_name or pax.get("path") or info.name, here
            return
        padding = _blocks(size) - size
        if padding:
            fileobj.read(padding)
        offset += _BLOCK + _blocks(size)
        if info.type == tarfile.GNUTYPE_LONGNAME:
            long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        if info.type in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
            pax = _pax_records(data)
            continue
        if info.type in (tarfile.XGLTYPE, tarfile.GNUTYPE_LONGLINK):
            continue
        name = long_name or pax.get("path") or info.name
        long_name, pax = None, {}
        if info.type in _FILE_TYPES:
            yield "file", (name, data), here


def read_samples(fileobj) -> Iterator[tuple[str, dict[str, bytes], str]]:
    """Stream ``(key, {ext: bytes}, problem)`` samples from a tar file object (plain or
    gzipped), reading past damage (:func:`scan_tar`).

    Members of one sample must be consecutive, as WebDataset requires; hidden members (a
    path part starting with ``.``) are skipped. ``problem`` is ``""`` for a sample read
    whole. Next to unreadable bytes, the sample before and the one after are
    :data:`DAMAGED` when they lack their image, or their label where earlier samples had
    one (the lost member was theirs); when neither does, the bytes give an entry
    ``(offset, {}, LOST)`` (a sample of their own was lost). The sample the data ends in
    is :data:`DAMAGED`, and an archive that stops before its end marker ends with
    ``("", {}, ENDS_EARLY)``."""
    head = fileobj.read(2)
    fileobj.seek(0)
    if head == b"\x1f\x8b":
        fileobj = gzip.GzipFile(fileobj=fileobj, mode="rb")
    labelled = False
    cur: dict | None = None  # {key, members, regions}
    pending: dict | None = None  # unreadable bytes after the current sample's last member

    def close(sample: dict, force: bool = False):
        nonlocal labelled
        members = sample["members"]
        has_image = any(e in members for e in IMAGE_EXTENSIONS)
        has_label = any(e in members for e in LABEL_EXTENSIONS) or "json" in members
        bad = force or (bool(sample["regions"]) and (not has_image or (labelled and not has_label)))
        labelled = labelled or any(e in members for e in LABEL_EXTENSIONS)
        for region in sample["regions"]:
            region["claimed"] = region["claimed"] or bad
        yield sample["key"], members, DAMAGED if bad else ""
        for region in sample["regions"]:  # both its neighbours are known now
            region["sides"] -= 1
            if region["sides"] == 0 and not region["claimed"]:
                yield str(region["offset"]), {}, LOST

    def unclaimed(region: dict | None):
        if region is not None and not region["claimed"]:
            yield str(region["offset"]), {}, LOST

    for kind, value, offset in scan_tar(fileobj):
        if kind == "file":
            name, data = value
            if any(p.startswith(".") for p in name.split("/")):
                continue
            key, ext = split_member(name)
            if cur is None or key != cur["key"]:
                if cur is not None:
                    yield from close(cur)
                cur = {"key": key, "members": {}, "regions": [pending] if pending else []}
            elif pending is not None:  # the same sample goes on past the damage
                pending["sides"] -= 1
            pending = None
            cur["members"][ext] = data
        elif kind == "damaged":
            pending = {"offset": offset, "claimed": False, "sides": 2 if cur is not None else 1}
            if cur is not None:
                cur["regions"].append(pending)
        else:  # "cut" inside a member or a header, or "no-end"
            if kind == "cut" and value is not None:
                key, _ = split_member(value)
                if cur is None or key != cur["key"]:
                    if cur is not None:
                        yield from close(cur)
                    cur = {"key": key, "members": {}, "regions": [pending] if pending else []}
                    pending = None
                yield from close(cur, force=True)
            elif cur is not None:
                yield from close(cur)
            yield from unclaimed(pending)
            yield "", {}, ENDS_EARLY
            return
    if cur is not None:
        yield from close(cur)
    yield from unclaimed(pending)
