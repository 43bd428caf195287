"""Shared fixtures: the sample crawl is built once per test session, on ports that are free now."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from curate.sample.build import build_sample_crawl
from curate.sample.plan import HOSTS
from curate.serve import SampleServer, free_port_block

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


@pytest.fixture(autouse=True)
def _default_urllib_opener():
    """The download stage installs curate's opener for the whole process (img2dataset fetches through
    urllib's global opener: that is how its requests get the guards). Tests share one process, so each
    test starts and ends with urllib's default."""
    import urllib.request

    import curate.download

    yield
    urllib.request.install_opener(None)  # type: ignore[arg-type]
    curate.download._installed = None
