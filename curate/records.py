"""Typed, immutable records that flow between stages (docs/ARCHITECTURE.md, "How a record flows").

NamedTuples: immutable, cheap to pickle across Beam workers, and convertible to Parquet rows with
`_asdict()`. A record never changes in place; a stage makes the next record from the previous one, so
provenance (the `ImageRef`) travels unchanged from extract to the final shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class ImageRef(NamedTuple):
    """One distinct image URL found in the crawl, with where it was first seen."""

    key: str  # url_key(url): 32 lower-case hex digits
    url: str  # normalized absolute http(s) URL
    alt: str
    title: str
    page_url: str
    snapshot: str  # e.g. CC-MAIN-2021-04
    source_file: str  # crawl file URL
    record_offset: int  # byte offset of the WARC/WAT record in source_file
    crawl_date: str  # ISO 8601 UTC, the record's WARC-Date
    source: str = "html"  # html (WARC page) | wat (WAT links) | inline (WARC record whose payload is an image)
    content: bytes | None = None  # inline images: the payload, no download needed
    occurrences: int = 1  # how many references the crawl holds to this URL (after URL dedup)
    alts: tuple[str, ...] = ()  # a few distinct alt texts, earliest references first


class FetchedImage(NamedTuple):
    """An image's original bytes as fetched (or carried inline), with the HTTP facts."""

    ref: ImageRef
    data: bytes
    mime: str  # from magic bytes, not from the Content-Type header
    http_status: int  # 0 for inline images
    headers: tuple[tuple[str, str], ...] = ()  # the relevant response headers


class TextScore(NamedTuple):
    """What OCR measured on one image; thresholds for light/heavy/notext are applied to these."""

    boxes: int
    area_fraction: float  # of the image area covered by text boxes
    words: int
    chars: int
    mean_confidence: float
    lines: int
    text: str  # recognized text, truncated ("" when nothing was read: the fast path's default)
    ms: float  # time spent
    read: int = 0  # boxes recognized; when < boxes, words and chars of the others are estimated from geometry
    page: float = 0.0  # fraction of the picture that is light, unsaturated background (a page, not a UI or photo)
    # the length of the text-shaped lines the detector found, in line heights, whether or not they could be read
    # (text in any script; curate.ocr)
    extent: float = 0.0


class DupInfo(NamedTuple):
    cluster: str  # cluster id (the survivor's key)
    cluster_size: int
    dup_of: str | None = None  # key of the survivor, None on the survivor itself


class ImageRecord(NamedTuple):
    """A decoded, validated image on its way to the shards."""

    key: str
    data: bytes  # original bytes, unchanged
    width: int
    height: int
    format: str  # jpeg | png | webp | gif ...
    sha256: str  # of the original bytes
    pixel_hash: str  # of the decoded, normalized pixels
    phash: int  # 64-bit perceptual hash
    ref: ImageRef
    animated: bool = False
    text: TextScore | None = None
    dup: DupInfo | None = None
    features: bytes = b""  # packed ORB keypoints (curate.keypoints), empty when image.keypoints is off
    thumbnail: bytes = b""  # small grey PNG for the keypoint matches' photometric check, likewise


class Rejected(NamedTuple):
    """A record a stage decided to drop, and why (a constant from curate.reasons)."""

    key: str
    url: str
    stage: str
    reason: str
    detail: str = ""
    occurrences: int = 1  # identical rejects (same key, stage and reason) are merged and counted


class Failed(NamedTuple):
    """A dead letter: an unexpected error while processing one record."""

    key: str
    url: str
    stage: str
    error: str  # exception type and message
    detail: str = ""  # traceback or context


@dataclass(frozen=True)
class LedgerRow:
    """One ref's outcome at download: the OUT/ledger row that `--retry-failed` and the next stages read."""

    key: str  # the ref's key
    url: str
    reason: str  # kept (downloaded) or an error class
    detail: str  # img2dataset's error message
    retryable: bool
    shard: str
    sample_key: str  # img2dataset's key inside the shard
