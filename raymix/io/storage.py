"""Storage URLs: one fsspec filesystem for local paths, ``file://``, ``s3://`` and friends.

S3-compatible stores (AWS, MinIO, Ceph RGW, Cloudflare R2, GCS in interoperability mode)
are reached through s3fs. Settings come, lowest precedence first, from:

1. the standard AWS environment: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (endpoint),
   ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (region); credentials (``AWS_ACCESS_KEY_ID``,
   ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, instance roles) are
   resolved by botocore itself on each machine, so secrets never travel inside task
   arguments;
2. ``RAYMIX_STORAGE_OPTIONS``: a JSON object of fsspec options, either flat (applied to
   every remote URL) or keyed by protocol (``{"s3": {...}, "gs": {...}}``);
3. the ``storage_options`` argument.

Any other protocol with an installed fsspec backend (``gs://`` with gcsfs, ``az://`` with
adlfs, ``memory://``) works with its own options.

Reads survive storage blips: :func:`retry` repeats a call through transient errors
(:func:`raymix.io.retry.is_transient`: refused, reset or timed-out connections, 5xx
answers, throttling) with backoff, :class:`RetryingFile` does so for every read of an open file, and
:func:`fetch_files` for each of many small files.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from raymix.io.retry import RetryPolicy

__all__ = [
    "filesystem",
    "storage_options_for",
    "uri_of",
    "join",
    "is_local",
    "atomic_write",
    "read_text",
    "retry",
    "RetryingFile",
    "fetch_files",
    "DEFAULT_RETRY_SECONDS",
]

T = TypeVar("T")

ENV_OPTIONS = "RAYMIX_STORAGE_OPTIONS"
S3_PROTOCOLS = ("s3", "s3a")
# Stores where an object becomes visible only once its upload completes (a single PUT or
# a completed multipart upload): a writer can write the final name directly.
ATOMIC_PUT_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory")


def _protocol(uri: str) -> str:
    if "://" in uri:
        return uri.split("://", 1)[0].lower()
    return "file"


def _merge(base: dict, extra: dict) -> dict:
    """Merge ``extra`` into ``base``; nested dicts (``client_kwargs``...) merge key by key."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _env_json_options(protocol: str) -> dict:
    text = os.environ.get(ENV_OPTIONS, "").strip()
    if not text:
        return {}
    try:
        opts = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{ENV_OPTIONS} is not valid JSON: {err}") from None
    if not isinstance(opts, dict):
        raise ValueError(f"{ENV_OPTIONS} must be a JSON object, got {type(opts).__name__}")
    known = set(fsspec.available_protocols())
    if opts and all(k in known for k in opts):
        aliases = {protocol} | (set(S3_PROTOCOLS) if protocol in S3_PROTOCOLS else set())
        picked: dict = {}
        for k in sorted(aliases & opts.keys()):
            picked = _merge(picked, opts[k])
        return picked
    return opts


def _env_s3_options() -> dict:
    opts: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        opts["client_kwargs"] = {"region_name": region}
    return opts


def storage_options_for(uri: str, storage_options: dict | None = None) -> dict:
    """The fsspec options :func:`filesystem` uses for ``uri`` (environment, then
    ``RAYMIX_STORAGE_OPTIONS``, then ``storage_options``)."""
    protocol = _protocol(uri)
    opts: dict = {}
    if protocol in S3_PROTOCOLS:
        opts = _env_s3_options()
    if protocol != "file":
        opts = _merge(opts, _env_json_options(protocol))
    return _merge(opts, storage_options or {})


