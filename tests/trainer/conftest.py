"""Toy shards in curate's shard format, built once per session (no crawl, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.trainer.config import TrainConfig, preset
from curate.trainer.toyshards import samples, write_shards


def small(**overrides: object) -> TrainConfig:
    """cpu-tiny, smaller still: fast enough for many short runs in one test session."""
    base = {"batch_size": 16, "local_crops": 2, "head_hidden": 256, "num_workers": 0,
            "shuffle_buffer": 32, "threads": 1}
    return preset("cpu-tiny", **{**base, **overrides})


@pytest.fixture(scope="session")
def toy_records() -> list[dict]:
    return samples(192, seed=0, size=64)


@pytest.fixture(scope="session")
def toy_shards(tmp_path_factory: pytest.TempPathFactory, toy_records: list[dict]) -> Path:
    """4 shards of 48 samples: every kind of picture, jpg/png/webp, tar + parquet + manifest."""
    out = tmp_path_factory.mktemp("shards")
    write_shards(str(out), toy_records, per_shard=48)
    return out
