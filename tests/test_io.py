"""AtomicFile: what a stage writes is invisible until committed, and its size and SHA-256 are what landed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import IntegrityError
from curate.io import VERIFY_BLOCK, AtomicFile, ShardInfo, atomic_write, verify_listed, verify_shard


def test_a_file_streamed_in_pieces_commits_with_its_size_and_digest(tmp_path: Path) -> None:
    url = str(tmp_path / "sub" / "t.parquet")
    schema = pa.schema([("n", pa.int64()), ("b", pa.binary())])
    with AtomicFile(url) as fh:
        writer = pq.ParquetWriter(fh, schema, compression="zstd")
        for start in (0, 10, 20):
            writer.write_table(pa.table({"n": range(start, start + 10), "b": [bytes(7)] * 10}, schema=schema))
        writer.close()
        assert not Path(url).exists()  # invisible until committed
        size, digest = fh.commit()
    data = Path(url).read_bytes()
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert pq.ParquetFile(url).metadata.num_row_groups == 3
    assert pq.read_table(url).column("n").to_pylist() == list(range(30))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["t.parquet"]


def test_a_file_not_committed_leaves_nothing(tmp_path: Path) -> None:
    with AtomicFile(str(tmp_path / "a.bin")) as fh:
        fh.write(b"half")
    with pytest.raises(RuntimeError), AtomicFile(str(tmp_path / "b.bin")) as fh:
        fh.write(b"half")
        raise RuntimeError("worker lost")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole(tmp_path: Path) -> None:
    url = str(tmp_path / "x.json")
    atomic_write(url, b"first version, longer")
    assert atomic_write(url, b"second") == (6, hashlib.sha256(b"second").hexdigest())
    assert Path(url).read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_verify_shard_finds_missing_short_and_altered_shards(tmp_path: Path) -> None:
    out = str(tmp_path)
    size, digest = atomic_write(str(tmp_path / "t" / "a.bin"), bytes(range(256)) * 40_000)
    assert size > VERIFY_BLOCK  # read in several blocks
    verify_shard(out, "t/a.bin", size, digest)
    with pytest.raises(IntegrityError, match="missing"):
        verify_shard(out, "t/gone.bin", size, digest)
    data = bytearray((tmp_path / "t" / "a.bin").read_bytes())
    data[VERIFY_BLOCK + 1000] ^= 1  # same size, one bit off, in the second block
    (tmp_path / "t" / "a.bin").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match"):
        verify_shard(out, "t/a.bin", size, digest)
    (tmp_path / "t" / "a.bin").write_bytes(bytes(data[:-1]))
    with pytest.raises(IntegrityError, match="does not match"):
        verify_shard(out, "t/a.bin", size, digest)


def test_verify_listed_finds_missing_and_resized_shards_from_a_listing(tmp_path: Path) -> None:
    out = str(tmp_path)
    entries = []
    for folder, name in (("t", "a.bin"), ("t", "b.bin"), ("u", "c.bin")):
        size, digest = atomic_write(str(tmp_path / folder / name), name.encode() * 10)
        entries.append({"path": f"{folder}/{name}", "bytes": size, "sha256": digest})
    verify_listed(out, entries)
    with pytest.raises(IntegrityError, match="missing"):
        verify_listed(out, [*entries, {**entries[0], "path": "v/gone.bin"}])
    (tmp_path / "t" / "b.bin").write_bytes(b"short")
    with pytest.raises(IntegrityError, match="has 5 bytes"):
        verify_listed(out, entries)


def test_a_stage_whose_shard_does_not_match_fails(tmp_path: Path) -> None:
    import apache_beam as beam

    from curate.pipelines.common import CollectShards

    size, digest = atomic_write(str(tmp_path / "t" / "a.bin"), b"committed bytes")
    good = ShardInfo("t", "t/a.bin", 1, size, digest)
    with beam.Pipeline() as p:
        listed = (p | "A" >> beam.Create([good]), p | "B" >> beam.Create([])) | CollectShards(str(tmp_path))
        listed | beam.Map(lambda shards: (tmp_path / "listed.txt").write_text(repr(shards)))
    assert (tmp_path / "listed.txt").read_text() == repr([good])
    with pytest.raises(Exception, match="does not match its manifest"), beam.Pipeline() as p:
        _ = p | beam.Create([good._replace(sha256="0" * 64)]) | CollectShards(str(tmp_path))
