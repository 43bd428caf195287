"""Stage names and reason codes: the one place they are defined.

Every record leaves a stage as kept, rejected (with one of these reasons) or failed (dead letter). The
constants double as Beam counter names and as the `reason` column of `OUT/rejects/`, so they are stable
snake_case strings. `truth.parquet` of the sample crawl uses the same codes for its expected fates.
"""

from __future__ import annotations

KEPT = "kept"

# Stages, in pipeline order.
EXTRACT = "extract"
DOWNLOAD = "download"
DECODE = "decode"
DEDUP = "dedup"
TEXT = "text"
WRITE = "write"
STAGES = (EXTRACT, DOWNLOAD, DECODE, DEDUP, TEXT, WRITE)

# extract: image references (one per occurrence of an <img> or WAT link)
DATA_URI = "data_uri"  # data: URIs carry no fetchable image (often lazy-loading placeholders)
BAD_SCHEME = "bad_scheme"  # javascript:, ftp:, blob: ... (only http(s) is fetched)
UNPARSEABLE_URL = "unparseable_url"  # no host after resolution, invalid port, broken IPv6 literal
PAGE_OPTOUT = "page_optout"  # page says noai/noimageai (meta robots or X-Robots-Tag)
DUPLICATE_URL = "duplicate_url"  # another occurrence of a URL already kept (counted, not written per row)
# extract: crawl records and files (not images)
NOT_WARC = "not_warc"  # a listed file that is not a WARC/WAT at all
MISSING_FILE = "missing_file"  # a listed file that does not exist (404, no such path)
TRUNCATED_RECORD = "truncated_record"  # payload shorter than its declared length, or the stream broke

# download
ROBOTS_DISALLOW = "robots_disallow"  # robots.txt disallows the URL for our user agent
ROBOTS_UNREACHABLE = "robots_unreachable"  # robots.txt could not be fetched (5xx, 429, network): retry later
HEADER_OPTOUT = "header_optout"  # X-Robots-Tag on the image response
BLOCKED_ADDRESS = "blocked_address"  # SSRF guard: private, loopback, link-local ... address
TIMEOUT = "timeout"
TOO_LARGE = "too_large"
INCOMPLETE_BODY = "incomplete_body"  # connection closed before Content-Length bytes arrived
NOT_AN_IMAGE = "not_an_image"  # magic bytes are not an image, whatever the Content-Type says
TOO_MANY_REDIRECTS = "too_many_redirects"
CONNECTION_ERROR = "connection_error"


def http_status(code: int) -> str:
    """Reason for an HTTP error status, e.g. `http_404`."""
    return f"http_{code}"


# decode and validate
UNSUPPORTED_FORMAT = "unsupported_format"
TOO_MANY_PIXELS = "too_many_pixels"
UNDECODABLE = "undecodable"
TRUNCATED = "truncated"
TOO_SMALL = "too_small"
BAD_ASPECT_RATIO = "bad_aspect_ratio"

# dedup
DUPLICATE = "duplicate"  # identical bytes or identical decoded pixels
NEAR_DUPLICATE = "near_duplicate"  # perceptual hash within the configured radius
EVAL_OVERLAP = "eval_overlap"  # near-duplicate of an image of an evaluation set (decontamination)

# text filter
OCR_FAILED = "ocr_failed"  # easyocr raised on this picture (it does on some odd inputs)
NO_TEXT = "no_text"  # light filter: no readable text
NOT_TEXT_DENSE = "not_text_dense"  # heavy filter: not a document, chart or table
HAS_TEXT = "has_text"  # notext filter: image contains text
