"""URL lists in img2dataset's input formats: read as streams, judged by the extract stage like a page's links."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import reasons as R
from curate import urllists
from curate.config import load_config
from curate.crawl import input_files
from curate.errors import InputError
from tests.conftest import parquet_rows


def test_every_format_gives_rows_urls_and_captions(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("# my list\nhttp://h/1.jpg\n\n  http://h/2.jpg  \n")
    (tmp_path / "b.csv").write_text('url,caption,other\nhttp://h/1.jpg,"a cat, sitting",x\nhttp://h/3.jpg,,y\n')
    with gzip.open(tmp_path / "c.tsv.gz", "wt") as fh:
        fh.write("caption\turl\nthe tab one\thttp://h/4.jpg\n")
    pq.write_table(pa.table({"url": [f"http://h/{i}.jpg" for i in range(20_000)],
                             "caption": [f"c{i}" if i % 2 else None for i in range(20_000)]}),
                   tmp_path / "d.parquet", row_group_size=5000)
    assert list(urllists.read(str(tmp_path / "a.txt"))) == [(2, "http://h/1.jpg", ""), (4, "http://h/2.jpg", "")]
    assert list(urllists.read(str(tmp_path / "b.csv"))) == [(1, "http://h/1.jpg", "a cat, sitting"),
                                                            (2, "http://h/3.jpg", "")]
    assert list(urllists.read(str(tmp_path / "c.tsv.gz"))) == [(1, "http://h/4.jpg", "the tab one")]
    rows = list(urllists.read(str(tmp_path / "d.parquet")))
    assert len(rows) == 20_000 and rows[0] == (1, "http://h/0.jpg", "") and rows[-1] == (20_000, "http://h/19999.jpg",
                                                                                         "c19999")
    assert [f.kind for f in input_files([str(tmp_path / n) for n in ("a.txt", "b.csv", "c.tsv.gz", "d.parquet")])] \
        == ["urls"] * 4


def test_a_list_without_its_url_column_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "links.csv").write_text("link,caption\nhttp://h/1.jpg,x\n")
    with pytest.raises(InputError, match=r"has no column 'url' \(its columns: link, caption\).*extract.url_column"):
        urllists.check(str(tmp_path / "links.csv"), "url")
    urllists.check(str(tmp_path / "links.csv"), "link")
    assert list(urllists.read(str(tmp_path / "links.csv"), url_column="link")) == [(1, "http://h/1.jpg", "x")]


def test_extract_turns_a_list_into_refs_with_rejects_and_provenance(tmp_path: Path) -> None:
    from curate.pipelines import extract

    listing = tmp_path / "urls.csv"
    listing.write_text("url,caption\nhttp://Example.com/a.jpg,first\nhttp://example.com/a.jpg,again\n"
                       "relative/b.jpg,\ndata:image/png;base64,AAAA,\nftp://example.com/c.jpg,\n"
                       "https://example.com/d.png,a dog\n")
    out = tmp_path / "out"
    manifest = extract.run(input_files([str(listing)]), str(out), load_config())
    funnel = manifest["funnel"]
    assert funnel["records"]["kinds"] == {"list_row": 6}
    assert funnel["references"] == {"input": 6, "kept": 2, "failed": 0, "rejected": {
        R.BAD_SCHEME: 2, R.DATA_URI: 1, R.DUPLICATE_URL: 1}}
    refs = sorted(parquet_rows(out / "refs"), key=lambda r: r["url"])
    assert [(r["url"], r["alt"], r["source"], r["record_offset"]) for r in refs] == [
        ("http://example.com/a.jpg", "first", "list", 1), ("https://example.com/d.png", "a dog", "list", 6)]
    assert all(r["source_file"] == str(listing) for r in refs)
    rejects = {r["reason"]: r["detail"] for r in parquet_rows(out / "rejects")}
    assert rejects[R.BAD_SCHEME].startswith(str(listing) + "#")
    assert json.loads((out / "stats.json").read_text())["extract"]["files"]["kept"] == 1
