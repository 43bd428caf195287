"""Beam wiring only: PipelineOptions, stage graphs and `run(argv)` for each stage. No business logic."""
