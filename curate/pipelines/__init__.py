"""Beam wiring only: one module per stage (its graph, its `Stage` declaration and `run()`), the steps they
share (common), the stage runner (stage) and `run_all` (run). The decisions themselves are curate.filters."""
