"""Shared fixtures: the sample crawl is built once per test session, on ports that are free now."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from curate.sample.build import build_sample_crawl
from curate.sample.plan import HOSTS
from curate.sample.serve import SampleServer, free_port_block

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture(scope="session")
def crawl_port() -> int:
    return free_port_block(len(HOSTS), start=20000, end=32000, seed=os.getpid())


@pytest.fixture(scope="session")
def sample_crawl(tmp_path_factory: pytest.TempPathFactory, crawl_port: int) -> Path:
    """The default-size sample crawl (seed 0), read-only for tests: copy it before changing anything."""
    out = tmp_path_factory.mktemp("sample")
    build_sample_crawl(out, seed=0, scale=1, port=crawl_port)
    return out


@pytest.fixture(scope="session")
def served_crawl(sample_crawl: Path) -> SampleServer:
    """The sample crawl served on 127.0.0.1 for the whole session."""
    server = SampleServer(sample_crawl).start()
    yield server
    server.stop()


def parquet_rows(folder: Path) -> list[dict]:
    """Every row of every Parquet file in a folder, files in name order (an independent reader: pyarrow)."""
    import pyarrow.parquet as pq

    return [row for f in sorted(folder.glob("*.parquet")) for row in pq.read_table(f).to_pylist()]


DOWNLOAD_FLAGS = {"download.allow_private_hosts": "127.0.0.1", "download.deadline": 3, "download.timeout": 2,
                  "download.samples_per_shard": 60}
WRITE_FLAGS = {"shards.samples_per_shard": 40}  # several final shards, so shard numbering is compared too


@pytest.fixture(scope="session")
def downloaded(sample_crawl: Path, served_crawl, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """The sample crawl extracted and downloaded once per session (OUT, and the server's access log of the
    download: the requests it made, none of a later test's). A listener on the blocked redirect target proves it is never connected to."""
    import socket
    from urllib.parse import urlsplit

    import pyarrow.parquet as pq

    from curate.config import load_config
    from curate.crawl import snapshot_files
    from curate.pipelines import download, extract

    out = tmp_path_factory.mktemp("download")
    config = load_config(None, DOWNLOAD_FLAGS)
    extract.run(snapshot_files(["CC-MAIN-2021-04", "CC-MAIN-2023-06"], str(sample_crawl), "warc"), str(out), config)
    blocked = next(r for r in pq.read_table(sample_crawl / "truth.parquet").to_pylist() if r["fault"] == "redirect_blocked")
    target = urlsplit(served_crawl.hosts["cdn"].routes[urlsplit(blocked["url"]).path].redirect)
    before = len(served_crawl.requests)
    with socket.socket() as listener:  # the blocked redirect target: it must never see a connection
        listener.bind((target.hostname, target.port))
        listener.listen()
        listener.setblocking(False)
        download.run(str(out), config)
        with pytest.raises(BlockingIOError):
            listener.accept()
    return out, served_crawl.requests[before:]


@pytest.fixture(autouse=True)
def _default_urllib_opener():
    """The download stage installs curate's opener for the whole process (img2dataset fetches through
    urllib's global opener: that is how its requests get the guards). Tests share one process, so each
    test starts and ends with urllib's default."""
    import urllib.request

    import curate.downloader

    yield
    urllib.request.install_opener(None)  # type: ignore[arg-type]
    curate.downloader._installed = None


@pytest.fixture(scope="session")
def scored(downloaded) -> Path:
    """The downloaded sample crawl decoded, deduplicated and text-scored (filter none) once per session."""
    from curate.config import load_config
    from curate.pipelines import decode, dedup, text
    from curate.readers import list_sources

    out, _ = downloaded
    decode.run(list_sources([str(out / "fetched" / "*.tar")]), str(out), load_config())
    dedup.run(str(out), load_config())
    text.run(str(out), load_config())
    return out


@pytest.fixture(scope="session")
def baseline(scored: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pipeline on the sample crawl, in process (DirectRunner): a copy of `scored` written into
    shards; what other runners and a killed-and-resumed `curate run` must reproduce byte for byte."""
    import shutil

    from curate.config import load_config
    from curate.pipelines import write

    out = tmp_path_factory.mktemp("baseline") / "out"
    shutil.copytree(scored, out)
    write.run(str(out), load_config(None, WRITE_FLAGS))
    return out
