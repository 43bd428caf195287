"""Decode and validate, as a filter: the rule for one image (curate.imaging does the decoding). A refusal is a
`Rejected` with its reason, a valid image an `ImageRecord` with its hashes; curate.pipelines.decode applies
the rule to every image of a source (a tar shard or an image file)."""

from __future__ import annotations

from curate import reasons as R
from curate.config import ImageConfig
from curate.hashing import phash64, sha256_hex
from curate.imaging import Refusal, decode
from curate.keypoints import Described, describe
from curate.records import FetchedImage, ImageRecord, Rejected

STAGE = R.DECODE


def decode_one(fetched: FetchedImage, config: ImageConfig) -> ImageRecord | Rejected:
    """The stage's rule for one image, without Beam."""
    ref = fetched.ref
    result = decode(fetched.data, config)
    if isinstance(result, Refusal):
        return Rejected(ref.key, ref.url, STAGE, result.reason, result.detail)
    described = describe(result.view) if config.keypoints else Described(b"", b"")
    return ImageRecord(ref.key, fetched.data, result.width, result.height, result.format, sha256_hex(fetched.data),
                       result.pixel_hash, phash64(result.view), ref, result.animated,
                       features=described.features, thumbnail=described.thumbnail)
