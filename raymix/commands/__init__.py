"""Subcommands of the ``raymix`` command line, one module each."""
