"""The secure world: the only place that holds keys, reads cards and builds PIN blocks."""
