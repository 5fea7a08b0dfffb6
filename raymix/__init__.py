"""raymix: label-preserving image augmentation at ImageNet scale on Ray."""

__version__ = "0.1.0.dev0"
