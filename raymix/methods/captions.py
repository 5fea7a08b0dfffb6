"""Short text for preview captions, shared by the methods' ``caption``."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BLEND_SHORT", "describe_ops", "number"]

#: Blend kinds as a caption names them.
BLEND_SHORT = {"add": "add", "multiply": "mul", "pixel": "pixel", "element": "elem"}


def number(value) -> str:
    """A parameter value in few characters: floats to two decimals (three below 0.01)."""
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) >= 0.01 or value == 0 else f"{value:.3f}"
    return str(value)


def describe_ops(ops: Sequence[dict | None]) -> str:
    """``[{"op": "rotate", "degrees": -17.2}, ...]`` -> ``"rotate -17.2, ..."``."""
    parts = []
    for op in ops:
        if not op:
            continue
        values = [number(v) for k, v in op.items() if k != "op" and not isinstance(v, (list, dict))]
        parts.append(" ".join([op["op"], *values]))
    return ", ".join(parts)
