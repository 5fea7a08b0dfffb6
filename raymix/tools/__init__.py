"""Tools around the library, not part of it: what the ``raymix`` commands ``preview``,
``plan`` and ``sample`` run.

- :mod:`raymix.tools.preview`: contact sheets (layout, captions, PNG encoding)
- :mod:`raymix.tools.preview_methods`: the rows of a preview sheet, one per method
- :mod:`raymix.tools.sizing`: cost and time estimates for a run (``raymix plan``)
- :mod:`raymix.tools.sample_data`: generated ImageNet-like data (``raymix sample``)
"""
