"""The text filters: light (any readable text), heavy (text-dense: documents, charts, tables), notext.

The rules read a TextScore only, so a finished dataset that stores its scores can be re-thresholded
without running OCR again. Thresholds are config fields (curate.config.TextConfig); their defaults come
from the sample crawl's truth and are documented with their precision and recall in BENCHMARKS.md.
"""

from __future__ import annotations

from curate import reasons as R
from curate.config import TextConfig
from curate.records import TextScore


def is_light(score: TextScore, config: TextConfig) -> bool:
    """Readable text: enough recognized characters."""
    return score.chars >= config.light_min_chars


def is_heavy(score: TextScore, config: TextConfig) -> bool:
    """Text-dense documents, charts and tables: several lines and enough characters, on a page (a light
    background over much of the picture; UI screenshots, signs and photos with captions are not pages)."""
    return (score.lines >= config.heavy_min_lines and score.chars >= config.heavy_min_chars
            and score.page >= config.heavy_min_page)


def verdict(score: TextScore, config: TextConfig) -> str:
    """KEPT, or the reason the configured filter drops the image (none keeps everything)."""
    if config.filter == "light" and not is_light(score, config):
        return R.NO_TEXT
    if config.filter == "heavy" and not is_heavy(score, config):
        return R.NOT_TEXT_DENSE
    if config.filter == "notext" and is_light(score, config):
        return R.HAS_TEXT
    return R.KEPT
