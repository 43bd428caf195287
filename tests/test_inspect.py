"""`curate inspect`: the first samples of a WebDataset tar or a Parquet shard, as an aligned table."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curate.commands.cli import main
from curate.commands.inspect import format_table, samples


def _jpeg(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (30, 30, 200)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture()
def shard(tmp_path: Path) -> Path:
    """A WebDataset shard as the issue describes it: key.<ext>, key.json (every field), key.txt (alt)."""
    path = tmp_path / "00000.tar"
    with tarfile.open(path, "w") as tar:
        for i in range(5):
            key = f"{i:02x}" * 16
            data = _jpeg(100 + i, 80) if i % 2 == 0 else _png(90, 60 + i)
            ext = "jpg" if i % 2 == 0 else "png"
            meta = {"key": key, "url": f"http://example.com/{i}.{ext}", "width": 100 + i if i % 2 == 0 else 90,
                    "height": 80 if i % 2 == 0 else 60 + i, "format": "jpeg" if i % 2 == 0 else "png",
                    "text_chars": 40 * i, "text_lines": i, "light": i > 0, "heavy": i > 3}
            if i == 1:
                meta["url"] = "http://evil.example/\x1b[2J\x1b]0;pwned\x07.png"  # terminal escapes
            for name, body in ((f"{key}.{ext}", data), (f"{key}.json", json.dumps(meta).encode()),
                               (f"{key}.txt", b"alt text")):
                info = tarfile.TarInfo(name)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return path


def test_tar_samples_in_order_with_text_score(shard: Path) -> None:
    rows = samples(str(shard), 3)
    assert [r["key"] for r in rows] == [f"{i:02x}" * 16 for i in range(3)]
    assert [r["format"] for r in rows] == ["jpeg", "png", "jpeg"]
    assert (rows[0]["width"], rows[0]["height"], rows[0]["text_chars"], rows[0]["light"]) == (100, 80, 0, False)
    assert rows[2]["size"] == len(_jpeg(102, 80))
    assert len(samples(str(shard), 100)) == 5


def test_table_is_aligned_and_escapes_control_characters(shard: Path) -> None:
    table = format_table(samples(str(shard), 5))
    lines = table.splitlines()
    assert lines[0].split() == ["key", "format", "size", "width", "x", "height", "chars", "lines", "light", "heavy",
                                "url"]
    assert "\x1b" not in table and "\x07" not in table and "\\x1b[2J" in table
    url_col = lines[0].index("url")
    assert all(line[url_col - 2:url_col] == "  " for line in lines[2:])  # every url starts in one column
    assert "105x80" not in table and "104x80" in table and "90x63" in table
    assert "yes" in lines[-1] and lines[-1].split()[-2:] == ["yes", "http://example.com/4.jpg"]


def test_parquet_shard_and_a_table_without_text(tmp_path: Path) -> None:
    rows = [{"key": f"{i:032x}", "url": f"http://example.com/{i}.jpg", "data": _jpeg(64, 64 + i), "format": "jpeg"}
            for i in range(4)]
    path = tmp_path / "images-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    got = samples(str(path), 2)
    assert [(r["key"], r["width"], r["height"], r["size"]) for r in got] == [
        (rows[i]["key"], 64, 64 + i, len(rows[i]["data"])) for i in range(2)]
    table = format_table(got)
    assert "chars" not in table and "64x65" in table  # no text columns when no sample has a score


def test_cli_prints_the_table(shard: Path, capsys) -> None:
    assert main(["inspect", str(shard), "-n", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and out[-1].startswith("(2 samples shown")


@pytest.mark.parametrize("name, content, message", [
    ("missing.tar", None, "no such file"),
    ("broken.tar", b"not a tar at all" * 40, "cannot read"),
    ("broken.parquet", b"PAR1 nonsense", "cannot read"),
    ("notes.txt", b"hello", "not a shard"),
])
def test_bad_paths_are_one_line_errors(tmp_path: Path, capsys, name: str, content: bytes | None,
                                       message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_n_must_be_positive(shard: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["inspect", str(shard), "-n", "0"])
    assert e.value.code == 2
