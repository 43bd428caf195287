"""The one tar sample reader and writer (curate.shards) and the schemas derived from the records (curate.tables)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pytest
from webdataset.tariterators import group_by_keys, tar_file_iterator

from curate import tables
from curate.records import DupInfo, Failed, ImageRef, LedgerRow, Rejected, TextScore
from curate.shards import picture, tar_samples, write_tar


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_members_group_into_samples_as_webdataset_groups_them(tmp_path: Path) -> None:
    data = _tar([("a/x.jpg", b"1"), ("a/x.json", b"{}"), ("b/x.jpg", b"2"), ("b/x.seg.png", b"3"),
                 ("y.JPG", b"4"), ("y.txt", b"alt")])
    path = tmp_path / "s.tar"
    path.write_bytes(data)
    ours = [(key, members) for key, members in tar_samples(str(path))]
    assert ours == [("a/x", {"jpg": b"1", "json": b"{}"}), ("b/x", {"jpg": b"2", "seg.png": b"3"}),
                    ("y", {"jpg": b"4", "txt": b"alt"})]
    with open(path, "rb") as fh:  # webdataset's own grouping
        theirs = [(s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")})
                  for s in group_by_keys({**m, "__url__": str(path)} for m in tar_file_iterator(fh))]
    assert theirs == ours
    assert picture(ours[1][1]) == ("jpg", b"2") and picture({"json": b"{}", "txt": b""}) is None


def test_a_cut_short_tar_gives_its_samples_then_an_error(tmp_path: Path) -> None:
    data = _tar([("a.jpg", b"x" * 600), ("b.jpg", b"y" * 600)])
    path = tmp_path / "cut.tar"
    path.write_bytes(data[:2 * (512 + 1024)])  # both members whole; the end-of-archive blocks are gone
    seen = []
    with pytest.raises(tarfile.ReadError, match="cut short"):
        for key, _ in tar_samples(str(path)):
            seen.append(key)
    assert seen == ["a", "b"]


def test_a_compressed_tar_and_an_open_file_are_read_too(tmp_path: Path) -> None:
    data = _tar([("k.png", b"p"), ("k.json", b"{}")])
    path = tmp_path / "s.tar.gz"
    path.write_bytes(gzip.compress(data))
    assert list(tar_samples(str(path))) == [("k", {"png": b"p", "json": b"{}"})]
    handle = io.BytesIO(data)
    assert list(tar_samples(handle)) == [("k", {"png": b"p", "json": b"{}"})] and not handle.closed


def test_written_tars_read_back_unchanged_and_carry_nothing_that_varies(tmp_path: Path) -> None:
    samples = [("0" * 32, {"jpg": b"\xff\xd8\xff", "json": b'{"a": 1}', "txt": b"alt"}), ("1" * 32, {"png": b"P"})]
    data = write_tar(samples)
    assert data == write_tar(samples)
    path = tmp_path / "w.tar"
    path.write_bytes(data)
    assert list(tar_samples(str(path))) == samples
    with tarfile.open(path) as tar:
        assert {(m.mtime, m.uid, m.gid, m.mode, m.uname) for m in tar.getmembers()} == {(0, 0, 0, 0o644, "")}


def test_schemas_are_the_records_fields() -> None:
    assert tables.REF_SCHEMA.names == list(ImageRef._fields)
    assert tables.REJECT_SCHEMA.names == list(Rejected._fields)
    assert tables.FAILED_SCHEMA.names == list(Failed._fields)
    assert tables.LEDGER_SCHEMA.names == ["key", "url", "reason", "detail", "retryable", "shard", "sample_key"]
    assert LedgerRow.__dataclass_fields__.keys() == set(tables.LEDGER_SCHEMA.names)
    assert tables.DECISION_SCHEMA.names == ["key", "reason", *DupInfo._fields]
    assert [n for n in tables.CACHE_SCHEMA.names if n != "pixel_hash"] == [*tables.SCORE, "ms"]
    assert set(tables.SCORE) | {"ms"} == set(TextScore._fields)
    text_columns = [n for n in tables.SHARD_SCHEMA.names if n.startswith("text_")]
    assert text_columns == [f"text_{n}" for n in tables.SCORE]
    assert tables.IMAGE_SCHEMA.field("phash").type == pa.uint64()
    assert tables.SHARD_SCHEMA.field("phash").type == pa.string()  # hex, as in key.json


def test_field_types_follow_the_python_types() -> None:
    class Toy(NamedTuple):
        name: str
        count: int
        share: float
        ok: bool
        blob: bytes | None
        tags: tuple[str, ...]
        width: int  # stored narrower, like every `width`

    assert [(f.name, f.type) for f in tables.fields(Toy, prefix="t_")] == [
        ("t_name", pa.string()), ("t_count", pa.int64()), ("t_share", pa.float64()), ("t_ok", pa.bool_()),
        ("t_blob", pa.binary()), ("t_tags", pa.list_(pa.string())), ("t_width", pa.int32())]
    assert [f.name for f in tables.fields(Toy, ("ok", "name"))] == ["ok", "name"]
