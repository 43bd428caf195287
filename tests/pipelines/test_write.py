"""The final shards: read back by webdataset, Hugging Face datasets, a torch DataLoader, pyarrow, duckdb and
polars; deterministic, atomic, on any fsspec URL."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
from PIL import Image

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
    assert sorted(keys) == sorted(text) and len(keys) == len(set(keys))  # every text survivor, once
    formats, reencoded = set(), set()
    for sample in samples:
        key = sample["__key__"]
        meta = json.loads(sample["json"])
        formats.add(meta["format"])
        assert set(sample) - {"__key__", "__url__", "__local_path__"} == {"jpg", "json", "txt"}  # in every sample
        assert meta["sha256"] == images[key]["sha256"] == hashlib.sha256(images[key]["data"]).hexdigest()
        with Image.open(io.BytesIO(sample["jpg"])) as shown:  # every picture as shown, as its metadata says
            assert shown.format == "JPEG" and shown.size == (meta["width"], meta["height"])
            rotated = shown.getexif().get(0x0112, 1) != 1
        assert not rotated
        if meta["reencoded"]:  # a JPEG copy of another format, or of a JPEG with EXIF rotation
            reencoded.add(meta["format"])
        else:
            assert meta["format"] == "jpeg" and sample["jpg"] == images[key]["data"]  # the original bytes
        assert sample["txt"].decode() == (images[key]["alt"] or "")
        assert meta["url"] == images[key]["url"] and meta["phash"] == f"{images[key]['phash']:016x}"
        assert meta["text"]["chars"] == text[key]["text_chars"] and meta["light"] == text[key]["light"]
        assert meta["dup"]["cluster_size"] >= 1 and meta["width"] == images[key]["width"]
    assert {"jpeg", "png"} <= formats and {"jpeg", "png"} <= reencoded  # the sample crawl's survivors mix formats,
    # and some of its JPEGs carry EXIF rotation: every path ran


def test_shard_sizes_numbering_and_manifest(written: Path) -> None:
    manifest = json.loads((written / "shards" / "_MANIFEST.json").read_text())
    n = manifest["samples"]
    names = sorted(p.name for p in (written / "shards").iterdir())
    count = -(-n // PER_SHARD)
    assert names == sorted([f"{i:05d}{ext}" for i in range(count) for ext in (".tar", ".parquet", "_stats.json")]
                           + ["README.md", "_MANIFEST.json"])
    listed = {shard["path"] for shard in manifest["tables"]["shards"]}
    assert listed == {f"shards/{name}" for name in names if name != "_MANIFEST.json"}
    for shard in manifest["tables"]["shards"]:
        data = (written / shard["path"]).read_bytes()
        assert len(data) == shard["bytes"] and hashlib.sha256(data).hexdigest() == shard["sha256"]
        if shard["path"].endswith(".md"):
            continue
        index = int(Path(shard["path"]).name[:5])
        assert shard["rows"] == (PER_SHARD if index < count - 1 else n - PER_SHARD * (count - 1))
    with tarfile.open(written / "shards" / "00000.tar") as tar:
        members = tar.getmembers()
    assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o644 for m in members)
    assert all(len(m.name.split(".")[0]) == 32 and m.name.count(".") == 1 for m in members)
    stats = json.loads((written / "stats.json").read_text())
    assert stats["write"]["images"] == {"input": n, "kept": n, "rejected": {}, "failed": 0}
    assert stats["text"]["images"]["kept"] == n


def test_each_shard_is_a_run_of_the_images_files_in_key_order(written: Path) -> None:
    """A shard holds consecutive survivors of OUT/images (files in name order, then row group and row: where
    the bytes are), in key order inside; the manifest has each shard's key range."""
    import webdataset as wds

    kept = {r["key"] for r in parquet_rows(written / "text") if r["reason"] == R.KEPT}
    in_file_order = [r["key"] for f in sorted((written / "images").glob("*.parquet"))
                     for r in pq.read_table(f, columns=["key"]).to_pylist() if r["key"] in kept]
    runs = [in_file_order[i:i + PER_SHARD] for i in range(0, len(in_file_order), PER_SHARD)]
    assert len(runs) > 2
    manifest = json.loads((written / "shards" / "_MANIFEST.json").read_text())
    assert sorted(manifest["key_ranges"]) == [f"{i:05d}" for i in range(len(runs))]
    for i, run in enumerate(runs):
        keys = [s["__key__"] for s in wds.WebDataset(str(written / "shards" / f"{i:05d}.tar"), shardshuffle=False)]
        assert keys == sorted(run)
        assert manifest["key_ranges"][f"{i:05d}"] == [keys[0], keys[-1]]


