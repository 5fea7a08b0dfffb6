"""Ray Data wiring: stages, actor pools, resources. Thin code around plain callables."""
