"""The final shards: read back by webdataset, pyarrow and duckdb; deterministic, atomic, on any fsspec URL."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from curate import reasons as R
from curate.config import load_config
from curate.pipelines import write
from tests.conftest import parquet_rows

# webdataset leaves closing its tar streams to the garbage collector: its ResourceWarnings are not ours.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning")]
PER_SHARD = 40


@pytest.fixture(scope="module")
def written(scored: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "out"
    shutil.copytree(scored, out)
    write.run(str(out), load_config(None, {"shards.samples_per_shard": PER_SHARD}))
    return out


def test_webdataset_reads_every_sample_with_image_json_and_txt(written: Path) -> None:
    import webdataset as wds

    text = {r["key"]: r for r in parquet_rows(written / "text")}
    images = {r["key"]: r for r in parquet_rows(written / "images")}
    tars = sorted(str(p) for p in (written / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(tars, shardshuffle=False))
    keys = [s["__key__"] for s in samples]
    assert keys == sorted(text) and len(keys) == len(set(keys))  # every text survivor, in key order
    for sample in samples:
        key = sample["__key__"]
        meta = json.loads(sample["json"])
        ext = {"jpeg": "jpg"}.get(meta["format"], meta["format"])
        assert set(sample) - {"__key__", "__url__", "__local_path__"} == {ext, "json", "txt"}
        assert sample[ext] == images[key]["data"]  # the original bytes, unchanged
        assert hashlib.sha256(sample[ext]).hexdigest() == meta["sha256"] == images[key]["sha256"]
        assert sample["txt"].decode() == (images[key]["alt"] or "")
        assert meta["url"] == images[key]["url"] and meta["phash"] == f"{images[key]['phash']:016x}"
        assert meta["text"]["chars"] == text[key]["text_chars"] and meta["light"] == text[key]["light"]
        assert meta["dup"]["cluster_size"] >= 1 and meta["width"] == images[key]["width"]


def test_shard_sizes_numbering_and_manifest(written: Path) -> None:
    manifest = json.loads((written / "shards" / "_MANIFEST.json").read_text())
    n = manifest["samples"]
    names = sorted(p.name for p in (written / "shards").iterdir())
    count = -(-n // PER_SHARD)
    assert names == sorted([f"{i:05d}.tar" for i in range(count)] + [f"{i:05d}.parquet" for i in range(count)]
                           + ["_MANIFEST.json"])
    for shard in manifest["tables"]["shards"]:
        data = (written / shard["path"]).read_bytes()
        assert len(data) == shard["bytes"] and hashlib.sha256(data).hexdigest() == shard["sha256"]
        index = int(Path(shard["path"]).stem)
        assert shard["rows"] == (PER_SHARD if index < count - 1 else n - PER_SHARD * (count - 1))
    with tarfile.open(written / "shards" / "00000.tar") as tar:
        members = tar.getmembers()
    assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o644 for m in members)
    assert all(len(m.name.split(".")[0]) == 32 and m.name.count(".") == 1 for m in members)
    stats = json.loads((written / "stats.json").read_text())
    assert stats["write"]["images"] == {"input": n, "kept": n, "rejected": {}, "failed": 0}
    assert stats["text"]["images"]["kept"] == n


def test_parquet_and_duckdb_agree_with_the_tars(written: Path) -> None:
    import duckdb
    import webdataset as wds

    tars = sorted(str(p) for p in (written / "shards").glob("*.tar"))
    by_tar = {s["__key__"]: json.loads(s["json"]) for s in wds.WebDataset(tars, shardshuffle=False)}
    rows = [r for p in sorted((written / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [r["key"] for r in rows] == list(by_tar)
    for r in rows:
        meta = by_tar[r["key"]]
        assert (r["url"], r["width"], r["text_lines"], r["heavy"]) == (meta["url"], meta["width"],
                                                                        meta["text"]["lines"], meta["heavy"])
        assert "data" not in r
    glob = str(written / "shards" / "*.parquet")
    count, light = duckdb.sql(f"select count(*), sum(light::int) from read_parquet('{glob}')").fetchall()[0]
    assert count == len(rows) and light == sum(r["light"] for r in rows)


def test_same_inputs_give_identical_bytes_also_on_memory_fs(written: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    shutil.copytree(written, again)
    write.run(str(again), load_config(None, {"shards.samples_per_shard": PER_SHARD}), force=True)
    memory = "memory://curate-test-shards"
    fs = fsspec.filesystem("memory")
    for folder in ("images", "dedup", "text"):
        for f in sorted((written / folder).iterdir()):
            fs.pipe(f"{memory}/{folder}/{f.name}".removeprefix("memory://"), f.read_bytes())
    write.run(memory, load_config(None, {"shards.samples_per_shard": PER_SHARD}))
    try:
        for f in sorted((written / "shards").glob("0*")):
            assert (again / "shards" / f.name).read_bytes() == f.read_bytes()
            assert fs.cat(f"{memory}/shards/{f.name}".removeprefix("memory://")) == f.read_bytes()
    finally:
        fs.rm(memory.removeprefix("memory://"), recursive=True)


def test_text_filter_and_unscored_outputs(written: Path, tmp_path: Path) -> None:
    from curate.pipelines import text

    out = tmp_path / "light"
    shutil.copytree(written, out)
    text.run(str(out), load_config(None, {"text.filter": "light"}))
    manifest = write.run(str(out), load_config(None, {"shards.samples_per_shard": PER_SHARD}))
    light = sorted(r["key"] for r in parquet_rows(out / "text") if r["reason"] == R.KEPT)
    rows = [r for p in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [r["key"] for r in rows] == light and all(r["light"] for r in rows) and manifest["samples"] == len(light)
    bare = tmp_path / "bare"
    shutil.copytree(written, bare)
    shutil.rmtree(bare / "text")
    write.run(str(bare), load_config(None, {"shards.samples_per_shard": PER_SHARD}), force=True)
    kept = sorted(d["key"] for d in parquet_rows(bare / "dedup") if d["reason"] == R.KEPT)
    rows = [r for p in sorted((bare / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [r["key"] for r in rows] == kept and all(r["text_chars"] is None and r["light"] is None for r in rows)
