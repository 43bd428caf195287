"""The text filters: light (any readable text), heavy (text-dense: documents, charts, tables), notext.

The rules read a TextScore only, so a finished dataset that stores its scores can be re-thresholded
without running OCR again. Thresholds are config fields (curate.config.TextConfig); their defaults are
chosen by leave-one-source-out cross-validation on real labelled images (benchmarks/calibrate.py) and
documented with their precision and recall in BENCHMARKS.md.
"""

from __future__ import annotations

import math

from curate import reasons as R
from curate.config import TextConfig
from curate.records import TextScore


def is_light(score: TextScore, config: TextConfig) -> bool:
    """Readable text: enough readable characters, or enough text-shaped lines (text in any script: lines the
    detector finds are text whether or not the recognizer can read their script)."""
    return score.chars >= config.light_min_chars or score.extent >= config.light_min_extent


def is_heavy(score: TextScore, config: TextConfig) -> bool:
    """Documents, charts, tables, receipts and screenshots of text: enough text on a page (most of the text
    region's background flat: paper, a screen; signs, shop fronts and products set text on a scene), or a page's
    worth of text in many lines on any background (old, foxed or textured paper is not flat)."""
    on_page = (score.page >= config.heavy_min_page and score.lines >= config.heavy_min_lines
               and (score.chars >= config.heavy_min_chars or score.extent >= config.heavy_min_extent))
    return on_page or (score.chars >= config.heavy_dense_chars and score.lines >= config.heavy_dense_lines)


def describe_rules(config: TextConfig) -> str:
    """The light and heavy rules with these thresholds, in one sentence for people."""
    def extent(value: float) -> str:
        return f" or text-shaped lines {value:g} line heights long" if math.isfinite(value) else ""

    return (f"light keeps >= {config.light_min_chars} readable characters{extent(config.light_min_extent)}; heavy "
            f"keeps >= {config.heavy_min_chars} characters{extent(config.heavy_min_extent)} in >= "
            f"{config.heavy_min_lines} lines on a page share >= {config.heavy_min_page}, or >= "
            f"{config.heavy_dense_chars} characters in >= {config.heavy_dense_lines} lines on any background")


def verdict(score: TextScore, config: TextConfig) -> str:
    """KEPT, or the reason the configured filter drops the image (none keeps everything)."""
    if config.filter == "light" and not is_light(score, config):
        return R.NO_TEXT
    if config.filter == "heavy" and not is_heavy(score, config):
        return R.NOT_TEXT_DENSE
    if config.filter == "notext" and is_light(score, config):
        return R.HAS_TEXT
    return R.KEPT
