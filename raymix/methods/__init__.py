"""Label-preserving mixing methods, one module per paper.

Each method draws per-sample parameters (``method.make_params``), applies them to a ``uint8``
batch (``method.apply``), describes them (``method.describe``, ``method.caption``), and does
both at once (``method.augment(images, generators)``) or as a torchvision-style transform
(``method(image)``). Ray Data runs them through :class:`raymix.pipeline.rows.MethodStage`.
The names are :mod:`raymix.registry`'s. See ``docs/methods.md``.
"""

from raymix import registry
from raymix.methods.base import MixingMethod
from raymix.methods.diffusemix import DiffuseMix
from raymix.methods.ipmix import IPMix
from raymix.methods.layermix import LayerMix
from raymix.methods.pixmix import PixMix

__all__ = ["MixingMethod", "PixMix", "IPMix", "LayerMix", "DiffuseMix", "get_method"]


def get_method(name: str, **kwargs):
    """Build a registered method by name, e.g. ``get_method("pixmix", seed=1)``."""
    return registry.create(name, **kwargs)
