"""Model wrappers: load weights (HF id, local folder, object-store mirror), batch, run on a device.

Heavy imports (torch, diffusers, transformers) happen in the submodules, e.g.
:mod:`raymix.models.editor`, so importing this package stays cheap.
"""