def test_a_key_is_found_in_one_index_file_and_one_shard(written: Path) -> None:
    """OUT/index maps every written key to its shard and place; `locate` reads the one index file the key
    hashes to, and the shard's Parquet row at that place is the key's."""
    from curate.io import shard_of
    from curate.shards import locate

    manifest = json.loads((written / "shards" / "_MANIFEST.json").read_text())
    n = manifest["index_files"]
    index = {p.name: pq.read_table(p).to_pylist() for p in sorted((written / "index").glob("*.parquet"))}
    assert len(index) == n > 1
    listed = {s["path"] for s in manifest["tables"]["index"]}
    assert listed == {f"index/{name}" for name in index}
    shards = {p.stem: [r["key"] for r in pq.read_table(p, columns=["key"]).to_pylist()]
              for p in sorted((written / "shards").glob("*.parquet"))}
    every = [(row, name) for name, rows in index.items() for row in rows]
    assert sorted(row["key"] for row, _ in every) == sorted(k for keys in shards.values() for k in keys)
    for row, name in every:
        assert name == f"keys-{shard_of(row['key'], n):05d}-of-{n:05d}.parquet"
        assert shards[row["shard"]][row["place"]] == row["key"]
        assert locate(str(written), row["key"]) == (row["shard"], row["place"])
    assert locate(str(written), "0" * 32) is None


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
        for f in [*sorted((written / "shards").glob("0*")), *sorted((written / "index").iterdir())]:
            rel = f"{f.parent.name}/{f.name}"
            assert (again / rel).read_bytes() == f.read_bytes()
            assert fs.cat(f"{memory}/{rel}".removeprefix("memory://")) == f.read_bytes()
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
    assert sorted(r["key"] for r in rows) == light and all(r["light"] for r in rows)
    assert manifest["samples"] == len(light)
    bare = tmp_path / "bare"
    shutil.copytree(written, bare)
    shutil.rmtree(bare / "text")
    write.run(str(bare), load_config(None, {"shards.samples_per_shard": PER_SHARD}), force=True)
    kept = sorted(d["key"] for d in parquet_rows(bare / "dedup") if d["reason"] == R.KEPT)
    rows = [r for p in sorted((bare / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert sorted(r["key"] for r in rows) == kept
    assert all(r["text_chars"] is None and r["light"] is None for r in rows)


# The loaders people use, each on the shards as written (issue: shards that load anywhere, unchanged).

def test_hugging_face_datasets_loads_the_folder_and_the_tars_with_one_image_column(written: Path,
                                                                                     tmp_path: Path) -> None:
    """In a child process: `datasets` is offline here (HF_HUB_OFFLINE), with its cache in the test's folder."""
    script = f"""
import json
from datasets import load_dataset
folder = load_dataset({str(written / "shards")!r}, split="train")
tars = load_dataset("webdataset", data_files={str(written / "shards" / "*.tar")!r}, split="train")
first = folder[0]
print(json.dumps({{"n": len(folder), "n_tars": len(tars), "columns": sorted(folder.column_names),
                   "image": type(first["jpg"]).__name__, "size": list(first["jpg"].size),
                   "meta": [first["json"]["width"], first["json"]["height"]], "key": first["__key__"]}}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    manifest = json.loads((written / "shards" / "_MANIFEST.json").read_text())
    n = manifest["samples"]
    assert got["n"] == got["n_tars"] == n
    assert got["columns"] == ["__key__", "__url__", "jpg", "json", "txt"]  # one image column, for every sample
    assert got["image"].endswith("ImageFile") and got["size"] == got["meta"]
    assert got["key"] == manifest["key_ranges"]["00000"][0]  # the first shard's first sample


def test_webdataset_idioms_and_a_torch_dataloader(written: Path) -> None:
    import torch
    import webdataset as wds
    from torchvision.transforms import functional as F

    tars = sorted(str(p) for p in (written / "shards").glob("*.tar"))
    n = json.loads((written / "shards" / "_MANIFEST.json").read_text())["samples"]
    pairs = list(wds.WebDataset(tars, shardshuffle=False).decode("pil").to_tuple("jpg", "json"))
    assert len(pairs) == n and all(image.size == (meta["width"], meta["height"]) for image, meta in pairs)
    dataset = (wds.WebDataset(tars, shardshuffle=False).decode("pil").to_tuple("jpg", "txt")
               .map_tuple(lambda im: F.to_tensor(F.resize(im.convert("RGB"), [32, 32])), lambda t: t))
    batches = list(torch.utils.data.DataLoader(dataset, batch_size=16, num_workers=2))
    assert sum(len(images) for images, _ in batches) == n and batches[0][0].shape[1:] == (3, 32, 32)


def test_parquet_loads_in_pyarrow_duckdb_and_polars_with_img2datasets_columns(written: Path) -> None:
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds

    glob = str(written / "shards" / "*.parquet")
    files = sorted(str(p) for p in (written / "shards").glob("*.parquet"))
    table = ds.dataset(files, format="parquet").to_table()  # one schema over every shard
    frame = pl.read_parquet(glob)
    n = json.loads((written / "shards" / "_MANIFEST.json").read_text())["samples"]
    assert table.num_rows == frame.height == duckdb.sql(f"select count(*) from '{glob}'").fetchall()[0][0] == n
    for column in ("key", "url", "caption", "status", "error_message", "width", "height", "original_width",
                   "original_height", "sha256"):  # what img2dataset's readers expect
        assert column in frame.columns, column
    assert frame["status"].unique().to_list() == ["success"] and frame["error_message"].null_count() == n
    assert frame["original_width"].to_list() == frame["width"].to_list()
    assert frame["caption"].to_list() == frame["alt"].to_list()
    stats = [json.loads(p.read_text()) for p in sorted((written / "shards").glob("*_stats.json"))]
    assert sum(s["successes"] for s in stats) == sum(s["count"] for s in stats) == n
    assert all(s["failed_to_download"] == 0 and s["status_dict"] == {"success": s["count"]} for s in stats)


def test_original_member_keeps_every_pictures_bytes(written: Path, tmp_path: Path) -> None:
    import webdataset as wds

    out = tmp_path / "original"
    shutil.copytree(written, out)
    write.run(str(out), load_config(None, {"shards.samples_per_shard": PER_SHARD, "shards.image_member": "original",
                                           "shards.parquet_images": True}), force=True)
    images = {r["key"]: r for r in parquet_rows(out / "images")}
    tars = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    for sample in wds.WebDataset(tars, shardshuffle=False):
        meta = json.loads(sample["json"])
        ext = {"jpeg": "jpg"}.get(meta["format"], meta["format"])
        assert sample[ext] == images[sample["__key__"]]["data"] and not meta["reencoded"]
    rows = [r for p in sorted((written / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    with_bytes = [r for p in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [r["data"] for r in with_bytes] == [images[r["key"]]["data"] for r in rows]  # originals, every format
