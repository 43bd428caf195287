"""The extract stage as a Beam pipeline on the sample crawl, scored against truth.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from curate import reasons as R
from curate.config import load_config
from curate.crawl import snapshot_files
from curate.errors import UserError
from curate.pipelines.extract import run

SNAPSHOTS = ["CC-MAIN-2021-04", "CC-MAIN-2023-06"]
EXTRACT_REASONS = {R.DATA_URI, R.BAD_SCHEME, R.UNPARSEABLE_URL, R.PAGE_OPTOUT}


def _table(out: str, folder: str) -> list[dict]:
    fs, path = fsspec.core.url_to_fs(out)
    files = sorted(fs.glob(f"{path}/{folder}/*.parquet"))
    rows = []
    for f in files:
        with fs.open(f, "rb") as fh:
            rows += pq.read_table(fh).to_pylist()
    return rows


@pytest.fixture(scope="module")
def extracted(sample_crawl: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The sample crawl extracted from WARC and from WAT files, both read from a local path."""
    outs = {}
    for source in ("warc", "wat"):
        out = str(tmp_path_factory.mktemp(f"extract-{source}"))
        config = load_config(None, {"extract.source": source})
        run(snapshot_files(SNAPSHOTS, str(sample_crawl), source), out, config)
        outs[source] = out
    return outs


def _truth(crawl: Path) -> list[dict]:
    return pq.read_table(crawl / "truth.parquet").to_pylist()


@pytest.mark.parametrize("source", ["warc", "wat"])
def test_url_sets_equal_truth(extracted: dict[str, str], sample_crawl: Path, source: str) -> None:
    visible = "in_warc" if source == "warc" else "in_wat"
    truth = [r for r in _truth(sample_crawl) if r[visible]]
    refs = _table(extracted[source], "refs")
    rejects = [r for r in _table(extracted[source], "rejects") if r["stage"] == R.EXTRACT]
    assert sorted(r["url"] for r in refs) == sorted(r["url"] for r in truth if r["stage"] != R.EXTRACT)
    assert {(r["url"], r["reason"]) for r in rejects} == {(r["url"], r["reason"]) for r in truth
                                                           if r["stage"] == R.EXTRACT}
    inline = {r["url"] for r in truth if r["source"] == "inline"}
    assert inline or source == "wat"
    assert all(r["source"] == ("inline" if r["url"] in inline else {"warc": "html", "wat": "wat"}[source])
               for r in refs)


def test_provenance_points_at_the_page_record(extracted: dict[str, str], sample_crawl: Path) -> None:
    truth = {r["url"]: r for r in _truth(sample_crawl)}
    refs = _table(extracted["warc"], "refs")
    for ref in refs:
        row = truth[ref["url"]]
        assert ref["crawl_date"] == row["first_crawl_date"]
        assert ref["snapshot"] in row["snapshots"] and ref["snapshot"] == ref["source_file"].split("/")[1]
        assert ref["key"] == row["key"] and ref["occurrences"] >= 1
        with (sample_crawl / ref["source_file"]).open("rb") as fh:
            fh.seek(ref["record_offset"])
            record = next(iter(ArchiveIterator(fh)))
            assert record.rec_type == "response"
            assert record.rec_headers.get_header("WARC-Target-URI") == (ref["page_url"] or ref["url"])
            assert record.rec_headers.get_header("WARC-Date") == ref["crawl_date"]
            if ref["source"] == "inline":
                assert record.content_stream().read() == ref["content"]
    alts = [r for r in refs if len(r["alts"]) > 1]
    assert alts and all(r["alt"] in r["alts"] for r in alts)
    assert all(r["content"] is None for r in refs if r["source"] != "inline")


def test_broken_files_are_reported_and_the_rest_read(extracted: dict[str, str], sample_crawl: Path) -> None:
    records = pq.read_table(sample_crawl / "truth_records.parquet").to_pylist()
    for source, out in extracted.items():
        failed = {r["url"]: r["error"] for r in _table(out, "failed")}
        broken = {r["file"]: r["fate"] for r in records if r["kind"] == source and r["fate"] != "ok"}
        assert failed.keys() == broken.keys()
        for rel, fate in broken.items():
            assert failed[rel] == fate
        stats = json.loads(Path(out, "stats.json").read_text())["extract"]
        readable = [r for r in records if r["kind"] == source and r["fate"] == "ok"]
        assert stats["records"]["kept"] == len(readable)
        assert stats["files"]["input"] == len({r["file"] for r in records if r["kind"] == source})
        assert stats["files"]["failed"] == len(broken)
        # the funnel names each failure as its dead letter does, so the report can point at the rows
        assert stats["files"]["failures"] == {fate: list(broken.values()).count(fate) for fate in set(broken.values())}


