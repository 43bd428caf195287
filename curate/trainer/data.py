"""Training data: curate's shards (WebDataset tars, or Parquet with a `data` column) from any fsspec URL,
streamed, shuffled, multi-cropped and batched in DataLoader workers.

The order is a pure function of (seed, step), so a resumed run sees exactly the batches an uninterrupted
run would have seen, whatever the workers' timing:
- R streams (R = loader workers, at most the number of shards, at least 1). Stream r reads, epoch after
  epoch, the shards `order[r::R]` where `order` is the shard list shuffled by (seed, epoch); a seeded
  shuffle buffer mixes samples; consecutive runs of `batch_size` raw samples form its batches.
- Global step s is stream s % R's batch s // R. The DataLoader hands batches out round-robin, in order,
  so worker w plays stream (w + start_step) % R and skips the raw batches before `start_step` without
  decoding them.
- A sample's crops come from a `random.Random` seeded by (seed, step, position in batch).
A sample without an image member, or whose image bytes do not decode, is dropped from its batch and
counted (`missing_image`, `undecodable`); the run goes on.
"""

from __future__ import annotations

import io
import random
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from curate.errors import CurateError, InputError
from curate.trainer.augment import MultiCrop
from curate.trainer.config import TrainConfig

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tiff", "tif")
MISSING_IMAGE = "missing_image"
UNDECODABLE = "undecodable"


class DataError(CurateError):
    """The shards cannot feed training (no sample at all in a stream's shards)."""


@dataclass(frozen=True)
class Shards:
    """The shard files of one dataset, with the filesystem that reads them."""

    fs: Any
    paths: tuple[str, ...]
    kind: str  # "tar" | "parquet"


def find_shards(url: str, kind: str = "auto") -> Shards:
    """The *.tar (or *.parquet) files directly under `url`, in name order. Raises InputError."""
    fs, root = fsspec.core.url_to_fs(url)
    if not fs.exists(root):
        raise InputError(f"--data {url}: no such path")
    if fs.isfile(root):
        found = [root]
        kind = "parquet" if root.endswith(".parquet") else "tar"
    else:
        root = root.rstrip("/")
        tars = sorted(fs.glob(f"{root}/*.tar"))
        parquets = sorted(fs.glob(f"{root}/*.parquet"))
        if kind == "auto":
            kind = "tar" if tars else "parquet" if parquets else "auto"
        found = tars if kind == "tar" else parquets
    if not found:
        what = {"tar": "*.tar", "parquet": "*.parquet"}.get(kind, "*.tar or *.parquet")
        raise InputError(f"--data {url}: no shards ({what}) found")
    return Shards(fs, tuple(found), kind)


def raw_samples(shards: Shards, path: str) -> Iterator[dict[str, Any]]:
    """{"key", "image" (bytes or None)} for each sample of one shard, undecoded."""
    from webdataset.tariterators import group_by_keys, tar_file_iterator  # here: the GPU script runs without it

    with shards.fs.open(path, "rb") as f:
        if shards.kind == "tar":
            members = ({**m, "__url__": path} for m in tar_file_iterator(f))
            for sample in group_by_keys(members):
                ext = next((e for e in IMAGE_EXTS if e in sample), None)
                yield {"key": sample["__key__"], "image": sample[ext] if ext else None}
        else:
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(f)
            if "data" not in pf.schema_arrow.names:
                raise InputError(f"{path}: Parquet shard without a `data` column (image bytes): read the tars")
            for batch in pf.iter_batches(columns=["key", "data"], batch_size=256):
                for row in batch.to_pylist():
                    yield {"key": row["key"], "image": row["data"]}


def decode(data: bytes | None, max_side: int) -> Image.Image | str:
    """RGB image with its shorter side reduced to about `max_side` (JPEG draft mode where it helps), or
    the reason it cannot be used."""
    if not data:
        return MISSING_IMAGE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as src:
                src.draft("RGB", (max_side, max_side))
                image = src.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return UNDECODABLE
    short = min(image.size)
    if short > max_side:
        k = max_side / short
        image = image.resize((max(1, round(image.width * k)), max(1, round(image.height * k))),
                             Image.Resampling.BILINEAR)
    return image


class TrainStream(IterableDataset):
    """Batches of multi-crops for steps start_step, start_step+1, ... (never ends)."""

    def __init__(self, shards: Shards, config: TrainConfig, start_step: int = 0) -> None:
        super().__init__()
        self.shards, self.config, self.start_step = shards, config, start_step
        self.streams = max(1, min(config.num_workers, len(shards.paths)))
        self.crops = MultiCrop(config.image_size, config.local_size, config.local_crops, config.global_scale,
                               config.local_scale)

    def _raw(self, stream: int) -> Iterator[dict[str, Any]]:
        epoch = 0
        while True:
            order = list(self.shards.paths)
            random.Random(f"{self.config.seed}/epoch/{epoch}").shuffle(order)
            seen = 0
            for path in order[stream::self.streams]:
                for sample in raw_samples(self.shards, path):
                    seen += 1
                    yield sample
            if not seen:
                raise DataError(f"no samples in the shards of stream {stream} (epoch {epoch})")
            epoch += 1

    def _raw_batches(self, stream: int) -> Iterator[list[dict[str, Any]]]:
        from webdataset.filters import _shuffle

        rng = random.Random(f"{self.config.seed}/buffer/{stream}")
        samples = _shuffle(self._raw(stream), bufsize=self.config.shuffle_buffer,
                           initial=self.config.shuffle_buffer, rng=rng)
        while True:
            yield [next(samples) for _ in range(self.config.batch_size)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info else 0
        stream = (worker + self.start_step) % self.streams
        for local, chunk in enumerate(self._raw_batches(stream)):
            step = local * self.streams + stream
            if step >= self.start_step:
                yield self.collate(chunk, step)

    def collate(self, chunk: list[dict[str, Any]], step: int) -> dict[str, Any]:
        config = self.config
        views: list[list[torch.Tensor]] = [[] for _ in range(2 + config.local_crops)]
        corrupt: Counter[str] = Counter()
        keys = []
        for i, sample in enumerate(chunk):
            image = decode(sample["image"], 2 * config.image_size)
            if isinstance(image, str):
                corrupt[image] += 1
                continue
            globals_, locals_ = self.crops(image, random.Random(f"{config.seed}/{step}/{i}"))
            for slot, crop in zip(views, globals_ + locals_, strict=True):
                slot.append(crop)
            keys.append(sample["key"])
        crops = [torch.stack(v) if v else torch.empty(0) for v in views]
        return {"step": step, "crops": crops, "keys": keys, "corrupt": dict(corrupt)}


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def loader(shards: Shards, config: TrainConfig, start_step: int = 0) -> DataLoader:
    dataset = TrainStream(shards, config, start_step)
    workers = dataset.streams if config.num_workers > 0 else 0
    return DataLoader(dataset, batch_size=None, num_workers=workers, worker_init_fn=_worker_init if workers else None,
                      prefetch_factor=4 if workers else None, persistent_workers=False)
