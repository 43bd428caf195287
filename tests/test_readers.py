import io
import json
import tarfile
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from curate.downloader import write_inline_shard
from curate.errors import InputError
from curate.readers import fetched_by, list_sources, read_source
from curate.records import ImageRef
from curate.urls import url_key


def _jpeg(color: tuple[int, int, int], size: tuple[int, int] = (80, 60)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def test_folder_of_images(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.jpg").write_bytes(_jpeg((255, 0, 0)))
    (tmp_path / "sub" / "b.JPG").write_bytes(_jpeg((0, 255, 0)))
    (tmp_path / "notes.txt").write_text("not an image")
    sources = list_sources([str(tmp_path)])
    assert [Path(s.split("://")[-1]).name for s in sources] == ["a.jpg", "b.JPG"]
    records = [r for s in sources for r in read_source(s)]
    assert [r.mime for r in records] == ["image/jpeg"] * 2
    for record in records:
        assert record.ref.url.startswith("file://") and record.ref.key == url_key(record.ref.url)
        assert record.data == Path(record.ref.url[len("file://"):]).read_bytes()


def test_generic_webdataset_tar(tmp_path: Path) -> None:
    path = tmp_path / "shard.tar"
    with wds.TarWriter(str(path)) as writer:
        writer.write({"__key__": "000001", "jpg": _jpeg((1, 2, 3)), "txt": "a caption",
                      "json": json.dumps({"url": "HTTP://Example.com/x.jpg"}).encode()})
        writer.write({"__key__": "000002", "png": b"\x89PNG\r\n\x1a\n" + b"\0" * 30})
    first, second = list(read_source(str(path)))
    assert first.ref.url == "HTTP://Example.com/x.jpg" and first.ref.key == url_key(f"{path}#000001")  # where it was read
    assert first.ref.alt == "a caption" and first.mime == "image/jpeg"
    assert second.ref.url == f"{path}#000002" and second.mime == "image/png"


def test_curate_fetched_shard_keeps_provenance(tmp_path: Path) -> None:
    refs = [ImageRef(url_key(f"http://h/{i}.jpg"), f"http://h/{i}.jpg", f"alt {i}", "", "http://h/page",
                     "CC-MAIN-2021-04", "crawl-data/x.warc.gz", 10 * i, "2021-01-15T00:00:00Z", "inline",
                     _jpeg((i, i, i))) for i in range(3)]
    write_inline_shard(str(tmp_path), 7, refs)
    sources = list_sources([str(tmp_path / "fetched" / "*.tar")])
    records = [r for s in sources for r in read_source(s, ours=fetched_by(str(tmp_path), s))]
    assert [r.ref for r in records] == [ref._replace(content=None) for ref in sorted(refs, key=lambda r: r.key)]
    assert not fetched_by(str(tmp_path / "elsewhere"), sources[0])
    assert {r.ref.key for s in sources for r in read_source(s)}.isdisjoint(ref.key for ref in refs)  # not ours
    assert [r.data for r in records] == [ref.content for ref in sorted(refs, key=lambda r: r.key)]


def test_missing_and_empty_inputs_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        list_sources([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        list_sources([str(tmp_path / "empty")])


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # webdataset leaves its file to the GC
def test_a_tar_is_read_as_webdataset_reads_it_one_sample_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "many.tar"
    with wds.TarWriter(str(path)) as writer:
        for i in range(40):
            sample = {"__key__": f"{i:06d}", "txt": f"caption {i}"}
            if i % 7 != 3:  # a few samples without an image
                sample["jpg"] = _jpeg((i, 0, 0))
            if i % 5 == 0:
                sample["json"] = json.dumps({"url": f"http://h/{i}.jpg"}).encode()
            writer.write(sample)
    ours = list(read_source(str(path)))
    theirs = [s for s in wds.WebDataset(str(path), shardshuffle=False) if "jpg" in s]  # an independent reader
    assert len(ours) == 34
    assert [r.data for r in ours] == [s["jpg"] for s in theirs]
    assert [r.ref.alt for r in ours] == [s["txt"].decode() for s in theirs]
    assert [r.ref.url for r in ours[:2]] == ["http://h/0.jpg", f"{path}#000001"]
    # Streamed: a tar cut short gives the samples before the cut, then the error (the decode stage
    # dead-letters the source), instead of holding the whole tar first.
    with tarfile.open(path) as tar:
        member = tar.getmember("000020.jpg")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(path.read_bytes()[: member.offset_data + member.size // 2])  # in the middle of a picture
    got = []
    with pytest.raises(tarfile.ReadError):
        for record in read_source(str(cut)):
            got.append(record)
    assert 10 < len(got) < 34 and [r.data for r in got] == [r.data for r in ours[: len(got)]]
    # Cut exactly where sample 20 begins: no member is broken, but the end-of-archive blocks are missing.
    with tarfile.open(path) as tar:
        start = min(m.offset for m in tar.getmembers() if m.name.startswith("000020."))
    cut.write_bytes(path.read_bytes()[:start])
    got = []
    with pytest.raises(tarfile.ReadError, match="cut short"):
        for record in read_source(str(cut)):
            got.append(record)
    assert [r.data for r in got] == [r.data for r in ours[:17]]  # samples 0-19 less 3, 10 and 17 (no picture)


def test_special_files_and_large_non_images_cost_nothing(tmp_path: Path) -> None:
    """A FIFO would block a reader forever and /dev/zero never ends: both are refused before any read; a
    1 GiB file that is no image is read no further than its first bytes."""
    import os

    from curate.config import load_config
    from curate.pipelines import decode
    from curate.readers import HEAD_BYTES, read_file

    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    with open(folder / "huge.jpg", "wb") as fh:
        fh.truncate(1 << 30)  # sparse: no disk used
    (folder / "logo.jpg").write_bytes(b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>')
    (folder / "ok.jpg").write_bytes(_jpeg((9, 9, 9)))
    for name in ("pipe.jpg", "zero.jpg"):
        with pytest.raises(OSError, match="not a regular file"):
            read_file(str(folder / name))
    assert len(read_file(str(folder / "huge.jpg")).data) == HEAD_BYTES
    out = tmp_path / "out"
    manifest = decode.run(list_sources([str(folder)]), str(out), load_config(None, {"image.min_side": 1}))
    assert manifest["funnel"]["sources"] == {"input": 5, "kept": 3, "rejected": {}, "failed": 2}
    assert manifest["funnel"]["images"] == {"input": 3, "kept": 1, "failed": 0,
                                            "rejected": {"undecodable": 1, "unsupported_format": 1}}


def test_files_skipped_by_name_are_counted_not_silently_dropped(tmp_path: Path, capsys) -> None:
    import collections

    from curate.commands.cli import main

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(_jpeg((200, 0, 0), (96, 96)))
    (folder / "notes.txt").write_text("not a picture")
    (folder / "sub" / "logo.svg").write_text("<svg/>")
    (folder / "sub" / "README").write_text("x")
    skipped: collections.Counter[str] = collections.Counter()
    assert list_sources([str(folder)], skipped=skipped) == [f"file://{folder / 'a.jpg'}"]
    assert skipped == {".txt": 1, ".svg": 1, "(none)": 1}
    assert list_sources([str(folder / "*.jpg")], skipped=skipped) and sum(skipped.values()) == 3  # a glob chose

    out = tmp_path / "out"
    assert main(["filter", "--input", str(folder), "--output", str(out), "--no-text"]) == 0
    assert "skipped by name (not an image or .tar): (none) 1, .svg 1, .txt 1" in capsys.readouterr().out
    decoded = json.loads((out / "images" / "_MANIFEST.json").read_text())
    assert decoded["funnel"]["sources"] == {"input": 4, "kept": 1, "rejected": {"unsupported_format": 3},
                                            "failed": 0}
    assert decoded["skipped_by_name"] == {"(none)": 1, ".svg": 1, ".txt": 1}
