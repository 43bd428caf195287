"""The driver's view of a stage's progress: the workers' reports summed, rate and ETA from the first element."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from curate import progress


def test_reports_of_every_worker_are_summed(tmp_path: Path) -> None:
    out = str(tmp_path)
    assert progress.gather(out, "download") is None
    progress.report(out, "download", "a", 30, 100, 1000.0, "URLs fetched", at=1000.0)
    progress.report(out, "download", "b", 20, 100, 990.0, "URLs fetched", at=998.0)
    progress.report(out, "text", "c", 7, 9, 995.0, "pictures scored")  # another stage's: not counted
    state = progress.gather(out, "download")
    assert state == {"done": 50, "total": 100, "first": 990.0, "at": 1000.0, "unit": "URLs fetched"}
    # 50 done in the 10 s from the first element to the latest report (however long the start-up before it):
    # 5/s, 50 left
    assert progress.describe("download", state) == "download: 50/100 URLs fetched, 5.0/s, ETA 10 s"
    assert progress.describe("write", {"done": 3, "total": 0, "first": 1000.0, "at": 1000.0,
                                       "unit": "shards"}) == "write: 3 shards"


def test_lines_when_not_a_terminal_and_the_folder_goes_at_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CURATE_PROGRESS", "lines")
    caplog.set_level(logging.INFO, logger="curate.progress")
    out = str(tmp_path)
    with progress.shown(out, "decode"):
        first = time.time()
        for done in (1, 2, 3):
            progress.report(out, "decode", "w", done, 3, first, "parts")
    lines = [r.getMessage() for r in caplog.records if r.name == "curate.progress"]
    assert lines and lines[-1].startswith("decode: 3/3 parts, ")
    assert not (tmp_path / progress.FOLDER).exists()