def filesystem(uri: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``uri`` and the path inside it (no protocol).

    Local paths come back absolute. The filesystem pickles with its options (endpoint,
    region), so Ray tasks given it reach the same store; credentials are resolved again
    on each worker from its environment unless passed explicitly in ``storage_options``.
    """
    uri = os.fspath(uri)
    if _protocol(uri) == "file":
        fs = LocalFileSystem()
        path = uri[len("file://"):] if uri.startswith("file://") else uri
        return fs, os.path.abspath(os.path.expanduser(path))
    fs, path = fsspec.core.url_to_fs(uri, **storage_options_for(uri, storage_options))
    return fs, path.rstrip("/")


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def uri_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The URI users would write for ``path`` on ``fs``: a plain path for local files."""
    if is_local(fs):
        return path
    return fs.unstrip_protocol(path)


def join(base: str, *parts: str) -> str:
    """Join path parts onto a path or URI with ``/``."""
    return posixpath.join(base.rstrip("/"), *parts) if parts else base


def atomic_write(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either nothing or the whole file.

    Object stores publish an object only when its upload completes, so the final name is
    written directly. Elsewhere the bytes go to a hidden temporary name in the same folder
    (``.NAME.tmp-UUID``: ignored by Ray's and our readers and by ``*.parquet`` globs),
    are flushed to disk, then renamed over the final name (atomic on POSIX).
    """
    parent = posixpath.dirname(path)
    if is_local(fs):
        os.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".{posixpath.basename(path)}.tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if any(p in ATOMIC_PUT_PROTOCOLS for p in protocols):
        fs.pipe_file(path, data)
        return
    tmp = posixpath.join(parent, f".{posixpath.basename(path)}.tmp-{uuid.uuid4().hex}")
    fs.pipe_file(tmp, data)
    fs.mv(tmp, path)


def read_text(fs: fsspec.AbstractFileSystem, path: str) -> str:
    with fs.open(path, "rb") as f:
        return f.read().decode("utf-8")


# -- reading through transient errors --

#: How long one read keeps retrying a transient error before it gives up (seconds, wall
#: clock): longer than the blips object stores and their networks have (a node's network
#: restarting, a load balancer failing over, a throttling burst).
DEFAULT_RETRY_SECONDS = 120.0


def retry(fn: Callable[[], T], what: str, seconds: float = DEFAULT_RETRY_SECONDS) -> T:
    """``fn()``, called again after a transient error (:func:`raymix.io.retry.is_transient`)
    with backoff (:class:`raymix.io.retry.RetryPolicy`: 0.5 s, doubling, at most 30 s between
    tries, jittered) until ``seconds`` have passed; then the last error is raised. Other
    errors are raised at once."""
    return RetryPolicy(attempts=10_000, deadline=seconds).call(fn, what=what)


class RetryingFile(io.RawIOBase):
    """A read-only file on ``fs`` whose reads survive transient errors: the file is opened
    again at the same position and the read repeated (:func:`retry`). What Arrow's parquet
    reader and the tar reader read through, so a blip mid-shard costs a retry, not the shard."""

    def __init__(self, fs, path: str, seconds: float = DEFAULT_RETRY_SECONDS, block_size: int | None = None):
        self.fs, self.path, self.seconds, self.block_size = fs, path, seconds, block_size
        self._pos = 0
        self._f = None
        self._f = retry(self._open, f"opening {path}", seconds)
        self.size = self._f.size if getattr(self._f, "size", None) is not None else None

    def _open(self):
        kwargs = {"block_size": self.block_size} if self.block_size else {}
        return self.fs.open(self.path, "rb", **kwargs)

    def _again(self, op):
        def attempt():
            if self._f is None:
                self._f = self._open()
                self._f.seek(self._pos)
            try:
                return op(self._f)
            except Exception:
                f, self._f = self._f, None
                try:
                    f.close()
                except Exception:  # noqa: BLE001 - the file is broken anyway
                    pass
                raise

        return retry(attempt, f"reading {self.path}", self.seconds)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = offset
        elif whence == 1:
            self._pos += offset
        else:
            if self.size is None:
                self.size = self._again(lambda f: f.seek(0, 2))
            self._pos = self.size + offset
        if self._f is not None:
            self._f.seek(self._pos)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        pos = self._pos

        def op(f):
            f.seek(pos)
            return f.read(n)

        data = self._again(op)
        self._pos = pos + len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            finally:
                self._f = None
        super().close()


def fetch_files(fs, paths: Sequence[str], threads: int = 16, seconds: float = DEFAULT_RETRY_SECONDS
                ) -> dict[str, bytes | BaseException]:
    """The bytes of each path (or the error that stopped it), fetched ``threads`` at a time,
    each retried through transient errors (:func:`retry`).

    One ``cat_file`` per path: fsspec's batched ``cat(list)`` expands glob characters, so a
    file named ``a[1].jpg`` or ``b?.png`` would come back missing."""

    def one(path: str):
        try:
            return retry(lambda: fs.cat_file(path), f"reading {path}", seconds)
        except Exception as err:  # noqa: BLE001 - returned to the caller, who records it
            return err

    if len(paths) <= 1:
        return {p: one(p) for p in paths}
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(paths)))) as pool:
        return dict(zip(paths, pool.map(one, paths)))
