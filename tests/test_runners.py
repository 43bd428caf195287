"""Every stage on other Beam runners gives the bytes the in-process DirectRunner gives.

The baseline is the session's in-process run (`downloaded`: extract + download; decode and dedup on top).
Each runner below then runs extract, download, decode and dedup on the same sample crawl into its own
OUT, and every output table, manifest, ledger, fetched shard, stats.json and config.yaml must be equal byte
for byte. Two things are normalized, and only those: the OUT path itself (manifests list their input files
by URL, and each run has its own OUT), and the timing fields of img2dataset's per-shard `_stats.json`
(when the fetch ran, not what it fetched).

- multi_processing: the DirectRunner with two SDK worker processes;
- portable: the PortableRunner with an embedded job service; `use_loopback_process_worker` makes the
  LOOPBACK environment start each SDK worker as a separate `python` process (so nothing the driver
  process holds, such as curate's urllib opener, reaches the workers);
- bundle_repeat: the DirectRunner replaying every bundle, as a runner retrying a bundle would.

Download's output is deterministic on the sample crawl: its faults are fixed per URL (a slow host answers
after 1.5 s, under the 2 s read timeout; a trickle always overruns the 4 s deadline), and shards are
planned from keys, not from arrival order.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import curate.download
from curate.config import load_config
from curate.crawl import snapshot_files
from curate.readers import list_sources
from pipelines import decode, dedup, download, extract
from tests.conftest import DOWNLOAD_FLAGS

pytestmark = pytest.mark.slow

RUNNERS = {
    "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    "portable": ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK",
                 "--experiments=use_loopback_process_worker"],
    "bundle_repeat": ["--direct_runner_bundle_repeat=2"],
}
IN_PROCESS = {"bundle_repeat"}
FOLDERS = ("refs", "ledger", "fetched", "images", "dedup", "rejects", "failed")
TOP_LEVEL = ("stats.json", "config.yaml")
FETCH_TIMES = {"start_time", "end_time", "duration"}


def _stages(crawl: Path, out: Path, beam_args: list[str]) -> dict[str, float]:
    """The four stages as the CLI chains them; seconds per stage."""
    fetch_config, config = load_config(None, DOWNLOAD_FLAGS), load_config()
    files = snapshot_files(["CC-MAIN-2021-04", "CC-MAIN-2023-06"], str(crawl), "warc")
    steps = {
        "extract": lambda: extract.run(files, str(out), fetch_config, beam_args),
        "download": lambda: download.run(str(out), fetch_config, beam_args),
        "decode": lambda: decode.run(list_sources([str(out / "fetched" / "*.tar")]), str(out), config, beam_args),
        "dedup": lambda: dedup.run(str(out), config, beam_args),
    }
    seconds = {}
    for name, step in steps.items():
        start = time.monotonic()
        step()
        seconds[name] = round(time.monotonic() - start, 1)
    return seconds


@pytest.fixture(scope="module")
def baseline(downloaded) -> Path:
    """The in-process DirectRunner's OUT (a no-op where the decode and dedup tests already ran them)."""
    out, _ = downloaded
    config = load_config()
    decode.run(list_sources([str(out / "fetched" / "*.tar")]), str(out), config)
    dedup.run(str(out), config)
    return out


@pytest.fixture(scope="module", params=list(RUNNERS))
def ran(request: pytest.FixtureRequest, sample_crawl: Path, served_crawl, baseline: Path,
        tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, bool]:
    """(runner, OUT, whether the download ran in this process) for one runner."""
    name = request.param
    out = tmp_path_factory.mktemp(f"runner-{name}")
    urllib.request.install_opener(None)
    curate.download._installed = None
    with pytest.MonkeyPatch.context() as mp:
        # Beam starts loopback process workers as plain `python`: make that this interpreter.
        mp.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        seconds = _stages(sample_crawl, out, RUNNERS[name])
    print(f"\n{name}: {seconds}")
    return name, out, curate.download._installed is not None


def _normalized(path: Path, out: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith("_stats.json"):
        stats = {k: v for k, v in json.loads(data).items() if k not in FETCH_TIMES}
        return json.dumps(stats, sort_keys=True).encode()
    if path.suffix in (".json", ".yaml"):
        return data.replace(str(out).encode(), b"OUT")
    return data


def _outputs(out: Path) -> dict[str, bytes]:
    found = {name: _normalized(out / name, out) for name in TOP_LEVEL}
    for folder in FOLDERS:
        for path in sorted((out / folder).iterdir()):
            found[f"{folder}/{path.name}"] = _normalized(path, out)
    return found


def test_every_output_equals_the_in_process_run(ran: tuple[str, Path, bool], baseline: Path) -> None:
    _, out, _ = ran
    want, got = _outputs(baseline), _outputs(out)
    assert sorted(got) == sorted(want)
    assert [name for name in want if got[name] != want[name]] == []
    assert any(name.startswith("fetched/") and name.endswith(".tar") for name in want)


def test_workers_run_outside_the_driver(ran: tuple[str, Path, bool]) -> None:
    """Where the workers are other processes, the driver never installed the download opener: the workers
    did it themselves, which is what a remote worker has to do."""
    name, _, fetched_here = ran
    assert fetched_here == (name in IN_PROCESS)




def _graph(files: list, out: Path) -> int:
    """The size of the extract stage's serialized job graph over `files` (built, not run)."""
    import apache_beam as beam

    p = beam.Pipeline()
    extract.build(p, files, str(out), load_config(None, DOWNLOAD_FLAGS))
    return len(p.to_runner_api().SerializeToString())


def test_long_input_lists_travel_through_out_not_the_job_graph(
        sample_crawl: Path, baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real job's file list is too big for a job graph: past the limit the driver stages it under OUT in
    chunks, the workers read them, and the outputs are the same bytes."""
    import hashlib

    import pipelines.common
    from curate.crawl import CrawlFile

    limit = pipelines.common.INLINE_LIMIT
    many = [CrawlFile(f"s3://b/{hashlib.sha256(str(i).encode()).hexdigest()}.warc.gz", "CC-MAIN-2021-04", "warc")
            for i in range(limit + 1)]
    inline, staged = _graph(many[:limit], tmp_path / "inline"), _graph(many, tmp_path / "staged")
    assert staged < 200_000 < 500_000 < inline  # ~100 kB for the stage itself, ~90 bytes more per inline file
    assert len(list((tmp_path / "staged" / "_inputs" / "extract").glob("chunk-*.json"))) == 2
    monkeypatch.setattr(pipelines.common, "INLINE_LIMIT", 5)
    files = snapshot_files(["CC-MAIN-2021-04", "CC-MAIN-2023-06"], str(sample_crawl), "warc")
    sources = list_sources([str(baseline / "fetched" / "*.tar")])
    assert len(files) > 5 and len(sources) > 5
    out = tmp_path / "out"
    extract.run(files, str(out), load_config(None, DOWNLOAD_FLAGS))
    decode.run(sources, str(out), load_config())
    assert not list(out.glob("_inputs/*/*.json"))  # removed after the run
    for folder in ("refs", "images"):
        for path in sorted((baseline / folder).glob("*.parquet")):
            assert (out / folder / path.name).read_bytes() == path.read_bytes(), path.name
