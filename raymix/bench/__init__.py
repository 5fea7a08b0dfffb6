"""Benchmarks: ``python -m raymix.bench SUITE --json`` or ``raymix bench SUITE --json``.

Each suite is a module here exposing ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``, printing one JSON object per line on stdout. Speed and memory
targets are checked here, never by timed unit tests.
"""
