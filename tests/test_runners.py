"""Every stage on other Beam runners gives the bytes the in-process DirectRunner gives.

The baseline is the session's in-process run (`scored`: extract, download, decode, dedup and text), copied,
with the write stage on top. Each runner below then runs extract, download, decode, dedup, text and write on
the same sample crawl into its own OUT, and every output table, manifest, ledger, fetched shard, text table,
final shard (tar and Parquet), stats.json and config.yaml must be equal byte for byte. Two things are
normalized, and only those: the OUT path itself (manifests list their input files by URL, and each run has
its own OUT; the baseline's earlier manifests name the session's OUT it was copied from), and the timing fields of img2dataset's per-shard `_stats.json` (when the fetch ran, not what
it fetched). Two things are left out, because they are facts about a run and not about the data:
OUT/text/_WORK.json (how many pictures this run scored or took from the cache, and the OCR time) and the
OCR cache folder (OUT/cache/ocr: each run names its new cache file uniquely).

The text stage reads OUT/cache/ocr (the default `text.cache`), seeded with a copy of the session's cache so
that OCR does not run again on every runner. On the PortableRunner the copy lacks the scores of a few
pictures: the OCR engine loads in `ScoreText.setup()` in an SDK worker process and scores them there, the
text table must still equal the in-process one, and the new cache entries must hold the in-process scores.

- multi_processing: the DirectRunner with two SDK worker processes;
- portable: the PortableRunner with an embedded job service; `use_loopback_process_worker` makes the
  LOOPBACK environment start each SDK worker as a separate `python` process (so nothing the driver
  process holds, such as curate's urllib opener, reaches the workers);
- bundle_repeat: the DirectRunner replaying every bundle, as a runner retrying a bundle would;
- dask: Beam's Dask runner as curate mends it (curate.pipelines.runners.DaskRunner) on a dask.distributed cluster the
  fixture starts and stops: a scheduler and two worker processes on 127.0.0.1.

Download's output is deterministic on the sample crawl: its faults are fixed per URL (a slow host answers
after 1.5 s, under the 2 s read timeout; a trickle always overruns the 3 s deadline), and shards are
planned from keys, not from arrival order.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest

import curate.downloader
import curate.ocr
from curate.config import load_config
from curate.crawl import snapshot_files
from curate.pipelines import decode, dedup, download, extract, text, write
from curate.readers import list_sources
from curate.tables import CACHE_SCHEMA
from tests.conftest import DOWNLOAD_FLAGS, WRITE_FLAGS, parquet_rows

pytestmark = pytest.mark.slow

RUNNERS = {
    "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    "portable": ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK",
                 "--experiments=use_loopback_process_worker"],
    "bundle_repeat": ["--direct_runner_bundle_repeat=2"],
    "dask": ["--runner=curate.pipelines.runners.DaskRunner", "--dask_npartitions=4"],  # + the cluster's address
}
IN_PROCESS = {"bundle_repeat"}
FOLDERS = ("refs", "ledger", "fetched", "images", "dedup", "text", "shards", "index", "rejects", "failed")
TOP_LEVEL = ("stats.json", "config.yaml")
FETCH_TIMES = {"start_time", "end_time", "duration"}
RUN_FACTS = {"text/_WORK.json"}  # how much this run scored or took from the cache, and its OCR time
UNCACHED = {"portable": 8, "dask": 8}  # runner -> pictures whose cached score is removed, to be scored by its workers


def _seed_cache(scored: Path, out: Path, leave_out: int) -> list[dict]:
    """OUT/cache/ocr: the session's cached scores, less `leave_out` of them (half with text); those rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (engine,) = [p.name for p in (scored / "cache" / "ocr").iterdir()]
    rows = sorted(parquet_rows(scored / "cache" / "ocr" / engine), key=lambda r: r["pixel_hash"])
    with_text, without = [r for r in rows if r["chars"]], [r for r in rows if not r["chars"]]
    dropped = with_text[:leave_out // 2] + without[:leave_out - leave_out // 2]
    kept = [r for r in rows if r not in dropped]
    folder = out / "cache" / "ocr" / engine
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(kept, schema=CACHE_SCHEMA), folder / "seeded.parquet")
    return dropped


