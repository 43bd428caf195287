"""Nothing vanishes between stages: a webdataset tar with repeated URLs, a repeated key stem and a sample whose
json is broken goes through decode and dedup with every picture accounted for, and a stage whose input is not
its upstream's output fails loudly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from curate import reasons as R
from curate.config import load_config
from curate.errors import IntegrityError
from curate.pipelines import decode, dedup
from curate.readers import list_sources, read_source
from curate.records import Failed, FetchedImage
from tests.conftest import parquet_rows


def _jpeg(colour: tuple[int, int, int], seed: int) -> bytes:
    image = Image.new("RGB", (128, 96), colour)
    for x in range(0, 128, 8):  # a pattern per seed, so different pictures are not near-duplicates
        image.paste((seed * 37 % 256, x * 2 % 256, 255 - seed * 11 % 256), (x, (x * seed) % 80, x + 4, 96))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _tar(path: Path) -> Path:
    same = _jpeg((200, 40, 40), 1)
    with wds.TarWriter(str(path)) as writer:
        writer.write({"__key__": "000000", "jpg": same, "json": json.dumps({"url": "http://h/a.jpg"}).encode()})
        writer.write({"__key__": "000001", "jpg": same, "json": json.dumps({"url": "http://h/a.jpg"}).encode()})
        writer.write({"__key__": "000002", "jpg": _jpeg((40, 200, 40), 2), "json": b"{not json"})
        writer.write({"__key__": "000003", "jpg": _jpeg((40, 40, 200), 3)})  # no json: keyed by tar#stem
        writer.write({"__key__": "000004", "jpg": _jpeg((90, 90, 20), 4), "json": json.dumps({"url": "http://h/b.jpg"}).encode()})
        writer.write({"__key__": "000003", "jpg": _jpeg((10, 120, 220), 5)})  # the stem again, not adjacent
    return path


def test_repeats_and_a_broken_sample_are_counted_not_lost(tmp_path: Path) -> None:
    tar = _tar(tmp_path / "shard.tar")
    items = list(read_source(str(tar)))
    pictures = [i for i in items if isinstance(i, FetchedImage)]
    assert len(items) == 6 and len(pictures) == 5 and isinstance(items[2], Failed)
    assert "JSONDecodeError" in items[2].error and items[2].url.endswith("#000002")
    assert len({p.ref.key for p in pictures}) == 5  # repeats get distinct keys
    assert [p.ref.url for p in pictures][:2] == ["http://h/a.jpg", "http://h/a.jpg"]

    out, config = tmp_path / "out", load_config()
    decoded = decode.run(list_sources([str(tar)]), str(out), config)
    assert decoded["funnel"]["images"] == {"input": 6, "kept": 5, "rejected": {}, "failed": 1}
    failed = [r for r in parquet_rows(out / "failed") if r["stage"] == R.DECODE]
    assert [r["url"].endswith("shard.tar#000002") for r in failed] == [True]
    deduped = dedup.run(str(out), config)
    assert deduped["funnel"]["images"]["input"] == 5  # decode's kept, every one
    decisions = {d["key"]: d["reason"] for d in parquet_rows(out / "dedup")}
    assert sorted(decisions.values()) == [R.DUPLICATE, R.KEPT, R.KEPT, R.KEPT, R.KEPT]


def test_one_url_in_two_tars_is_two_pictures_and_one_duplicate(tmp_path: Path) -> None:
    """Two img2dataset-style tars holding the same URL (a re-crawl, overlapping shards): both pictures are keyed
    by where they were read, so neither hides behind the other; identical bytes are a duplicate in dedup, a
    changed picture at that URL stays (before: one key for both, and the run failed its chain check)."""
    first, second = _tar(tmp_path / "a.tar"), _tar(tmp_path / "b.tar")
    out, config = tmp_path / "out", load_config()
    decoded = decode.run(list_sources([str(first), str(second)]), str(out), config)
    assert decoded["funnel"]["images"] == {"input": 12, "kept": 10, "rejected": {}, "failed": 2}
    deduped = dedup.run(str(out), config)
    assert deduped["funnel"]["images"]["input"] == 10
    decisions = {d["key"]: d["reason"] for d in parquet_rows(out / "dedup")}
    assert len(decisions) == 10 and list(decisions.values()).count(R.KEPT) == 4  # the 4 distinct pictures, once each
    same = [decisions[r["key"]] for r in parquet_rows(out / "images") if r["url"] == "http://h/a.jpg"]
    assert sorted(same) == [R.DUPLICATE, R.DUPLICATE, R.DUPLICATE, R.KEPT]


def test_two_runs_fetched_shards_filtered_together_keep_every_picture(tmp_path: Path) -> None:
    """Two outputs' fetched/ shards share ref keys (the same URL crawled twice); filtered together into a third
    output, their pictures are keyed by where they were read; in their own output, by their ref key."""
    from curate.downloader import write_inline_shard
    from curate.records import ImageRef
    from curate.urls import url_key

    def refs(seed: int) -> list[ImageRef]:
        return [ImageRef(url_key(f"http://h/{i}.jpg"), f"http://h/{i}.jpg", "", "", "", "", "", 0, "", "inline",
                         _jpeg((60 * i, 100, seed), i + seed)) for i in range(3)]

    write_inline_shard(str(tmp_path / "a"), 0, refs(1))
    write_inline_shard(str(tmp_path / "b"), 0, refs(1)[:2] + refs(90)[2:])  # 2 same pictures, 1 changed
    sources = list_sources([str(tmp_path / "a" / "fetched"), str(tmp_path / "b" / "fetched")])
    out, config = tmp_path / "merged", load_config()
    assert decode.run(sources, str(out), config)["funnel"]["images"]["kept"] == 6
    assert dedup.run(str(out), config)["funnel"]["images"] == {"input": 6, "kept": 4, "rejected": {R.DUPLICATE: 2},
                                                                "failed": 0}
    own = tmp_path / "a"
    decode.run(list_sources([str(own / "fetched")]), str(own), config)
    assert {r["key"] for r in parquet_rows(own / "images")} == {ref.key for ref in refs(1)}


def test_a_stage_whose_input_is_not_its_upstreams_output_fails(tmp_path: Path) -> None:
    tar = _tar(tmp_path / "shard.tar")
    out, config = tmp_path / "out", load_config()
    decode.run(list_sources([str(tar)]), str(out), config)
    manifest = json.loads((out / "images" / "_MANIFEST.json").read_text())
    manifest["funnel"]["images"]["kept"] += 2  # as if decode had kept two pictures that never reached OUT/images
    manifest["funnel"]["images"]["input"] += 2
    (out / "images" / "_MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="dedup took 5 images but decode kept 7"):
        dedup.run(str(out), config)
