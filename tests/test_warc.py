"""The record reader on hand-made damage, on the sample crawl's planted broken files and on real WARCs."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from curate.warc import DamagedFile, NotAWarc, iter_records

REAL = sorted((Path(__file__).resolve().parents[2] / "shared" / "real-data" / "warc").glob("*.warc*"))


def _warc(bodies: list[tuple[bytes, list[tuple[str, str]]]], gz: bool = True) -> bytes:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    for body, headers in bodies:
        http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record("http://example.com/", "response", payload=io.BytesIO(body),
                                                      length=len(body), http_headers=http))
    return buf.getvalue()


def test_complete_records_and_decoded_bodies() -> None:
    page = b"<html><img src=a.jpg></html>" * 50
    chunked = b"".join(f"{len(page[i:i + 100]):x}\r\n".encode() + page[i:i + 100] + b"\r\n"
                       for i in range(0, len(page), 100)) + b"0\r\n\r\n"
    data = _warc([
        (page, [("Content-Type", "text/html")]),
        (gzip.compress(page), [("Content-Type", "text/html"), ("Content-Encoding", "gzip")]),
        (chunked, [("Content-Type", "text/html"), ("Transfer-Encoding", "chunked")]),
        (page, [("Content-Type", "text/html"), ("Content-Encoding", "gzip")]),  # mislabeled: kept as is
    ])
    records = list(iter_records(io.BytesIO(data)))
    assert [r.payload for r in records] == [page] * 4
    assert all(r.complete and r.http_status == 200 and r.warc_type == "response" for r in records)
    assert records[0].offset == 0 and records[1].offset > records[0].offset


@pytest.mark.parametrize("gz", [True, False])
def test_file_cut_inside_a_record_yields_what_came_before(gz: bool) -> None:
    data = _warc([(b"first" * 100, []), (b"second" * 1000, [])], gz=gz)
    second = list(iter_records(io.BytesIO(data)))[1].offset
    cut = data[: second + (len(data) - second) // 2]
    seen = []
    with pytest.raises(DamagedFile) as info:
        for record in iter_records(io.BytesIO(cut)):
            seen.append(record)
    # uncompressed: the second record is seen, short; gzipped: its member breaks before its headers are whole
    assert [r.complete for r in seen] == ([True] if gz else [True, False])
    assert seen[0].payload == b"first" * 100 and info.value.records_read == len(seen)


def test_payload_cap_drains_the_rest() -> None:
    data = _warc([(b"x" * 100_000, []), (b"after", [])])
    records = list(iter_records(io.BytesIO(data), max_payload=1000))
    assert len(records[0].payload) == 1000 and records[0].complete and records[1].payload == b"after"


def test_not_a_warc() -> None:
    for data in (b"<?xml version='1.0'?><Error/>", gzip.compress(b"just text\n" * 10), b""):
        with pytest.raises(NotAWarc):
            list(iter_records(io.BytesIO(data)))


def test_sample_crawl_planted_damage(sample_crawl: Path) -> None:
    expected = {r["file"]: r["fate"] for r in pq.read_table(sample_crawl / "truth_records.parquet").to_pylist()
                if r["fate"] != "ok" and r["kind"] == "warc"}
    assert sorted(expected.values()) == ["not_warc", "truncated_record"]
    for rel, fate in expected.items():
        error = NotAWarc if fate == "not_warc" else DamagedFile
        with (sample_crawl / rel).open("rb") as fh, pytest.raises(error):
            list(iter_records(fh))


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_warcs_read_completely(path: Path) -> None:
    with path.open("rb") as fh:
        records = list(iter_records(fh))
    assert records and all(r.complete for r in records)
    assert records[0].warc_type == "warcinfo"
    assert {"response", "request"} <= {r.warc_type for r in records}
    offsets = [r.offset for r in records]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def test_real_data_is_there() -> None:
    assert len(REAL) == 3, "../shared/real-data/warc is expected beside the checkout"