def _stages(crawl: Path, out: Path, beam_args: list[str]) -> dict[str, float]:
    """The six stages as `curate run` chains them; seconds per stage."""
    fetch_config, config = load_config(None, DOWNLOAD_FLAGS), load_config()
    write_config = load_config(None, WRITE_FLAGS)
    files = snapshot_files(["CC-MAIN-2021-04", "CC-MAIN-2023-06"], str(crawl), "warc")
    steps = {
        "extract": lambda: extract.run(files, str(out), fetch_config, beam_args),
        "download": lambda: download.run(str(out), fetch_config, beam_args),
        "decode": lambda: decode.run(list_sources([str(out / "fetched" / "*.tar")]), str(out), config, beam_args),
        "dedup": lambda: dedup.run(str(out), config, beam_args),
        "text": lambda: text.run(str(out), config, beam_args),
        "write": lambda: write.run(str(out), write_config, beam_args),
    }
    seconds = {}
    for name, step in steps.items():
        start = time.monotonic()
        step()
        seconds[name] = round(time.monotonic() - start, 1)
    return seconds


class Ran(NamedTuple):
    name: str
    out: Path
    fetched_here: bool  # the download opener was installed in this (the driver's) process
    engines_here: int  # OCR engines loaded in this process
    uncached: list[dict]  # the cache rows left out of the seeded cache


@pytest.fixture(scope="module", params=list(RUNNERS))
def ran(request: pytest.FixtureRequest, sample_crawl: Path, served_crawl, scored: Path, baseline: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """One runner's run of every stage."""
    name = request.param
    out = tmp_path_factory.mktemp(f"runner-{name}")
    uncached = _seed_cache(scored, out, UNCACHED.get(name, 0))
    urllib.request.install_opener(None)
    curate.downloader._installed = None
    engines: list[object] = []
    load = curate.ocr.TextEngine.__init__

    def counted(self, *args, **kwargs) -> None:
        engines.append(self)
        load(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp, contextlib.ExitStack() as stack:
        # Beam starts loopback process workers as plain `python`: make that this interpreter.
        mp.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        mp.setattr(curate.ocr.TextEngine, "__init__", counted)
        args = RUNNERS[name]
        if name == "dask":  # a dask.distributed cluster: a scheduler and two worker processes on 127.0.0.1
            from dask.distributed import LocalCluster

            cluster = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                       host="127.0.0.1", dashboard_address=None))
            args = [*args, f"--dask_client_address={cluster.scheduler_address}"]
        seconds = _stages(sample_crawl, out, args)
    print(f"\n{name}: {seconds}")
    return Ran(name, out, curate.downloader._installed is not None, len(engines), uncached)


def _normalized(path: Path, outs: tuple[Path, ...]) -> bytes:
    data = path.read_bytes()
    if path.name.endswith("_stats.json"):
        stats = {k: v for k, v in json.loads(data).items() if k not in FETCH_TIMES}
        return json.dumps(stats, sort_keys=True).encode()
    if path.suffix in (".json", ".yaml"):
        for out in outs:
            data = data.replace(str(out).encode(), b"OUT")
    return data


def _outputs(out: Path, *origins: Path) -> dict[str, bytes]:
    """Every compared file, by name; `origins`: where the OUT was copied from (its manifests name that path)."""
    outs = (out, *origins)
    found = {name: _normalized(out / name, outs) for name in TOP_LEVEL}
    for folder in FOLDERS:
        for path in sorted((out / folder).iterdir()):
            if f"{folder}/{path.name}" not in RUN_FACTS:
                found[f"{folder}/{path.name}"] = _normalized(path, outs)
    return found


