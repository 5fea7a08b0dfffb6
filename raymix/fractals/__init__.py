"""Fractals without downloads: procedural generators and the per-machine bank methods draw from.

- :mod:`raymix.fractals.generators`: IFS chaos game and escape-time orbit traps, batched torch
  code, deterministic in their seed (no I/O).
- :mod:`raymix.fractals.bank`: :class:`FractalBank`, generated or read from a folder URI, cached
  on disk and shared by the processes of a machine.
"""

from raymix.fractals.bank import DEFAULT_BANK_SIZE, DEFAULT_RESIZE_RATIO, DEFAULT_RESOLUTION, KINDS, FractalBank, cache_dir

__all__ = ["FractalBank", "DEFAULT_BANK_SIZE", "DEFAULT_RESOLUTION", "DEFAULT_RESIZE_RATIO", "KINDS", "cache_dir"]
