"""The text stage on the sample crawl: scores for every dedup survivor, the filters against truth, the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate import reasons as R
from curate.config import load_config
from curate.pipelines import text
from curate.sample.images import HEAVY_KINDS
from curate.tables import CACHE_SCHEMA
from tests.conftest import parquet_rows

pytestmark = pytest.mark.slow


def _precision_recall(predicted: set[str], actual: set[str]) -> tuple[float, float]:
    hits = len(predicted & actual)
    return hits / max(1, len(predicted)), hits / max(1, len(actual))


@pytest.fixture(scope="module")
def truth(sample_crawl: Path) -> dict[str, dict]:
    return {r["url"]: r for r in pq.read_table(sample_crawl / "truth.parquet").to_pylist()}


def test_every_survivor_is_scored_and_stored(scored: Path) -> None:
    kept = {d["key"] for d in parquet_rows(scored / "dedup") if d["reason"] == R.KEPT}
    rows = parquet_rows(scored / "text")
    assert [r["key"] for r in rows] != [] and {r["key"] for r in rows} == kept and len(rows) == len(kept)
    images = {r["key"]: r["pixel_hash"] for r in parquet_rows(scored / "images")}
    for r in rows:
        assert r["pixel_hash"] == images[r["key"]] and r["reason"] == R.KEPT  # filter none keeps all
        assert r["text_boxes"] >= r["text_lines"] >= 0 and 0.0 <= r["text_area_fraction"] <= 1.0
        assert 0.0 <= r["text_page"] <= 1.0 and (r["text_boxes"] > 0 or r["text_chars"] == 0)
    stats = json.loads((scored / "stats.json").read_text())["text"]["images"]
    assert stats == {"input": len(kept), "kept": len(kept), "rejected": {}, "failed": 0}
    work = json.loads((scored / "text" / "_WORK.json").read_text())
    assert work["scored"] + work["cached"] == len(kept)


def test_light_and_heavy_against_truth(scored: Path, truth: dict[str, dict]) -> None:
    rows = parquet_rows(scored / "text")
    with_text = {r["url"] for r in rows if truth[r["url"]]["has_text"]}
    heavy_kinds = {r["url"] for r in rows if truth[r["url"]]["text_kind"] in HEAVY_KINDS}
    assert len(with_text) >= 50 and len(heavy_kinds) >= 30  # the sample has enough of each to measure
    light_p, light_r = _precision_recall({r["url"] for r in rows if r["light"]}, with_text)
    heavy_p, heavy_r = _precision_recall({r["url"] for r in rows if r["heavy"]}, heavy_kinds)
    assert light_p >= 0.95 and light_r >= 0.9, (light_p, light_r)
    assert heavy_p >= 0.9 and heavy_r >= 0.8, (heavy_p, heavy_r)
    signs = [r for r in rows if truth[r["url"]]["text_kind"] == "sign"]
    assert signs and not any(r["heavy"] for r in signs)  # text on a scene is light, not heavy


def test_filters_reuse_cached_scores(scored: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(scored, out)
    before = {r["key"]: r for r in parquet_rows(out / "text")}
    for name, reason, keep in (("light", R.NO_TEXT, lambda r: r["light"]), ("heavy", R.NOT_TEXT_DENSE,
                                                                             lambda r: r["heavy"]),
                               ("notext", R.HAS_TEXT, lambda r: not r["light"])):
        manifest = text.run(str(out), load_config(None, {"text.filter": name}))
        work = json.loads((out / "text" / "_WORK.json").read_text())
        assert work["scored"] == 0 and work["cached"] == len(before)  # no OCR: every score came from the cache
        rows = {r["key"]: r for r in parquet_rows(out / "text")}
        assert {k: r["text_chars"] for k, r in rows.items()} == {k: r["text_chars"] for k, r in before.items()}
        kept = {k for k, r in before.items() if keep(r)}
        assert {k for k, r in rows.items() if r["reason"] == R.KEPT} == kept
        rejects = [r for r in parquet_rows(out / "rejects") if r["stage"] == R.TEXT]
        assert sorted(r["key"] for r in rejects) == sorted(set(before) - kept)
        assert {r["reason"] for r in rejects} == {reason}
        assert manifest["funnel"]["images"]["rejected"] == {reason: len(before) - len(kept)}
    light = {k for k, r in before.items() if r["light"]}
    notext = {k for k, r in before.items() if not r["light"]}
    assert light | notext == set(before) and not light & notext  # notext is light's complement


def test_rerun_is_skipped_and_a_shared_cache_serves_another_output(scored: Path, tmp_path: Path) -> None:
    assert text.run(str(scored), load_config()).get("skipped")
    out = tmp_path / "out"
    shutil.copytree(scored, out)
    shutil.rmtree(out / "cache")
    shared = tmp_path / "shared-cache"
    shutil.copytree(scored / "cache" / "ocr", shared)
    manifest = text.run(str(out), load_config(None, {"text.cache": str(shared)}), force=True)
    work = json.loads((out / "text" / "_WORK.json").read_text())
    assert work["scored"] == 0 and work["cached"] == manifest["funnel"]["images"]["input"]
    assert not (out / "cache").exists()  # nothing written to the default place
    assert parquet_rows(out / "text") == parquet_rows(scored / "text")


def test_batched_scoring_scores_what_one_by_one_scores(scored: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """OUT/images in row groups of 5 rows, text.batch 2: the pictures missing from the cache are read from their
    row group and scored in calls of up to 2, with the scores and verdicts of the one-by-one run, and every
    other row is untouched."""
    import pyarrow as pa

    from curate.ocr import TextEngine

    out = tmp_path / "out"
    shutil.copytree(scored, out)
    for images in sorted((out / "images").glob("*.parquet")):
        pq.write_table(pq.read_table(images), images, compression="zstd", row_group_size=5)
    assert max(pq.ParquetFile(f).num_row_groups for f in (out / "images").glob("*.parquet")) >= 3
    (engine,) = [p.name for p in (out / "cache" / "ocr").iterdir()]
    cache = out / "cache" / "ocr" / engine
    rows = sorted(parquet_rows(cache), key=lambda r: r["pixel_hash"])
    dropped = {r["pixel_hash"] for r in rows[::8]}  # every 8th picture is scored again
    shutil.rmtree(cache)
    cache.mkdir()
    pq.write_table(pa.Table.from_pylist([r for r in rows if r["pixel_hash"] not in dropped], schema=CACHE_SCHEMA),
                   cache / "seeded.parquet")
    calls: list[int] = []
    many = TextEngine.score_many
    monkeypatch.setattr(TextEngine, "score_many", lambda self, items: calls.append(len(items)) or many(self, items))
    manifest = text.run(str(out), load_config(None, {"text.batch": 2}), force=True)

    work = json.loads((out / "text" / "_WORK.json").read_text())
    assert work["scored"] == len(dropped) and sum(calls) == len(dropped)
    assert max(calls) == 2 and len(calls) < len(dropped)  # some calls held two pictures, none more
    before = {r["key"]: r for r in parquet_rows(scored / "text")}
    after = {r["key"]: r for r in parquet_rows(out / "text")}
    assert after.keys() == before.keys() and manifest["funnel"] == json.loads(
        (scored / "text" / "_MANIFEST.json").read_text())["funnel"]
    rescored = [k for k, r in before.items() if r["pixel_hash"] in dropped]
    assert len(rescored) >= len(dropped)
    for key, row in before.items():
        if row["pixel_hash"] not in dropped:
            assert after[key] == row
            continue
        assert {c: after[key][c] for c in ("light", "heavy", "reason", "text_lines", "text_words", "text_boxes")} == {
            c: row[c] for c in ("light", "heavy", "reason", "text_lines", "text_words", "text_boxes")}
        assert after[key]["text_chars"] == pytest.approx(row["text_chars"], rel=0.05, abs=1)


def test_an_unwritable_ocr_cache_stops_the_stage_before_any_ocr(tmp_path: Path) -> None:
    from curate.errors import InputError

    out = tmp_path / "out"
    for folder in ("images", "dedup"):
        (out / folder).mkdir(parents=True)
        (out / folder / "part.parquet").write_bytes(b"never read")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    config = load_config(None, {"text.cache": str(blocker / "cache")})
    with pytest.raises(InputError, match="OCR cache .* is not writable"):
        text.run(str(out), config)
    assert not (out / "text" / "_MANIFEST.json").exists()


def test_scores_are_committed_as_they_come_so_a_crash_loses_little_ocr(scored: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The stage dies while scoring its last picture (as a kill would stop it): the row groups it finished
    are in the cache already, and the rerun scores only what the crash interrupted; its progress counts
    against those pictures, not against every survivor (the cached ones need no OCR)."""
    import logging

    import pyarrow as pa

    from curate.ocr import TextEngine

    out = tmp_path / "out"
    shutil.copytree(scored, out)
    (engine,) = [p.name for p in (out / "cache" / "ocr").iterdir()]
    cache = out / "cache" / "ocr" / engine
    rows = sorted(parquet_rows(cache), key=lambda r: r["pixel_hash"])
    dropped = {r["pixel_hash"] for r in rows[::10]}  # a few: each is scored again
    shutil.rmtree(cache)
    cache.mkdir()
    kept = [r for r in rows if r["pixel_hash"] not in dropped]
    pq.write_table(pa.Table.from_pylist(kept, schema=CACHE_SCHEMA), cache / "seeded.parquet")

    class Killed(BaseException):  # not an Exception: nothing in the stage may catch it, as with a kill
        pass

    calls: list[int] = []
    many = TextEngine.score_many

    def dies_at_the_end(self, items):
        calls.append(len(items))
        if len(calls) == len(dropped):
            raise Killed()
        return many(self, items)

    with monkeypatch.context() as patch:
        patch.setattr(TextEngine, "score_many", dies_at_the_end)
        with pytest.raises(BaseException):  # noqa: B017 - Killed itself, or Beam wrapping it
            text.run(str(out), load_config(), force=True)
    assert not (out / "text" / "_MANIFEST.json").exists()
    committed = {r["pixel_hash"] for r in parquet_rows(cache)} - {r["pixel_hash"] for r in kept}
    assert committed and committed < dropped  # the finished groups' scores survived the crash
    caplog.clear()
    caplog.set_level(logging.INFO, logger="curate.progress")
    text.run(str(out), load_config())
    work = json.loads((out / "text" / "_WORK.json").read_text())
    assert work["scored"] == len(dropped - committed)
    lines = [r.getMessage() for r in caplog.records if r.name == "curate.progress"]
    left = len(dropped - committed)
    assert f"text: {left}/{left} pictures scored" in " ".join(lines), lines


def test_ocr_threads_are_one_per_worker_where_the_runner_starts_a_worker_per_core() -> None:
    from apache_beam.options.pipeline_options import PipelineOptions

    from curate.pipelines.text import worker_threads

    alone = PipelineOptions([])
    assert worker_threads(0, alone) == 0  # the one in-process worker: the library's default, every core
    for flags in (["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
                  ["--direct_running_mode=multi_threading"], ["--runner=PortableRunner"], ["--runner=DataflowRunner"]):
        assert worker_threads(0, PipelineOptions(flags)) == 1, flags
    assert worker_threads(3, PipelineOptions(["--runner=PortableRunner"])) == 3  # a number given is kept
