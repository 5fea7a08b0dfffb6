"""Tools around the library, not part of it: what the ``raymix`` commands ``preview``,
``plan``, ``sample`` and ``experiment`` run.

- :mod:`raymix.tools.preview`: contact sheets (layout, captions, PNG encoding)
- :mod:`raymix.tools.preview_methods`: the rows of a preview sheet, one per method
- :mod:`raymix.tools.sizing`: cost and time estimates for a run (``raymix plan``)
- :mod:`raymix.tools.sample_data`: generated ImageNet-like data (``raymix sample``)
- :mod:`raymix.tools.digits`: scikit-learn's bundled handwritten digits as class folders
- :mod:`raymix.tools.small_experiment`: the small robustness experiment (``raymix experiment``)
"""
