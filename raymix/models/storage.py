"""Filesystem access for model weights and prompt files: one place, so every caller agrees.

Uses :func:`raymix.io.storage.filesystem` when the IO layer provides it, otherwise
fsspec's own URL parsing. Both return ``(filesystem, path)`` with the protocol
stripped from ``path``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["filesystem"]


def filesystem(uri: str, storage_options: dict[str, Any] | None = None):
    """``(fsspec filesystem, path)`` for ``uri`` (``s3://``, ``gs://``, ``file://``, a local path...)."""
    try:
        from raymix.io.storage import filesystem as io_filesystem
    except ImportError:
        import fsspec

        return fsspec.core.url_to_fs(uri, **(storage_options or {}))
    return io_filesystem(uri, storage_options)
