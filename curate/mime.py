"""Image types from magic bytes: the one table every layer sniffs content with.

The network layer refuses a body that is no image (curate.fetch), the readers label what they read, decode
names the format before Pillow sees the data, and extract recognises images captured in the WARC.
"""

from __future__ import annotations

SNIFF_BYTES = 16  # bytes needed to tell every format we know

_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"), (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
)


def sniff(head: bytes) -> str | None:
    """The image type of content from its first bytes, or None if it is not a raster image we know."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:12] in (b"ftypavif", b"ftypavis"):
        return "image/avif"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "image/heic"
    return next((mime for magic, mime in _MAGIC if head.startswith(magic)), None)