def test_funnel_adds_up_and_counts_duplicates(extracted: dict[str, str]) -> None:
    for out in extracted.values():
        stats = json.loads(Path(out, "stats.json").read_text())["extract"]
        for part in stats.values():
            assert part["input"] == part["kept"] + sum(part["rejected"].values()) + part["failed"]
        refs = _table(out, "refs")
        rejects = _table(out, "rejects")
        references = stats["references"]
        assert references["kept"] == len(refs)
        assert references["rejected"][R.DUPLICATE_URL] == sum(r["occurrences"] - 1 for r in refs) > 0
        for reason in EXTRACT_REASONS:
            assert references["rejected"].get(reason, 0) == sum(r["occurrences"] for r in rejects if r["reason"] == reason)
        manifest = json.loads(Path(out, "refs", "_MANIFEST.json").read_text())
        assert manifest["complete"] and sum(s["rows"] for s in manifest["tables"]["refs"]) == len(refs)


def test_http_and_local_give_identical_files(extracted: dict[str, str], sample_crawl: Path, served_crawl,
                                             tmp_path: Path) -> None:
    out = str(tmp_path / "over-http")
    run(snapshot_files(SNAPSHOTS, served_crawl.url("crawl"), "warc"), out, load_config())
    local = json.loads(Path(extracted["warc"], "refs", "_MANIFEST.json").read_text())
    remote = json.loads(Path(out, "refs", "_MANIFEST.json").read_text())
    assert local["tables"] == remote["tables"]  # same shards, same bytes (sha256)
    assert local["funnel"] == remote["funnel"]


def test_rerun_is_skipped_and_memory_output_works(sample_crawl: Path) -> None:
    out = "memory://extract-test/out"
    files = snapshot_files(SNAPSHOTS[:1], str(sample_crawl), "warc", max_files=2)
    first = run(files, out, load_config())
    assert not first.get("skipped") and first["funnel"]["files"]["input"] == 2
    again = run(files, out, load_config())
    assert again["skipped"] and again["tables"] == first["tables"]
    with fsspec.open(out + "/config.yaml", "r") as fh:
        assert "extract:" in fh.read()
    changed = run(files, out, load_config(None, {"extract.shards": 2}))
    assert not changed.get("skipped") and len(changed["tables"]["refs"]) <= 2


def test_unknown_beam_flag_is_a_user_error(sample_crawl: Path, tmp_path: Path) -> None:
    files = snapshot_files(SNAPSHOTS[:1], str(sample_crawl), "warc", max_files=1)
    with pytest.raises(UserError, match="--no-such-flag"):
        run(files, str(tmp_path), load_config(), ["--no-such-flag=1"])


def test_missing_files_and_corrupt_records_never_stop_the_run(sample_crawl: Path, served_crawl, tmp_path: Path) -> None:
    import io

    from warcio.warcwriter import WARCWriter

    from curate.crawl import CrawlFile

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for body in (b"{not json", b'{"Envelope": {}}'):
        writer.write_record(writer.create_warc_record("http://example.com/p", "metadata", payload=io.BytesIO(body),
                                                      length=len(body), warc_content_type="application/json"))
    corrupt = tmp_path / "corrupt.warc.wat.gz"
    corrupt.write_bytes(buf.getvalue())
    good = snapshot_files(SNAPSHOTS[:1], str(sample_crawl), "warc", max_files=1)
    files = good + [CrawlFile(str(tmp_path / "gone.warc.gz"), "", "warc"),
                    CrawlFile(served_crawl.url("crawl", "/crawl-data/nope.warc.gz"), "", "warc"),
                    CrawlFile(str(corrupt), "", "wat")]
    out = str(tmp_path / "out")
    manifest = run(files, out, load_config())
    funnel = manifest["funnel"]
    assert funnel["files"]["failures"] == {R.MISSING_FILE: 2}
    assert funnel["files"]["kept"] == 2 and funnel["records"]["failures"] == {"failed": 1}
    assert funnel["references"]["kept"] > 0
    failed = _table(out, "failed")
    assert sorted(f["error"].split(":")[0] for f in failed) == ["JSONDecodeError", R.MISSING_FILE, R.MISSING_FILE]
    assert any(f["url"] == f"{corrupt}#0" for f in failed)
