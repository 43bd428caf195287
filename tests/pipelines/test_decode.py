"""The decode/validate stage on the downloaded sample crawl and on a folder, scored against truth.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate import reasons as R
from curate.config import load_config
from curate.readers import list_sources
from pipelines import decode
from tests.conftest import parquet_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def decoded(downloaded) -> Path:
    out, _ = downloaded
    decode.run(list_sources([str(out / "fetched" / "*.tar")]), str(out), load_config())
    return out


def test_every_image_gets_the_truths_decode_fate(decoded: Path, sample_crawl: Path) -> None:
    truth = {r["url"]: r for r in pq.read_table(sample_crawl / "truth.parquet").to_pylist()}
    downloaded = [r for r in parquet_rows(decoded / "ledger") if r["reason"] == R.KEPT]
    images = {r["url"]: r for r in parquet_rows(decoded / "images")}
    rejects = {r["url"]: r["reason"] for r in parquet_rows(decoded / "rejects") if r["stage"] == R.DECODE}
    assert len(images) + len(rejects) == len(downloaded)
    for row in downloaded:
        expected = truth[row["url"]]
        if expected["stage"] == R.DECODE:
            assert rejects.get(row["url"]) == expected["reason"], row["url"]
        else:
            image = images[row["url"]]
            assert (image["width"], image["height"]) == (expected["width"], expected["height"]), row["url"]
            assert image["format"] == expected["format"] and image["animated"] == expected["animated"]
    stats = json.loads((decoded / "stats.json").read_text())["decode"]["images"]
    assert stats["input"] == stats["kept"] + sum(stats["rejected"].values()) + stats["failed"]
    assert stats["failed"] == 0


def test_exact_duplicates_share_bytes_or_pixel_hashes(decoded: Path, sample_crawl: Path) -> None:
    truth = {r["url"]: r for r in pq.read_table(sample_crawl / "truth.parquet").to_pylist()}
    images = parquet_rows(decoded / "images")
    groups: dict[int, list[dict]] = {}
    for image in images:
        row = truth[image["url"]]
        if row["dup_kind"] in ("exact", "pixels"):
            groups.setdefault(row["dup_group"], []).append(image)
    assert groups
    for members in groups.values():
        assert len({m["pixel_hash"] for m in members}) == 1, [m["url"] for m in members]
    distinct = [i for i in images if truth[i["url"]]["dup_group"] is None]
    assert len({i["pixel_hash"] for i in distinct}) == len(distinct)


def test_a_folder_of_images_names_each_file(sample_crawl: Path, tmp_path: Path) -> None:
    folder = sample_crawl / "hosts" / "docs" / "bad"
    out = str(tmp_path / "out")
    manifest = decode.run(list_sources([str(folder)]), out, load_config())
    rejects = parquet_rows(Path(out) / "rejects")
    assert rejects and all(r["url"].startswith("file://") and Path(r["url"][7:]).exists() for r in rejects)
    assert {r["reason"] for r in rejects} >= {R.UNSUPPORTED_FORMAT}
    assert manifest["funnel"]["images"]["input"] == len(list_sources([str(folder)]))
