"""The plan at a larger scale: more of everything, and still no duplicate the truth does not know about."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate import reasons as R
from curate.sample.plan import build_plan, truth_rows


@pytest.mark.slow
def test_scale_two_doubles_the_crawl_without_hidden_duplicates(sample_crawl: Path) -> None:
    small, large = pq.read_table(sample_crawl / "truth.parquet").to_pylist(), build_plan(0, 2)  # scale 1: the session's
    rows = truth_rows(large)
    assert 1.8 <= len(rows) / len(small) <= 2.2
    assert len({r["url"] for r in rows}) == len(rows)
    assert large.slots_used["photo"] <= 65 and large.slots_used["sign"] <= 65
    by_digest: dict[str, list] = {}
    fates = {r["url"]: r for r in rows}
    for img in large.images:
        if img.data and fates[img.url]["fate"] in (R.KEPT, R.DUPLICATE):
            by_digest.setdefault(hashlib.sha256(img.data).hexdigest(), []).append(fates[img.url]["dup_group"])
    # identical bytes at several URLs only ever inside one planted duplicate group
    for groups in by_digest.values():
        if len(groups) > 1:
            assert len(set(groups)) == 1 and groups[0] is not None
    assert any(len(groups) > 1 for groups in by_digest.values())
