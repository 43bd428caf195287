"""The text filters: light (any readable text), heavy (text-dense: documents, charts, tables), notext.

The rules read a TextScore only, so a finished dataset that stores its scores can be re-thresholded
without running OCR again. Thresholds are config fields (curate.config.TextConfig); their defaults are
chosen by leave-one-source-out cross-validation on real labelled images (benchmarks/calibrate.py) and
documented with their precision and recall in BENCHMARKS.md.
"""

from __future__ import annotations

from curate import reasons as R
from curate.config import TextConfig
from curate.records import TextScore


def is_light(score: TextScore, config: TextConfig) -> bool:
    """Readable text: enough readable characters."""
    return score.chars >= config.light_min_chars


def is_heavy(score: TextScore, config: TextConfig) -> bool:
    """Documents, charts, tables, receipts and screenshots of text: enough characters on a page (most of the
    text region's background flat: paper, a screen; signs, shop fronts and products set text on a scene)."""
    return (score.chars >= config.heavy_min_chars and score.page >= config.heavy_min_page
            and score.lines >= config.heavy_min_lines)


def verdict(score: TextScore, config: TextConfig) -> str:
    """KEPT, or the reason the configured filter drops the image (none keeps everything)."""
    if config.filter == "light" and not is_light(score, config):
        return R.NO_TEXT
    if config.filter == "heavy" and not is_heavy(score, config):
        return R.NOT_TEXT_DENSE
    if config.filter == "notext" and is_light(score, config):
        return R.HAS_TEXT
    return R.KEPT
