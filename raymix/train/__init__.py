"""Distributed training on Ray Train with streamed, augmented input.

``fit`` (in :mod:`raymix.train.trainer`) is imported lazily so that importing this package
does not import Ray.
"""

from __future__ import annotations

from typing import Any

from raymix.train.config import RECIPES, TrainConfig, TrainInput, apply_recipe, parse_input

__all__ = ["fit", "TrainConfig", "TrainInput", "RECIPES", "apply_recipe", "parse_input"]


def __getattr__(name: str) -> Any:
    if name == "fit":
        from raymix.train.trainer import fit

        return fit
    raise AttributeError(name)