def test_every_output_equals_the_in_process_run(ran: Ran, baseline: Path, scored: Path) -> None:
    want, got = _outputs(baseline, scored), _outputs(ran.out)
    assert sorted(got) == sorted(want)
    assert [name for name in want if got[name] != want[name]] == []
    for folder, ext in (("fetched", ".tar"), ("text", ".parquet"), ("shards", ".tar"), ("shards", ".parquet")):
        assert any(name.startswith(f"{folder}/") and name.endswith(ext) for name in want), (folder, ext)
    assert len([name for name in want if name.startswith("shards/") and name.endswith(".tar")]) > 1


def test_workers_run_outside_the_driver(ran: Ran) -> None:
    """Where the workers are other processes, the driver never installed the download opener nor loaded the
    OCR engine: the workers did it themselves, which is what a remote worker has to do."""
    assert ran.fetched_here == (ran.name in IN_PROCESS)
    assert (ran.engines_here > 0) == (ran.name in IN_PROCESS)


def test_pictures_missing_from_the_cache_are_scored_by_the_workers(ran: Ran, baseline: Path) -> None:
    """The pictures left out of the seeded cache were scored by the OCR engine in a worker (the text table
    is already compared above): the work record counts them, and the new cache entries hold the in-process
    run's scores (all but the time taken)."""
    import pyarrow.parquet as pq

    work = json.loads((ran.out / "text" / "_WORK.json").read_text())
    assert work["scored"] == len(ran.uncached)
    if not ran.uncached:
        return
    (engine,) = [p.name for p in (ran.out / "cache" / "ocr").iterdir()]
    new = [r for p in sorted((ran.out / "cache" / "ocr" / engine).glob("scores-*.parquet"))
           for r in pq.read_table(p).to_pylist()]
    untimed = [{k: v for k, v in r.items() if k != "ms"} for r in (*new, *ran.uncached)]
    assert sorted(untimed[:len(new)], key=str) == sorted(untimed[len(new):], key=str)




def _graph(files: list, out: Path) -> int:
    """The size of the extract stage's serialized job graph over `files` (built, not run)."""
    import apache_beam as beam

    p = beam.Pipeline()
    extract.build(p, files, str(out), load_config(None, DOWNLOAD_FLAGS))
    return len(p.to_runner_api().SerializeToString())


