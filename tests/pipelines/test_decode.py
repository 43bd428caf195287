"""The decode/validate stage on the downloaded sample crawl and on a folder, scored against truth.parquet."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate import reasons as R
from curate.config import load_config
from curate.io import RowGroupWriter
from curate.pipelines import decode
from curate.readers import list_sources, read_source
from curate.tables import IMAGE_SCHEMA
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


def test_sources_split_into_contiguous_parts() -> None:
    sources = [f"s{i}" for i in range(7)]
    parts = decode.split_parts(sources, 3)
    assert [i for i, _ in parts] == [0, 1, 2]
    assert [len(p) for _, p in parts] == [2, 2, 3]
    assert [s for _, p in parts for s in p] == sources
    assert decode.split_parts(sources[:2], 8) == [(0, ["s0"]), (1, ["s1"])]


def test_each_part_streams_its_sources_into_one_file(downloaded, tmp_path: Path) -> None:
    out, _ = downloaded
    sources = list_sources([str(out / "fetched" / "*.tar")])
    assert len(sources) >= 3
    work = tmp_path / "out"
    manifest = decode.run(sources, str(work), load_config(None, {"extract.shards": 2}))
    files = sorted((work / "images").glob("*.parquet"))
    assert [f.name for f in files] == ["images-00000-of-00002.parquet", "images-00001-of-00002.parquet"]
    assert not list((work / "images").glob(".tmp-*"))
    kept = {k for f in files for k in pq.read_table(f, columns=["key"]).column("key").to_pylist()}
    assert len(kept) == manifest["funnel"]["images"]["kept"]
    listed = {t["path"]: t for t in manifest["tables"]["images"]}
    for f, (_, part) in zip(files, decode.split_parts(sources, 2), strict=True):
        # a part's rows are its sources' valid images, in the sources' order
        expected = [image.ref.key for source in part for image in read_source(source) if image.ref.key in kept]
        assert pq.read_table(f, columns=["key"]).column("key").to_pylist() == expected
        data = f.read_bytes()
        entry = listed[f"images/{f.name}"]
        assert (entry["rows"], entry["bytes"], entry["sha256"]) == (
            len(expected), len(data), hashlib.sha256(data).hexdigest())


def test_an_image_file_is_written_a_row_group_at_a_time(decoded: Path, tmp_path: Path) -> None:
    rows = parquet_rows(decoded / "images")[:23]
    url = str(tmp_path / "images-00000-of-00001.parquet")
    writer = RowGroupWriter(url, IMAGE_SCHEMA, group_rows=5)
    for row in rows:
        writer.add(row)
    rows_written, size, digest = writer.commit()
    data = Path(url).read_bytes()
    assert (rows_written, size, digest) == (23, len(data), hashlib.sha256(data).hexdigest())
    meta = pq.ParquetFile(url).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [5, 5, 5, 5, 3]
    assert pq.read_table(url).to_pylist() == rows
    empty = RowGroupWriter(str(tmp_path / "empty.parquet"), IMAGE_SCHEMA, 256)
    assert empty.commit() is None
    assert [p.name for p in tmp_path.iterdir()] == ["images-00000-of-00001.parquet"]
