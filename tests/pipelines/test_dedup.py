"""The dedup stage on the downloaded, decoded sample crawl, scored against truth.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate import reasons as R
from curate.config import load_config
from curate.pipelines import decode, dedup
from curate.readers import list_sources
from tests.conftest import parquet_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deduped(downloaded) -> Path:
    out, _ = downloaded
    decode.run(list_sources([str(out / "fetched" / "*.tar")]), str(out), load_config())
    dedup.run(str(out), load_config())
    return out


def test_decisions_equal_truth(deduped: Path, sample_crawl: Path) -> None:
    truth = {r["url"]: r for r in pq.read_table(sample_crawl / "truth.parquet").to_pylist()}
    images = {r["key"]: r["url"] for r in parquet_rows(deduped / "images")}
    decisions = {images[d["key"]]: d for d in parquet_rows(deduped / "dedup")}
    assert set(decisions) == set(images.values())
    got = {url: d["reason"] for url, d in decisions.items()}
    want = {url: truth[url]["fate"] for url in decisions}
    exact_found = {u for u, r in got.items() if r == R.DUPLICATE}
    exact_truth = {u for u, r in want.items() if r == R.DUPLICATE}
    assert exact_found == exact_truth  # precision = recall = 1.0
    near_truth = {u for u, r in want.items() if r == R.NEAR_DUPLICATE}
    near_found = {u for u, r in got.items() if r == R.NEAR_DUPLICATE}
    assert len(near_found & near_truth) >= 0.95 * len(near_truth)
    lookalikes = {u for u in decisions if truth[u]["lookalike_group"] is not None}
    assert not lookalikes & (near_found | exact_found)  # zero look-alikes merged
    keys = {url: key for key, url in images.items()}
    for url, d in decisions.items():
        if d["reason"] != R.KEPT and want[url] == d["reason"]:
            assert d["dup_of"] == keys[truth[url]["dup_of"]]  # the survivor rule picks truth's survivor


def test_funnel_and_rejects(deduped: Path) -> None:
    stats = json.loads((deduped / "stats.json").read_text())["dedup"]["images"]
    decisions = parquet_rows(deduped / "dedup")
    assert stats["input"] == len(decisions) == stats["kept"] + sum(stats["rejected"].values())
    rejects = [r for r in parquet_rows(deduped / "rejects") if r["stage"] == R.DEDUP]
    assert sorted(r["key"] for r in rejects) == sorted(d["key"] for d in decisions if d["reason"] != R.KEPT)
    sizes = {}
    for d in decisions:
        sizes.setdefault(d["cluster"], []).append(d)
    assert all(len(members) == members[0]["cluster_size"] for members in sizes.values())


def test_exclude_near_drops_near_duplicates_of_an_evaluation_set(deduped: Path, tmp_path: Path) -> None:
    import io
    import shutil

    from PIL import Image

    out = tmp_path / "out"
    shutil.copytree(deduped / "images", out / "images")
    images = parquet_rows(out / "images")
    decisions = {d["key"]: d for d in parquet_rows(deduped / "dedup")}
    target = next(i for i in images if decisions[i["key"]]["reason"] == R.KEPT
                  and decisions[i["key"]]["cluster_size"] == 1 and i["format"] == "jpeg")
    evalset = tmp_path / "eval"
    evalset.mkdir()
    with Image.open(io.BytesIO(target["data"])) as image:  # the evaluation copy: rescaled, re-encoded
        image.convert("RGB").resize((image.width * 3 // 4, image.height * 3 // 4)).save(evalset / "e.jpg", quality=80)
    manifest = dedup.run(str(out), load_config(None, {"dedup.exclude_near": [str(evalset)]}))
    after = {d["key"]: d["reason"] for d in parquet_rows(out / "dedup")}
    assert after[target["key"]] == R.EVAL_OVERLAP
    assert {k: r for k, r in after.items() if k != target["key"]} == {
        k: d["reason"] for k, d in decisions.items() if k != target["key"]}
    assert manifest["funnel"]["images"]["rejected"][R.EVAL_OVERLAP] == 1
    hashes = tmp_path / "eval.txt"
    hashes.write_text(f"# one hash\n{target['phash']:016x}\n")
    again = dedup.run(str(out), load_config(None, {"dedup.exclude_near": [str(hashes)]}))  # another set: reruns
    assert again["funnel"]["images"]["rejected"][R.EVAL_OVERLAP] == 1


REAL = Path(__file__).resolve().parents[3] / "shared" / "real-images" / "images"


def test_a_cropped_copy_joins_its_original_and_an_excluded_picture_takes_no_one_along(tmp_path: Path) -> None:
    """Real photographs in a folder, one of them also cropped by 8% (left, top) and 5% (right, bottom), and its
    right 40% alone: pHash misses the crop, the keypoints find both. Decontamination with the left 70% of that
    photograph as the evaluation set drops the photograph and the crop (each holds the evaluation picture) as
    eval_overlap, naming the evaluation picture, and leaves the right part, which shares little with it, kept
    and alone: an excluded picture joins no cluster and takes no one along."""
    from PIL import Image

    from curate.hashing import hamming

    photos = sorted(p for p in REAL.glob("*.jpg"))[:6]
    assert len(photos) == 6
    folder = tmp_path / "in"
    folder.mkdir()
    for path in photos:
        (folder / path.name).write_bytes(path.read_bytes())
    with Image.open(photos[0]) as im:
        w, h = im.size
        picture = im.convert("RGB")
    picture.crop((w * 8 // 100, h * 8 // 100, w * 95 // 100, h * 95 // 100)).save(folder / "zz-cropped.jpg", quality=90)
    picture.crop((w * 60 // 100, 0, w, h)).save(folder / "zz-right.jpg", quality=90)
    out = tmp_path / "out"
    decode.run(list_sources([str(folder)]), str(out), load_config())
    rows = {Path(r["url"]).name: r for r in parquet_rows(out / "images")}
    assert hamming(rows[photos[0].name]["phash"], rows["zz-cropped.jpg"]["phash"]) > 6  # pHash alone misses it
    dedup.run(str(out), load_config())
    decided = {d["key"]: d for d in parquet_rows(out / "dedup")}
    crop, right, original = (decided[rows[name]["key"]] for name in ("zz-cropped.jpg", "zz-right.jpg", photos[0].name))
    assert original["reason"] == R.KEPT and original["cluster_size"] == 3
    assert crop["reason"] == right["reason"] == R.NEAR_DUPLICATE and crop["dup_of"] == right["dup_of"] == original["key"]
    assert sorted(d["reason"] for d in decided.values()).count(R.KEPT) == 6

    evalset = tmp_path / "eval"
    evalset.mkdir()
    picture.crop((0, 0, w * 70 // 100, h)).save(evalset / "left.png")
    dedup.run(str(out), load_config(None, {"dedup.exclude_near": [str(evalset)]}))
    decided = {d["key"]: d for d in parquet_rows(out / "dedup")}
    for dropped in (original, crop):
        assert decided[dropped["key"]]["reason"] == R.EVAL_OVERLAP
        assert decided[dropped["key"]]["dup_of"] == (evalset / "left.png").as_uri()
    assert decided[right["key"]]["reason"] == R.KEPT and decided[right["key"]]["cluster_size"] == 1
    assert sorted(d["reason"] for d in decided.values()).count(R.KEPT) == 6  # the other five and the right part
    rejects = {r["key"]: r for r in parquet_rows(out / "rejects") if r["reason"] == R.EVAL_OVERLAP}
    assert set(rejects) == {original["key"], crop["key"]}
    assert "near-duplicate of evaluation picture file://" in rejects[crop["key"]]["detail"]
