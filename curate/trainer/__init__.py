"""A compact DINO trainer (self-distillation with no labels) that reads curate's shards, and its probes.

Modules, each small: `config` (presets and overrides), `augment` (multi-crop), `model` (ViT), `head`
(DINO projection head), `loss` (DINO loss with centering, KoLeo), `data` (WebDataset/Parquet streaming,
deterministic per step), `loop` (schedules, EMA teacher, checkpoints), `eval` (k-NN and linear probes),
`toyshards` (small shards in the shard format, for tests and benchmarks), `commands` (CLI wiring).
"""
