"""Label-preserving mixing methods, one module per paper.

Each method works on a batch (``method.augment(images, generators)``), as a Ray Data
``map_batches`` function (``method(batch_dict)``) and as a torchvision-style transform
(``method(image)``). See ``docs/methods.md``.
"""

from raymix.methods.base import MixingMethod
from raymix.methods.diffusemix import DiffuseMix
from raymix.methods.ipmix import IPMix
from raymix.methods.layermix import LayerMix
from raymix.methods.pixmix import PixMix

__all__ = ["MixingMethod", "PixMix", "IPMix", "LayerMix", "DiffuseMix", "METHODS", "get_method"]

#: Method name (as written in output keys) -> class.
METHODS = {cls.name: cls for cls in (PixMix, IPMix, LayerMix, DiffuseMix)}


def get_method(name: str, **kwargs) -> MixingMethod:
    """Build a method by name, e.g. ``get_method("pixmix", seed=1, replicas=4)``."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}") from None
    return cls(**kwargs)