def test_long_input_lists_travel_through_out_not_the_job_graph(
        sample_crawl: Path, baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real job's file list is too big for a job graph: past the limit the driver stages it under OUT in
    chunks, the workers read them, and the outputs are the same bytes: the crawl's files (extract), the
    fetched tars (decode), and the OUT files the later stages read (dedup, text, write: ~300,000 OUT/images
    files in the Web-SSL job)."""
    import hashlib

    import apache_beam as beam

    import curate.pipelines.common
    from curate.crawl import CrawlFile

    limit = curate.pipelines.common.INLINE_LIMIT
    many = [CrawlFile(f"s3://b/{hashlib.sha256(str(i).encode()).hexdigest()}.warc.gz", "CC-MAIN-2021-04", "warc")
            for i in range(limit + 1)]
    inline, staged = _graph(many[:limit], tmp_path / "inline"), _graph(many, tmp_path / "staged")
    assert staged < 200_000 < 500_000 < inline  # ~100 kB for the stage itself, ~90 bytes more per inline file
    assert len(list((tmp_path / "staged" / "_inputs" / "extract").glob("chunk-*.json"))) == 2
    images = [f"s3://b/images/images-{i:06d}-of-{limit + 1:06d}.parquet" for i in range(limit + 1)]
    dedup.build(beam.Pipeline(), images, str(tmp_path / "dedup"), load_config())  # the later stages alike
    assert len(list((tmp_path / "dedup" / "_inputs" / "dedup" / "images").glob("chunk-*.json"))) == 2
    monkeypatch.setattr(curate.pipelines.common, "INLINE_LIMIT", 5)
    files = snapshot_files(["CC-MAIN-2021-04", "CC-MAIN-2023-06"], str(sample_crawl), "warc")
    out = tmp_path / "out"
    shutil.copytree(baseline / "fetched", out / "fetched")  # this output's own shards: keyed by their refs
    sources = list_sources([str(out / "fetched" / "*.tar")])
    assert len(files) > 5 and len(sources) > 5
    shutil.copytree(baseline / "cache", out / "cache")  # the OCR scores: the text stage, not OCR, is under test
    extract.run(files, str(out), load_config(None, DOWNLOAD_FLAGS))
    decode.run(sources, str(out), load_config())
    assert len(list((out / "images").glob("*.parquet"))) > 5
    dedup.run(str(out), load_config())
    text.run(str(out), load_config())
    write.run(str(out), load_config(None, WRITE_FLAGS))
    assert not list(out.glob("_inputs/**/*.json"))  # removed after each run
    for folder in ("refs", "images", "dedup", "text", "shards"):
        compared = [p for p in sorted((baseline / folder).iterdir()) if p.suffix in (".parquet", ".tar")]
        assert compared, folder
        for path in compared:
            assert (out / folder / path.name).read_bytes() == path.read_bytes(), path.name


REAL = Path(__file__).resolve().parents[2] / "shared" / "real-images" / "images"


def test_decontamination_decides_the_same_on_every_runner(tmp_path: Path) -> None:
    """Dedup with an evaluation set (its pictures join the keypoint steps) on real photographs, a crop and a
    caption-barred copy of one of them, and the evaluation picture (a rescaled copy of another): on each
    runner, the same decisions, bytes for bytes, as in process; the copies are eval_overlap or clustered as
    the in-process run decides."""
    from dask.distributed import LocalCluster
    from PIL import Image, ImageDraw

    photos = sorted(REAL.glob("*.jpg"))[:8]
    folder, evalset = tmp_path / "in", tmp_path / "eval"
    folder.mkdir()
    evalset.mkdir()
    for path in photos:
        shutil.copyfile(path, folder / path.name)
    with Image.open(photos[0]) as im:
        w, h = im.size
        im.convert("RGB").crop((w // 12, h // 12, w, h)).save(folder / "zz-crop.jpg", quality=88)
    with Image.open(photos[1]) as im:
        barred = im.convert("RGB")
        ImageDraw.Draw(barred).rectangle((0, barred.height * 9 // 10, barred.width, barred.height), fill=(0, 0, 0))
        barred.save(folder / "zz-caption.jpg", quality=88)
        im.convert("RGB").resize((im.width * 2 // 3, im.height * 2 // 3)).save(evalset / "e1.png")
    with Image.open(photos[0]) as im:
        im.convert("RGB").save(evalset / "e0.png")
    base = tmp_path / "base"
    decode.run(list_sources([str(folder)]), str(base), load_config())
    config = load_config(None, {"dedup.exclude_near": [str(evalset)]})
    dedup.run(str(base), config)
    expected = sorted(parquet_rows(base / "dedup"), key=lambda r: r["key"])
    reasons = {r["key"]: r["reason"] for r in expected}
    assert list(reasons.values()).count("eval_overlap") == 4  # both evaluation pictures and their copies

    with contextlib.ExitStack() as stack, pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        cluster = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                   host="127.0.0.1", dashboard_address=None))
        for name in ("multi_processing", "bundle_repeat", "dask"):
            out = tmp_path / name
            shutil.copytree(base / "images", out / "images")
            args = RUNNERS[name] + ([f"--dask_client_address={cluster.scheduler_address}"] if name == "dask" else [])
            dedup.run(str(out), config, args)
            assert sorted(parquet_rows(out / "dedup"), key=lambda r: r["key"]) == expected, name
