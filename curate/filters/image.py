"""Decode and validate, as a filter: the rule for one image (curate.imaging does the decoding) and the
Beam DoFn that applies it to every image of a source (a tar shard or an image file). Refusals leave with
their reason, unexpected errors as dead letters, valid images as `ImageRecord`s with their hashes."""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from curate import reasons as R
from curate.config import ImageConfig
from curate.hashing import phash64, sha256_hex
from curate.imaging import Refusal, decode
from curate.readers import read_source
from curate.records import Failed, FetchedImage, ImageRecord, Rejected
from curate.urls import url_key

STAGE = R.DECODE
REJECTED, FAILED, COUNTS = "rejected", "failed", "counts"


def decode_one(fetched: FetchedImage, config: ImageConfig) -> ImageRecord | Rejected:
    """The stage's rule for one image, without Beam."""
    ref = fetched.ref
    result = decode(fetched.data, config)
    if isinstance(result, Refusal):
        return Rejected(ref.key, ref.url, STAGE, result.reason, result.detail)
    return ImageRecord(ref.key, fetched.data, result.width, result.height, result.format, sha256_hex(fetched.data),
                       result.pixel_hash, phash64(result.view), ref, result.animated)


class DecodeSource(beam.DoFn):
    def __init__(self, config: ImageConfig):
        self.config = config

    def process(self, source: str) -> Iterator[Any]:
        counts: Counter[str] = Counter()
        try:
            for fetched in read_source(source):
                counts["input"] += 1
                yield from self._one(fetched, counts)
        except Exception as e:  # noqa: BLE001 - an unreadable source is a dead letter, not a failed run
            counts["unreadable_sources"] += 1
            yield pvalue.TaggedOutput(FAILED, Failed(url_key(source), source, STAGE, f"{type(e).__name__}: {e}",
                                                     traceback.format_exc(limit=5)))
        for name, n in counts.items():
            Metrics.counter(STAGE, name).inc(n)
        yield pvalue.TaggedOutput(COUNTS, dict(counts))

    def _one(self, fetched: FetchedImage, counts: Counter[str]) -> Iterator[Any]:
        try:
            result = decode_one(fetched, self.config)
        except Exception as e:  # noqa: BLE001 - decode() promises refusals, not exceptions; guard anyway
            counts["failed"] += 1
            yield pvalue.TaggedOutput(FAILED, Failed(fetched.ref.key, fetched.ref.url, STAGE,
                                                     f"{type(e).__name__}: {e}", traceback.format_exc(limit=5)))
            return
        if isinstance(result, Rejected):
            counts[result.reason] += 1
            yield pvalue.TaggedOutput(REJECTED, result)
        else:
            counts[R.KEPT] += 1
            yield result
